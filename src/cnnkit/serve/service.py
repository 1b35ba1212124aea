"""What the routes do between HTTP and the model: uploads in, JSON bodies out.

Uploads are read with bounds, sniffed, decoded and fitted to the model's input; the last few are
held in a bounded LRU keyed by a random id. Predictions go through the micro-batcher. Everything
computed comes from `cnnkit.inspect` (the Explorer, the overlay); this module only encodes it:
arrays as PNG or base64 float32, a user error as 422.
"""

from __future__ import annotations

import base64
import contextlib
import io
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cnnkit.data.images import ALLOWED_FORMATS, open_image
from cnnkit.errors import CnnkitError
from cnnkit.inspect.draw import sequential
from cnnkit.inspect.explorer import Explorer, LayerMaps
from cnnkit.inspect.overlay import heat_colours, overlay
from cnnkit.serve.batching import MicroBatcher, Overloaded

MAX_BATCH_FILES = 64  # files in one /api/predict/batch request
# Smaller uploads decode on the event loop (~0.1 ms); larger ones in a thread.
INLINE_DECODE_BYTES = 256 * 1024


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


def decode(data: bytes, what: str = "the upload") -> Image.Image:
    """Bytes -> a decoded PIL image, or 400 (empty), 415 (other format), 422 (bomb or corrupt)."""
    if not data:
        raise HTTPException(400, f"{what} is empty; send an image as the body or a 'file' field")
    if not _sniff(data):
        raise HTTPException(
            415, f"{what} is not an image of an allowed format; send {', '.join(ALLOWED_FORMATS)}"
        )
    try:
        return open_image(io.BytesIO(data))
    except CnnkitError as error:  # open_image names the file '<image data>': no path to leak
        raise HTTPException(422, str(error).replace("<image data>", what)) from None


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
    """The served Explorer, the held uploads and the prediction batcher; one per app."""

    def __init__(self, explorer: Explorer, max_images: int = 32, max_wait: float = 0.0) -> None:
        self.explorer = explorer
        self.classifier = explorer.classifier
        self.images = ImageStore(max_images)
        self.batcher: MicroBatcher[tuple[str, bytes], np.ndarray | HTTPException] = MicroBatcher(
            self._decode_and_predict, max_wait=max_wait
        )

    # --------------------------------------------------------------- inputs

    async def read_images(
        self, request: Request, field: str = "file", many: bool = False
    ) -> list[np.ndarray]:
        """The request's image(s), decoded and fitted to the model's input: uint8 (H, W, C)."""
        blobs = await self.read_blobs(request, field, many)
        if sum(len(data) for _, data in blobs) > INLINE_DECODE_BYTES:
            return await run_in_threadpool(self._fit_all, blobs)
        return self._fit_all(blobs)

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

    def _fit_all(self, blobs: Sequence[tuple[str, bytes]]) -> list[np.ndarray]:
        fitted = []
        for what, data in blobs:
            image = decode(data, what)
            try:
                fitted.append(self.classifier.prepare(image))
            except CnnkitError as error:
                raise HTTPException(422, f"{what}: {error}") from None
        return fitted

    # --------------------------------------------------------------- prediction

    async def predict(self, blob: tuple[str, bytes]) -> np.ndarray:
        """One upload's probabilities (classes,), predicted in a batch with its neighbours."""
        try:
            probs = await self.batcher.submit(blob)
        except Overloaded as error:
            raise HTTPException(503, f"server busy: {error}; retry shortly") from None
        if isinstance(probs, HTTPException):
            raise probs
        return probs

    def _decode_and_predict(
        self, blobs: Sequence[tuple[str, bytes]]
    ) -> list[np.ndarray | HTTPException]:
        """The batcher's work: decoding here, in its thread, keeps the event loop free for HTTP
        parsing. A bad image fails only its own request: its slot holds the error instead of
        probabilities."""
        fitted: list[np.ndarray | HTTPException] = []
        for blob in blobs:
            try:
                fitted.extend(self._fit_all([blob]))
            except HTTPException as error:
                fitted.append(error)
        good = [item for item in fitted if isinstance(item, np.ndarray)]
        probs = iter(self.explorer.predict_batch(good) if good else [])
        return [item if isinstance(item, HTTPException) else next(probs) for item in fitted]

    def top(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        return self.explorer.top(probs, k)

    # --------------------------------------------------------------- explorer views

    def activations(self, pixels: np.ndarray, fmt: str, k: int) -> dict[str, Any]:
        with user_errors():
            result = self.explorer.activations(pixels)
        return {
            "image": self.images.add(pixels),
            "input_png": png(pixels),
            "layers": [_layer_body(layer, fmt) for layer in result.layers],
            "top": self.top(result.probabilities, k),
        }

    def gradcam(self, key: str, pixels: np.ndarray, target: int | None) -> dict[str, Any]:
        with user_errors():
            result = self.explorer.gradcam(pixels, target)
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
            step = self.explorer.conv_step(pixels, name, channel, y, x)
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
