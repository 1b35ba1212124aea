"""The explorer's HTTP app: one trained run, a JSON API, and the static page that draws it.

    app = create_app("runs/lenet")      # the run is loaded once; no endpoint loads another
    uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints (every body in and out is bounded; every error is `{"error": "..."}`):
  GET  /api/model          classes, input shape, preprocessing, the plan
  POST /api/predict        one image (multipart 'file' or raw body) -> top-k
  POST /api/predict/batch  several multipart 'files' -> top-k each
  POST /api/activations    one image -> every spatial layer's maps, an image id to hold
  POST /api/gradcam        Grad-CAM and saliency of a class, for an upload or an image id
  GET  /api/conv-step      the patch, filter, products and sum behind one conv activation
  GET  /healthz, /openapi.json, / (the page), /static/{name}
Uploaded images are never written anywhere: the fitted pixels of the last few live in a
bounded LRU keyed by a random id, which the page sends back for conv-step and Grad-CAM.
"""

from __future__ import annotations

import base64
import importlib.resources
import io
import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cnnkit.data.images import ALLOWED_FORMATS, open_image
from cnnkit.errors import CnnkitError
from cnnkit.inspect.draw import sequential
from cnnkit.inspect.gradcam import gradcam
from cnnkit.inspect.receptive import input_box
from cnnkit.predict import Classifier, load
from cnnkit.serve.batching import MicroBatcher, Overloaded
from cnnkit.serve.security import (
    DEFAULT_MAX_UPLOAD,
    LOOPBACK_NAMES,
    BearerToken,
    BodyLimit,
    HostOriginGuard,
)

log = logging.getLogger("cnnkit.serve")

MAX_TILE = 64  # feature maps larger than this (per side) are averaged down for the page
MAX_CHANNELS = 64  # maps shown per layer; more would be too small to read anyway
MAX_VALUES = 512  # values shown per flat layer (fc outputs)
MAX_BATCH_FILES = 64  # files in one /api/predict/batch request
INLINE_DECODE_BYTES = (
    256 * 1024
)  # smaller uploads decode on the event loop (~0.1 ms); larger in a thread
IMAGE_ID = r"^[A-Za-z0-9_-]{1,64}$"

# ----------------------------------------------------------------------------- response shapes


class ErrorBody(BaseModel):
    error: str


class ClassScore(BaseModel):
    index: int
    label: str
    probability: float


class Prediction(BaseModel):
    top: list[ClassScore]


class BatchPrediction(BaseModel):
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    notation: str
    classes: list[str]
    input_shape: list[int] = Field(description="(H, W, C)")
    preprocessing: dict[str, Any]
    plan: dict[str, Any] = Field(description="cnnkit.plan.Plan.to_dict(): layers, shapes, params")
    metrics: dict[str, float]


class ChannelMap(BaseModel):
    index: int
    min: float
    max: float
    png: str | None = Field(None, description="base64 PNG, colour-mapped over [min, max]")
    data: str | None = Field(None, description="base64 float32 little-endian, row-major (h, w)")


class LayerMaps(BaseModel):
    name: str
    kind: str
    text: str
    shape: list[int] = Field(description="the layer's output (H, W, C)")
    params: int
    flat: bool
    size: list[int] = Field(
        description="(h, w) of each map as sent; smaller than shape if downsampled"
    )
    downsampled: bool
    channels: list[ChannelMap]
    channels_total: int
    values: list[float] | None = Field(None, description="a flat layer's outputs (first 512)")


class Activations(BaseModel):
    image: str = Field(description="the id to send back to /api/conv-step and /api/gradcam")
    input_png: str
    layers: list[LayerMaps]
    top: list[ClassScore]


class GradCamView(BaseModel):
    image: str
    layer: str
    target: int
    label: str
    predicted: int
    probability: float
    input_png: str
    heatmap_png: str
    overlay_png: str
    saliency_png: str
    cam_cells: list[list[float]]


class ReceptiveField(BaseModel):
    top: int
    left: int
    height: int
    width: int


