"""What the routes do between HTTP and the model: uploads in, JSON bodies out.

Uploads are read with bounds, sniffed, checked against the pixel budget from their header, then
decoded and fitted to the model's input in lanes by size (`Decoder`); the last few are held in a
bounded LRU keyed by a random id. Predictions go through the micro-batcher. Everything
computed comes from `cnnkit.inspect` (the Explorer, the overlay); this module only encodes it:
arrays as PNG or base64 float32, a user error as 422.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from fastapi import Request
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cnnkit.data.images import ALLOWED_FORMATS, DEFAULT_MAX_PIXELS, open_image
from cnnkit.errors import CnnkitError, ImageTooLarge
from cnnkit.inspect.draw import sequential
from cnnkit.inspect.overlay import heat_colours, overlay
from cnnkit.inspect.predictor import Predictor, views_unavailable
from cnnkit.preprocess import fit_noted
from cnnkit.serve.batching import MicroBatcher, Overloaded

if TYPE_CHECKING:  # torch: imported by the app only for a run directory, never for an .onnx
    from cnnkit.inspect.explorer import Explorer, LayerMaps
    from cnnkit.predict import Classifier

MAX_BATCH_FILES = 64  # files in one /api/predict/batch request
# Declared pixels up to this decode on the event loop (a 256x256 PNG: ~0.3 ms); more in a thread.
INLINE_PIXELS = 256 * 256
# Above this an image takes the one-at-a-time lane: its decode holds up to 4 bytes a pixel
# (160 MB at the 40 MP budget), so two at once would pass the ~300 MB an upload may cost.
LARGE_PIXELS = 4_000_000
MAX_LARGE_WAITING = 4  # large decodes queued behind the running one; more get 503
# An upload's fitted pixels (H, W, C), with its notes (cnnkit.preprocess.input_notes).
Noted = tuple[np.ndarray, list[str]]


def png(pixels: np.ndarray) -> str:
    """uint8 (H, W), (H, W, 1) or (H, W, 3) -> base64 PNG; level 1: the page needs speed, not bytes."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _sniff(data: bytes) -> bool:
    """True when the bytes start like one of the allowed formats (the rest is Pillow's job)."""
    return data.startswith(
        (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a")
    ) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def decode(
    data: bytes,
    what: str = "the upload",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
    header_only: bool = False,
) -> Image.Image:
    """Bytes -> a decoded PIL image, or 400 (empty), 415 (other format), 413 (over the pixel
    budget, from the header alone) or 422 (bomb or corrupt). `header_only`: only the header read."""
    if not data:
        raise HTTPException(400, f"{what} is empty; send an image as the body or a 'file' field")
    if not _sniff(data):
        raise HTTPException(
            415, f"{what} is not an image of an allowed format; send {', '.join(ALLOWED_FORMATS)}"
        )
    try:
        return open_image(
            io.BytesIO(data), max_pixels=max_pixels, draft=draft, decode=not header_only
        )
    except ImageTooLarge as error:
        raise HTTPException(
            413,
            str(error)
            .replace("--max-pixels", "the server's --max-pixels")
            .replace("<image data>", what),
        ) from None
    except CnnkitError as error:  # open_image names the file '<image data>': no path to leak
        raise HTTPException(422, str(error).replace("<image data>", what)) from None


class Decoder:
    """Upload bytes -> fitted pixels, in lanes by the size the header declares.

    Small images decode on the event loop, medium ones in a pool sized to the cores, and large
    ones one at a time in their own thread: a maximal image never holds up a small request, and
    at most one full-size decode is in memory. Nothing decodes in the batcher's thread.
    """

    def __init__(self, classifier: Classifier, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        self.classifier = classifier
        self.max_pixels = max_pixels
        self.draft = classifier.input_shape[:2]
        self.pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="cnnkit-decode")
        self.large = ThreadPoolExecutor(1, thread_name_prefix="cnnkit-decode-large")
        self.large_waiting = 0

    async def fit(self, what: str, data: bytes) -> Noted:
        """One upload fitted to the model's input: uint8 (H, W, C), with its notes;
        HTTPException when bad."""
        header = decode(data, what, max_pixels=self.max_pixels, header_only=True)
        pixels = header.width * header.height
        if pixels <= INLINE_PIXELS:
            return self.fit_now(what, data)
        loop = asyncio.get_running_loop()
        if pixels <= LARGE_PIXELS:
            return await loop.run_in_executor(self.pool, self.fit_now, what, data)
        if self.large_waiting > MAX_LARGE_WAITING:
            raise HTTPException(503, "server busy decoding large images; retry shortly")
        self.large_waiting += 1
        try:
            return await loop.run_in_executor(self.large, self.fit_now, what, data)
        finally:
            self.large_waiting -= 1

    def fit_now(self, what: str, data: bytes) -> Noted:
        image = decode(data, what, max_pixels=self.max_pixels, draft=self.draft)
        try:
            return fit_noted(self.classifier, image)
        except CnnkitError as error:
            raise HTTPException(422, f"{what}: {error}") from None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.large.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """A CnnkitError inside (a layer that is no conv, a class out of range) becomes a 422."""
    try:
        yield
    except CnnkitError as error:
        raise HTTPException(422, str(error)) from None


class ImageStore:
    """The fitted pixels of recent uploads, keyed by a random id; the oldest go first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, pixels: np.ndarray) -> str:
        key = secrets.token_urlsafe(12)  # unguessable: another client cannot read your image
        with self._lock:
            self._items[key] = pixels
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> np.ndarray:
        with self._lock:
            pixels = self._items.get(key)
            if pixels is None:
                raise HTTPException(404, "unknown or expired image id; upload the image again")
            self._items.move_to_end(key)
            return pixels


class Service:
    """The served Explorer (or Predictor, for an .onnx model), the held uploads, the decoder and
    the prediction batcher; one per app."""

    def __init__(
        self,
        explorer: Predictor,
        max_images: int = 32,
        max_wait: float = 0.0,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.explorer = explorer
        self.classifier = explorer.classifier
        self.images = ImageStore(max_images)
        self.decoder = Decoder(self.classifier, max_pixels)
        # The batcher's thread only runs forwards: decoding happens before, in the decoder.
        self.batcher: MicroBatcher[np.ndarray, np.ndarray] = MicroBatcher(
            explorer.predict_batch, max_wait=max_wait
        )

    def close(self) -> None:
        self.batcher.close()
        self.decoder.close()

    # --------------------------------------------------------------- inputs

    async def read_images(
        self, request: Request, field: str = "file", many: bool = False
    ) -> list[np.ndarray]:
        """The request's image(s), decoded and fitted to the model's input: uint8 (H, W, C)."""
        return [pixels for pixels, _ in await self.read_fitted(request, field, many)]

    async def read_fitted(
        self, request: Request, field: str = "file", many: bool = False
    ) -> list[Noted]:
        """`read_images`, each with its notes (`cnnkit.preprocess.input_notes`)."""
        blobs = await self.read_blobs(request, field, many)
        return [await self.decoder.fit(what, data) for what, data in blobs]

    async def read_blobs(
        self, request: Request, field: str = "file", many: bool = False
    ) -> list[tuple[str, bytes]]:
        """The request's image bytes, each with the name errors call it by."""
        blobs: list[tuple[str, bytes]] = []
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            async with request.form(max_files=MAX_BATCH_FILES if many else 1, max_fields=8) as form:
                uploads = [item for item in form.getlist(field) if isinstance(item, UploadFile)]
                if not uploads or (not many and len(uploads) != 1):
                    wanted = "one or more 'files' fields" if many else "one 'file' field"
                    raise HTTPException(422, f"the multipart body needs {wanted} holding an image")
                for number, upload in enumerate(uploads, start=1):
                    blobs.append((f"file {number}" if many else "the upload", await upload.read()))
        elif many:
            raise HTTPException(422, "send several images as multipart/form-data 'files' fields")
        else:
            blobs.append(("the upload", await request.body()))
        return blobs

    # --------------------------------------------------------------- prediction

    async def predict(self, pixels: np.ndarray) -> np.ndarray:
        """One fitted image's probabilities (classes,), predicted in a batch with its neighbours."""
        try:
            return await self.batcher.submit(pixels)
        except Overloaded as error:
            raise HTTPException(503, f"server busy: {error}; retry shortly") from None

    def top(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        return self.explorer.top(probs, k)

    # --------------------------------------------------------------- explorer views

    def views(self, view: str) -> Explorer:
        """The Explorer behind the views; 501 for a model without layers (an .onnx file)."""
        if not self.explorer.views:
            raise HTTPException(501, views_unavailable(view))
        return cast("Explorer", self.explorer)

    def activations(self, pixels: np.ndarray, fmt: str, k: int) -> dict[str, Any]:
        with user_errors():
            result = self.views("/api/activations").activations(pixels)
        return {
            "image": self.images.add(pixels),
            "input_png": png(pixels),
            "layers": [_layer_body(layer, fmt) for layer in result.layers],
            "top": self.top(result.probabilities, k),
        }

    def gradcam(self, key: str, pixels: np.ndarray, target: int | None) -> dict[str, Any]:
        with user_errors():
            result = self.views("/api/gradcam").gradcam(pixels, target)
        return {
            "image": key,
            "layer": result.layer,
            "target": result.target,
            "label": self.classifier.class_names[result.target],
            "predicted": result.predicted,
            "probability": float(result.probabilities[result.target]),
            "input_png": png(pixels),
            "heatmap_png": png(heat_colours(result.cam)),
            "overlay_png": png(overlay(pixels, result.cam)),
            "saliency_png": png(heat_colours(result.saliency)),
            "cam_cells": result.cam_cells.round(6).tolist(),
        }

    def conv_step(
        self, key: str, pixels: np.ndarray, name: str, channel: int, y: int, x: int
    ) -> dict[str, Any]:
        with user_errors():
            step = self.views("/api/conv-step").conv_step(pixels, name, channel, y, x)
        return {"image": key, **step.to_dict()}


def _layer_body(maps: LayerMaps, fmt: str) -> dict[str, Any]:
    """One layer's maps as JSON: each channel a PNG over its [min, max], or float32 bytes."""
    layer = maps.layer
    base = {
        "name": layer.name,
        "kind": layer.kind,
        "text": layer.text,
        "shape": list(layer.output_shape),
        "params": layer.params,
        "flat": layer.flat,
        "channels_total": layer.output_shape[2],
    }
    if layer.flat:
        return {**base, "size": [1, 1], "downsampled": False, "channels": [], "values": maps.values}
    channels = []
    for index, array in enumerate(maps.maps):
        low, high = float(array.min()), float(array.max())
        entry: dict[str, Any] = {"index": index, "min": low, "max": high}
        if fmt == "array":
            entry["data"] = base64.b64encode(array.astype("<f4").tobytes()).decode("ascii")
        else:
            entry["png"] = png(sequential(array, low, high))
        channels.append(entry)
    return {
        **base,
        "size": list(maps.maps.shape[1:]),
        "downsampled": maps.downsampled,
        "channels": channels,
    }
