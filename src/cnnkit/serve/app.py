"""The explorer's HTTP app: one trained run, a JSON API, and the static page that draws it.

    app = create_app("runs/lenet")      # the run is loaded once; no endpoint loads another
    app = create_app("model.onnx")      # predictions only, through ONNX Runtime: no torch
    uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints (every body in and out is bounded; every error is `{"error": "..."}`):
  GET  /api/model          classes, input shape, preprocessing, the plan
  POST /api/predict        one image (multipart 'file' or raw body) -> top-k
  POST /api/predict/batch  several multipart 'files' -> top-k each
  POST /api/activations    one image -> every spatial layer's maps, an image id to hold
  POST /api/gradcam        Grad-CAM and saliency of a class, for an upload or an image id
  GET  /api/conv-step      the patch, filter, products and sum behind one conv activation
  GET  /healthz, /openapi.json, / (the page), /static/{name}
An .onnx model has no layers to look into: activations, gradcam and conv-step answer 501 with
what to install and serve instead (`cnnkit.inspect.predictor`).
An image declaring more than `max_pixels` gets 413 from its header alone; header size, header
time and open connections are bounded below the app (`cnnkit.serve.limits`).
Uploaded images are never written anywhere: the fitted pixels of the last few live in a
bounded LRU keyed by a random id, which the page sends back for conv-step and Grad-CAM.
Routes only translate: `service` reads and encodes, `cnnkit.inspect.explorer` computes (torch,
imported only for a run directory).
"""

from __future__ import annotations

import importlib.resources
import logging
import math
import os
from collections.abc import Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from cnnkit.data.images import DEFAULT_MAX_PIXELS
from cnnkit.inspect.predictor import Predictor, model_side, views_unavailable
from cnnkit.onnx_runtime import load
from cnnkit.serve.schemas import (
    BATCH_BODY,
    ERRORS,
    IMAGE_BODY,
    IMAGE_ID,
    Activations,
    BatchPrediction,
    ConvStep,
    GradCamView,
    Health,
    ModelInfo,
    Prediction,
)
from cnnkit.serve.security import (
    DEFAULT_MAX_UPLOAD,
    LOOPBACK_NAMES,
    BearerToken,
    BodyLimit,
    HostOriginGuard,
)
from cnnkit.serve.service import Service

log = logging.getLogger("cnnkit.serve")

