"""The API's bodies as pydantic models: what /openapi.json declares and the fuzz tests hold to.

Every error body is `{"error": "..."}`; `ERRORS` lists the statuses each route may answer.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

IMAGE_ID = r"^[A-Za-z0-9_-]{1,64}$"


class ErrorBody(BaseModel):
    error: str


class ClassScore(BaseModel):
    index: int
    label: str
    probability: float


class Prediction(BaseModel):
    top: list[ClassScore]
    notes: list[str] | None = Field(
        None,
        description="what was done to an image unlike the training data, e.g. 'colour, made "
        "grey for this 28x28x1 model'; absent when nothing was",
    )


class BatchPrediction(BaseModel):
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    notation: str
    classes: list[str]
    input_shape: list[int] = Field(description="(H, W, C)")
    preprocessing: dict[str, Any]
    plan: dict[str, Any] | None = Field(
        description="cnnkit.plan.Plan.to_dict(): layers, shapes, params; null for an ONNX model "
        "that cnnkit did not export"
    )
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


# Every status a route may answer, for the OpenAPI document (the fuzz test holds routes to it).
ERRORS: dict[int | str, dict[str, Any]] = {
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
        501: "a view that needs the network's layers, asked of an .onnx model",
        503: "too many requests waiting",
    }.items()
}
# The routes read their image bodies by hand (bounded, sniffed), so the document declares them.
IMAGE_BODY = {
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
BATCH_BODY = {
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