class ConvStep(BaseModel):
    image: str
    layer: str
    channel: int
    y: int
    x: int
    input_layer: str
    kernel_size: list[int]
    stride: int
    padding: list[int] = Field(description="(top, bottom, left, right)")
    origin: list[int] = Field(description="(row, col) of the patch's corner in the layer's input")
    padded: list[list[bool]] = Field(description="(Fh, Fw): True where the patch is padding")
    patch: list[list[list[float]]] = Field(description="(C, Fh, Fw) of the padded input")
    weights: list[list[list[float]]] = Field(description="(C, Fh, Fw) of filter `channel`")
    products: list[list[list[float]]]
    channel_sums: list[float]
    sum: float
    bias: float
    result: float = Field(description="sum + bias")
    activation: float = Field(description="the module's own output at (channel, y, x)")
    receptive_field: ReceptiveField


class Health(BaseModel):
    status: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "malformed request",
        401: "missing or wrong bearer token",
        403: "foreign Host or Origin",
        404: "unknown image id or path",
        405: "method not allowed",
        413: "body over the upload limit",
        415: "not a PNG, JPEG, BMP, GIF or WebP image",
        422: "invalid parameter or undecodable image",
        500: "internal error",
        503: "too many requests waiting",
    }.items()
}
_IMAGE_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
        "required": True,
    }
}
_BATCH_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["files"],
                }
            }
        },
        "required": True,
    }
}

# ----------------------------------------------------------------------------- helpers


def _png(pixels: np.ndarray) -> str:
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


def _decode(data: bytes, what: str = "the upload") -> Image.Image:
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