# Everything the page needs is its own: no CDN, no inline script, no framing.
_PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def create_app(
    run: str | os.PathLike | Any,
    *,
    token: str | None = None,
    hostnames: Iterable[str] = LOOPBACK_NAMES,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    max_images: int = 32,
    max_wait: float = 0.0,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    device: str = "cpu",
) -> FastAPI:
    """The ASGI app serving `run` (a run directory, an .onnx file, or a loaded Classifier or
    OnnxClassifier), fixed for its life.

    Args:
        token: when given, every /api request needs `Authorization: Bearer <token>`.
        hostnames: the Host names browsers may use (DNS-rebinding guard).
        max_upload: request bodies over this many bytes get 413.
        max_images: uploads kept for conv-step and Grad-CAM (LRU).
        max_wait: seconds the micro-batcher keeps gathering after a first request.
        max_pixels: images declaring more pixels get 413, decided from the header alone.
    """
    classifier = load(run, device=device) if isinstance(run, (str, os.PathLike)) else run
    service = Service(
        model_side(classifier), max_images=max_images, max_wait=max_wait, max_pixels=max_pixels
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        service.close()

    app = FastAPI(
        title="cnnkit explorer",
        version="1",
        description=f"Serving {classifier.manifest.get('notation', 'a cnnkit model')}",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; the page must work offline
        redoc_url=None,
        lifespan=lifespan,
    )
    # Tests and benchmarks reach the service here; the routes read it from their closure.
    app.state.explorer = service
    # add_middleware wraps: the last added is outermost, so Host/Origin is checked first.
    app.add_middleware(BearerToken, token=token)
    app.add_middleware(BodyLimit, max_bytes=max_upload)
    app.add_middleware(HostOriginGuard, hostnames=hostnames)
    _add_error_handlers(app)
    _add_prediction_routes(app, service, _model_info(service.explorer))
    if service.explorer.views:
        _add_view_routes(app, service)
        _add_conv_step_route(app, service)
        # Imported here: live views need torch, which `cnnkit serve model.onnx` must not import.
        from cnnkit.serve.live import add_live_routes

        add_live_routes(app, service, run if isinstance(run, (str, os.PathLike)) else None, device)
    else:
        _add_unavailable_view_routes(app)
    _add_page_routes(app, _static_files())
    return app


# ----------------------------------------------------------------------------- errors


def _error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("query", "body"))
        parts.append(f"{where or 'request'}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _add_error_handlers(app: FastAPI) -> None:
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


# ----------------------------------------------------------------------------- routes


def _model_info(explorer: Predictor) -> dict[str, Any]:
    """The /api/model document: fixed for the app's life, so built once."""
    classifier, manifest, plan = explorer.classifier, explorer.classifier.manifest, explorer.plan
    return {
        "notation": str(manifest.get("notation") or (plan.spec if plan is not None else "")),
        "classes": list(classifier.class_names),
        "input_shape": list(classifier.input_shape),
        "preprocessing": {
            key: manifest["preprocessing"][key]
            for key in ("channels", "resize", "mean", "std")
            if key in manifest["preprocessing"]
        },
        "plan": plan.to_dict() if plan is not None else None,
        # Only top-level numbers: the manifest's other entries may name files on this machine.
        "metrics": {
            key: float(value)
            for key, value in (manifest.get("metrics") or {}).items()
            if isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
        },
    }


def _add_prediction_routes(app: FastAPI, service: Service, model_info: dict[str, Any]) -> None:
    @app.get("/api/model", response_model=ModelInfo, responses=ERRORS)
    async def get_model() -> dict[str, Any]:
        """The served model: classes, input shape, preprocessing and its plan."""
        return model_info

    @app.post("/api/predict", response_model=Prediction, responses=ERRORS, openapi_extra=IMAGE_BODY)
    async def predict(
        request: Request, k: int = Query(5, ge=1, le=1000, description="classes to return")
    ) -> Response:
        """Top-k classes of one image, sent as multipart 'file' or as the raw body."""
        ((pixels, notes),) = await service.read_fitted(request)
        probs = await service.predict(pixels)
        # A prebuilt JSONResponse skips FastAPI's response validation: this is the hot path.
        return JSONResponse(_prediction(service.top(probs, k), notes))

    @app.post(
        "/api/predict/batch",
        response_model=BatchPrediction,
        responses=ERRORS,
        openapi_extra=BATCH_BODY,
    )
    async def predict_batch(request: Request, k: int = Query(5, ge=1, le=1000)) -> Response:
        """Top-k classes of each of several images (multipart 'files' fields, up to 64)."""
        fitted = await service.read_fitted(request, field="files", many=True)
        images = [pixels for pixels, _ in fitted]
        probs = await run_in_threadpool(service.explorer.predict_batch, images)
        return JSONResponse(
            {
                "predictions": [
                    _prediction(service.top(p, k), notes)
                    for p, (_, notes) in zip(probs, fitted, strict=True)
                ]
            }
        )


def _prediction(top: list[dict[str, Any]], notes: list[str]) -> dict[str, Any]:
    """A prediction's body: "notes" only when the image was unlike the training data."""
    return {"top": top, "notes": notes} if notes else {"top": top}


def _add_view_routes(app: FastAPI, service: Service) -> None:
    @app.post(
        "/api/activations", response_model=Activations, responses=ERRORS, openapi_extra=IMAGE_BODY
    )
    async def activations(
        request: Request,
        format: Literal["png", "array"] = Query(
            "png", description="maps as PNG tiles or float32 arrays"
        ),
        k: int = Query(5, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Every layer's output for one image; spatial layers as per-channel maps."""
        (pixels,) = await service.read_images(request)
        return await run_in_threadpool(service.activations, pixels, format, k)

    @app.post(
        "/api/gradcam",
        response_model=GradCamView,
        responses=ERRORS,
        openapi_extra={
            **IMAGE_BODY,
            "requestBody": {**IMAGE_BODY["requestBody"], "required": False},
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
            key, pixels = image, service.images.get(image)
        else:
            (pixels,) = await service.read_images(request)
            key = service.images.add(pixels)
        return await run_in_threadpool(service.gradcam, key, pixels, target)


def _add_conv_step_route(app: FastAPI, service: Service) -> None:
    # The conv layers' names as an enum: the OpenAPI document lists them, clients and fuzzers
    # pick real ones, and any other name is a 422 that names the choices.
    explorer = service.views("/api/conv-step")
    names = explorer.conv_names
    ConvLayer = Literal[names] if names else str
    # The largest valid (y, x, channel) over the conv layers; each layer's own range is checked
    # in Explorer.conv_step.
    limits = [
        max((explorer.plan.layer(name).output_shape[axis] - 1 for name in names), default=0)
        for axis in range(3)
    ]

    async def conv_step(
        image: str = Query(pattern=IMAGE_ID),
        layer: ConvLayer = Query(description="a conv layer of the plan"),  # type: ignore[valid-type]  # noqa: B008
        channel: int = Query(ge=0, le=limits[2]),
        y: int = Query(ge=0, le=limits[0], description="output row"),
        x: int = Query(ge=0, le=limits[1], description="output column"),
    ) -> dict[str, Any]:
        """Input patch, filter, element-wise products and sum behind one conv activation."""
        pixels = service.images.get(image)
        return await run_in_threadpool(service.conv_step, image, pixels, layer, channel, y, x)

    # Annotations are strings here (PEP 563), and ConvLayer is local: give FastAPI the type itself.
    conv_step.__annotations__["layer"] = ConvLayer
    app.get("/api/conv-step", response_model=ConvStep, responses=ERRORS)(conv_step)


def _add_unavailable_view_routes(app: FastAPI) -> None:
    """The views' paths for a model without layers (ONNX): 501 and what to do instead, before
    any parameter or body is read, so the answer is the same whatever the page sends."""

    async def unavailable(request: Request) -> Response:
        return _error_response(501, views_unavailable(request.url.path))

    for method, path in (
        ("POST", "/api/activations"),
        ("POST", "/api/gradcam"),
        ("GET", "/api/conv-step"),
    ):
        app.add_api_route(
            path, unavailable, methods=[method], responses={501: ERRORS[501]}, response_model=None
        )

    @app.get("/api/live", include_in_schema=False)
    async def nothing_training() -> dict[str, Any]:
        """An .onnx model is never training: the page's live view finds nothing to follow."""
        return {"finished": True, "version": [], "probe_png": None, "snapshots": []}


# ----------------------------------------------------------------------------- the page


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


def _add_page_routes(app: FastAPI, static: dict[str, tuple[bytes, str]]) -> None:
    @app.get("/healthz", response_model=Health, responses=ERRORS)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return _static_response(static, "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        return _static_response(static, name)


def _static_response(static: dict[str, tuple[bytes, str]], name: str) -> Response:
    if name not in static:
        raise HTTPException(404, f"no page file {name!r}")
    body, media_type = static[name]
    return Response(body, media_type=media_type, headers=_PAGE_HEADERS)