class Explorer:
    """The served model and everything computed from it; one instance per app."""

    def __init__(self, classifier: Classifier, max_images: int = 32, max_wait: float = 0.0) -> None:
        self.classifier = classifier
        self.model = classifier.model.eval()
        self.plan = self.model.plan
        self.images = ImageStore(max_images)
        # One forward at a time: inspect's hooks live on the shared modules, so a predict
        # batch running beside a Grad-CAM would fire them.
        self.lock = threading.Lock()
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
            image = _decode(data, what)
            try:
                fitted.append(self.classifier.fit(image))
            except CnnkitError as error:
                raise HTTPException(422, f"{what}: {error}") from None
        return fitted

    # --------------------------------------------------------------- prediction

    def _predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        with self.lock:
            log_probs = self.classifier.log_probabilities(np.stack(images))  # (B, classes)
        return list(np.exp(log_probs))

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
        probs = iter(self._predict_batch(good) if good else [])
        return [item if isinstance(item, HTTPException) else next(probs) for item in fitted]

    def top(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        # Stable sort of -p, as Classifier.predict: equal probabilities keep class order.
        order = np.argsort(-probs, kind="stable")[: min(k, len(probs))]
        names = self.classifier.class_names
        return [{"index": int(c), "label": names[c], "probability": float(probs[c])} for c in order]

    # --------------------------------------------------------------- explorer views

    def _input(self, pixels: np.ndarray) -> torch.Tensor:
        return self.classifier.preprocess(pixels)  # uint8 (H, W, C) -> (1, C, H, W), normalised

    @torch.inference_mode()
    def _walk(
        self, x: torch.Tensor, until: str | None = None
    ) -> list[tuple[Any, torch.Tensor, torch.Tensor]]:
        """(layer plan, input, output) of each layer in order; the model is a Sequential."""
        steps = []
        for layer in self.plan.layers:  # build names each child as the plan names its layer
            out = getattr(self.model, layer.name)(x)
            steps.append((layer, x, out))
            if layer.name == until:
                break
            x = out
        return steps

    def activations(self, pixels: np.ndarray, fmt: str, k: int) -> dict[str, Any]:
        with self.lock:
            steps = self._walk(self._input(pixels))
        layers = [self._layer_maps(layer, out[0], fmt) for layer, _, out in steps]
        scores = steps[-1][2][0].reshape(-1).double()  # (classes,)
        # A spec ending in softmax outputs probabilities already; others output logits.
        probs = (
            scores if self.plan.layers[-1].kind == "softmax" else torch.softmax(scores, 0)
        ).numpy()
        return {
            "image": self.images.add(pixels),
            "input_png": _png(pixels),
            "layers": layers,
            "top": self.top(probs, k),
        }

    def _layer_maps(self, layer: Any, out: torch.Tensor, fmt: str) -> dict[str, Any]:
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
            values = out.reshape(-1)[:MAX_VALUES].double().tolist()
            return {**base, "size": [1, 1], "downsampled": False, "channels": [], "values": values}
        maps = out[:MAX_CHANNELS].float()  # (C', H, W)
        height, width = maps.shape[1:]
        downsampled = max(height, width) > MAX_TILE
        if downsampled:  # area averaging keeps a small bright feature visible, unlike striding
            scale = MAX_TILE / max(height, width)
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            maps = F.adaptive_avg_pool2d(maps[None], size)[0]
        arrays = maps.numpy()
        channels = []
        for index, array in enumerate(arrays):
            low, high = float(array.min()), float(array.max())
            entry: dict[str, Any] = {"index": index, "min": low, "max": high}
            if fmt == "array":
                entry["data"] = base64.b64encode(array.astype("<f4").tobytes()).decode("ascii")
            else:
                entry["png"] = _png(sequential(array, low, high))
            channels.append(entry)
        return {
            **base,
            "size": list(arrays.shape[1:]),
            "downsampled": downsampled,
            "channels": channels,
        }

    def gradcam(self, key: str, pixels: np.ndarray, target: int | None) -> dict[str, Any]:
        classes = len(self.classifier.class_names)
        if target is not None and target >= classes:
            raise HTTPException(
                422, f"class={target} is out of range; the model has classes 0..{classes - 1}"
            )
        with self.lock:
            result = gradcam(self.model, self._input(pixels), target)
        cam = result.cam / result.cam.max() if result.cam.max() > 0 else result.cam
        saliency = (
            result.saliency / result.saliency.max()
            if result.saliency.max() > 0
            else result.saliency
        )
        heat = sequential(cam, 0.0, 1.0)  # (H, W, 3)
        base = pixels if pixels.shape[2] == 3 else np.repeat(pixels, 3, axis=2)
        overlay = (0.5 * base + 0.5 * heat).round().astype(np.uint8)
        return {
            "image": key,
            "layer": result.layer,
            "target": result.target,
            "label": self.classifier.class_names[result.target],
            "predicted": result.predicted,
            "probability": float(result.probabilities[result.target]),
            "input_png": _png(pixels),
            "heatmap_png": _png(heat),
            "overlay_png": _png(overlay),
            "saliency_png": _png(sequential(saliency, 0.0, 1.0)),
            "cam_cells": result.cam_cells.round(6).tolist(),
        }

    def conv_step(
        self, key: str, pixels: np.ndarray, name: str, channel: int, y: int, x: int
    ) -> dict[str, Any]:
        """The numbers behind output (channel, y, x) of conv layer `name`, from its real input."""
        convs = [layer.name for layer in self.plan.layers if layer.kind == "conv"]
        if name not in convs:
            raise HTTPException(
                422,
                f"layer={name!r} is not a conv layer; the conv layers are {', '.join(convs) or 'none'}",
            )
        layer = self.plan.layer(name)
        height, width, depth = layer.output_shape
        for what, value, limit in (("channel", channel, depth), ("y", y, height), ("x", x, width)):
            if not 0 <= value < limit:
                raise HTTPException(
                    422,
                    f"{what}={value} is outside {name}'s output {height}x{width}x{depth}; use 0..{limit - 1}",
                )
        module = getattr(self.model, name)
        with self.lock:
            steps = self._walk(self._input(pixels), until=name)
        _, layer_input, output = steps[-1]
        previous = steps[-2][0].name if len(steps) > 1 else "input"
        top, bottom, left, right = module.pad
        fh, fw = module.kernel_size
        stride = module.stride[0]
        padded = F.pad(
            layer_input[0], (left, right, top, bottom)
        )  # zeros, as Conv2d pads: (C, H', W')
        row, col = y * stride, x * stride
        patch = padded[:, row : row + fh, col : col + fw].double()  # (C, Fh, Fw)
        weights = module.weight[channel].detach().double()  # (C, Fh, Fw)
        products = patch * weights
        bias = float(module.bias[channel].detach()) if module.bias is not None else 0.0
        total = float(products.sum())
        in_h, in_w = layer_input.shape[2:]
        rows = np.arange(row - top, row - top + fh)
        cols = np.arange(col - left, col - left + fw)
        is_pad = (
            (rows[:, None] < 0)
            | (rows[:, None] >= in_h)
            | (cols[None, :] < 0)
            | (cols[None, :] >= in_w)
        )
        box_top, box_left, box_height, box_width = input_box(self.plan, name, y, x)
        return {
            "image": key,
            "layer": name,
            "channel": channel,
            "y": y,
            "x": x,
            "input_layer": previous,
            "kernel_size": [fh, fw],
            "stride": stride,
            "padding": [top, bottom, left, right],
            "origin": [row - top, col - left],
            "padded": is_pad.tolist(),
            "patch": patch.tolist(),
            "weights": weights.tolist(),
            "products": products.tolist(),
            "channel_sums": products.sum(dim=(1, 2)).tolist(),
            "sum": total,
            "bias": bias,
            "result": total + bias,
            "activation": float(output[0, channel, y, x]),
            "receptive_field": {
                "top": box_top,
                "left": box_left,
                "height": box_height,
                "width": box_width,
            },
        }


# ----------------------------------------------------------------------------- static files


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once at start: requests never touch the file system."""
    types = {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
        ".png": "image/png",
    }
    folder = importlib.resources.files("cnnkit.serve") / "static"
    files = {}
    for entry in folder.iterdir():
        suffix = os.path.splitext(entry.name)[1]
        if entry.is_file() and suffix in types:
            files[entry.name] = (entry.read_bytes(), types[suffix])
    return files


# Everything the page needs is its own: no CDN, no inline script, no framing.
_PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}

# ----------------------------------------------------------------------------- the app


def _error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("query", "body"))
        parts.append(f"{where or 'request'}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(
    run: str | os.PathLike | Classifier,
    *,
    token: str | None = None,
    hostnames: Iterable[str] = LOOPBACK_NAMES,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    max_images: int = 32,
    max_wait: float = 0.0,
    device: str = "cpu",
) -> FastAPI:
    """The ASGI app serving `run` (a run directory or a loaded Classifier), fixed for its life.

    Args:
        token: when given, every /api request needs `Authorization: Bearer <token>`.
        hostnames: the Host names browsers may use (DNS-rebinding guard).
        max_upload: request bodies over this many bytes get 413.
        max_images: uploads kept for conv-step and Grad-CAM (LRU).
        max_wait: seconds the micro-batcher keeps gathering after a first request.
    """
    classifier = run if isinstance(run, Classifier) else load(run, device=device)
    explorer = Explorer(classifier, max_images=max_images, max_wait=max_wait)
    static = _static_files()
    manifest = classifier.manifest

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        explorer.batcher.close()

    app = FastAPI(
        title="cnnkit explorer",
        version="1",
        description=f"Serving {manifest.get('notation', 'a cnnkit model')}",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; the page must work offline
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.explorer = explorer
    # add_middleware wraps: the last added is outermost, so Host/Origin is checked first.
    app.add_middleware(BearerToken, token=token)
    app.add_middleware(BodyLimit, max_bytes=max_upload)
    app.add_middleware(HostOriginGuard, hostnames=hostnames)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, error: HTTPException) -> JSONResponse:
        return _error_response(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        return _error_response(422, _validation_message(error))

    @app.exception_handler(Exception)
    async def server_error(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error")  # the traceback goes to the server's log only
        return _error_response(500, "internal error; the server log has the details")

    model_info = {
        "notation": str(manifest.get("notation", explorer.plan.spec)),
        "classes": list(classifier.class_names),
        "input_shape": list(classifier.input_shape),
        "preprocessing": {
            key: manifest["preprocessing"][key]
            for key in ("channels", "resize", "mean", "std")
            if key in manifest["preprocessing"]
        },
        "plan": explorer.plan.to_dict(),
        # Only top-level numbers: the manifest's other entries may name files on this machine.
        "metrics": {
            key: float(value)
            for key, value in (manifest.get("metrics") or {}).items()
            if isinstance(value, (int, float))
            and not isinstance(value, bool)
            and np.isfinite(value)
        },
    }

    @app.get("/api/model", response_model=ModelInfo, responses=_ERRORS)
    async def get_model() -> dict[str, Any]:
        """The served model: classes, input shape, preprocessing and its plan."""
        return model_info

    @app.post(
        "/api/predict", response_model=Prediction, responses=_ERRORS, openapi_extra=_IMAGE_BODY
    )
    async def predict(
        request: Request, k: int = Query(5, ge=1, le=1000, description="classes to return")
    ) -> Response:
        """Top-k classes of one image, sent as multipart 'file' or as the raw body."""
        (blob,) = await explorer.read_blobs(request)
        try:
            probs = await explorer.batcher.submit(blob)
        except Overloaded as error:
            raise HTTPException(503, f"server busy: {error}; retry shortly") from None
        if isinstance(probs, HTTPException):
            raise probs
        # A prebuilt JSONResponse skips FastAPI's response validation: this is the hot path.
        return JSONResponse({"top": explorer.top(probs, k)})

    @app.post(
        "/api/predict/batch",
        response_model=BatchPrediction,
        responses=_ERRORS,
        openapi_extra=_BATCH_BODY,
    )
    async def predict_batch(request: Request, k: int = Query(5, ge=1, le=1000)) -> Response:
        """Top-k classes of each of several images (multipart 'files' fields, up to 64)."""
        images = await explorer.read_images(request, field="files", many=True)
        probs = await run_in_threadpool(explorer._predict_batch, images)
        return JSONResponse({"predictions": [{"top": explorer.top(p, k)} for p in probs]})

    @app.post(
        "/api/activations", response_model=Activations, responses=_ERRORS, openapi_extra=_IMAGE_BODY
    )
    async def activations(
        request: Request,
        format: Literal["png", "array"] = Query(
            "png", description="maps as PNG tiles or float32 arrays"
        ),
        k: int = Query(5, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Every layer's output for one image; spatial layers as per-channel maps."""
        (pixels,) = await explorer.read_images(request)
        return await run_in_threadpool(explorer.activations, pixels, format, k)

    @app.post(
        "/api/gradcam",
        response_model=GradCamView,
        responses=_ERRORS,
        openapi_extra={
            **_IMAGE_BODY,
            "requestBody": {**_IMAGE_BODY["requestBody"], "required": False},
        },
    )
    async def grad_cam(
        request: Request,
        target: int | None = Query(
            None,
            alias="class",
            ge=0,
            le=100_000,
            description="class index; default: the predicted one",
        ),
        image: str | None = Query(
            None, pattern=IMAGE_ID, description="an id from /api/activations, instead of a body"
        ),
    ) -> dict[str, Any]:
        """Grad-CAM and saliency of a class, for an uploaded image or a held image id."""
        if image is not None:
            key, pixels = image, explorer.images.get(image)
        else:
            (pixels,) = await explorer.read_images(request)
            key = explorer.images.add(pixels)
        return await run_in_threadpool(explorer.gradcam, key, pixels, target)

    # The conv layers' names as an enum: the OpenAPI document lists them, clients and fuzzers
    # pick real ones, and any other name is a 422 that names the choices.
    conv_names = tuple(layer.name for layer in explorer.plan.layers if layer.kind == "conv")
    ConvLayer = Literal[conv_names] if conv_names else str  # type: ignore[valid-type]
    # The largest valid (y, x, channel) over the conv layers; each layer's own range is checked
    # in Explorer.conv_step.
    limits = [
        max((explorer.plan.layer(name).output_shape[axis] - 1 for name in conv_names), default=0)
        for axis in range(3)
    ]

    async def conv_step(
        image: str = Query(pattern=IMAGE_ID),
        layer: ConvLayer = Query(description="a conv layer of the plan"),  # noqa: B008 (FastAPI's idiom)
        channel: int = Query(ge=0, le=limits[2]),
        y: int = Query(ge=0, le=limits[0], description="output row"),
        x: int = Query(ge=0, le=limits[1], description="output column"),
    ) -> dict[str, Any]:
        """Input patch, filter, element-wise products and sum behind one conv activation."""
        pixels = explorer.images.get(image)
        return await run_in_threadpool(explorer.conv_step, image, pixels, layer, channel, y, x)

    # Annotations are strings here (PEP 563), and ConvLayer is local: give FastAPI the type itself.
    conv_step.__annotations__["layer"] = ConvLayer
    app.get("/api/conv-step", response_model=ConvStep, responses=_ERRORS)(conv_step)

    @app.get("/healthz", response_model=Health, responses=_ERRORS)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return _static_response(static, "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        return _static_response(static, name)

    return app


def _static_response(static: dict[str, tuple[bytes, str]], name: str) -> Response:
    if name not in static:
        raise HTTPException(404, f"no page file {name!r}")
    body, media_type = static[name]
    return Response(body, media_type=media_type, headers=_PAGE_HEADERS)
