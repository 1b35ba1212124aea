"""Export a run to ONNX, checked on the spot against the PyTorch model it came from.

    >>> result = export_onnx("runs/mnist", images=test_images)   # writes runs/mnist/model.onnx
    >>> result.parity.max_abs_diff, result.parity.top1_agreement
    (2.4e-07, 1.0)

The file has a dynamic batch dimension, input "input" float32 (N, C, H, W) normalised as the run
normalises, and output "logits" (N, classes) (probabilities for a softmax head). Its
metadata_props carry the preprocessing (`cnnkit.onnx_runtime` reads them), so it predicts without
cnnkit's torch half. Parity failing is an error: the file is not written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.onnx_runtime import EXPORT_EXTRA, FORMAT, FORMAT_VERSION, PREFIX, require
from cnnkit.preprocess import PAD_VALUE, alpha_background, normalise, scale_and_bias

DEFAULT_OPSET = 18  # the torch.export-based exporter's own opset; older ones need a conversion
PARITY_IMAGES = 1000  # images of the run's data compared, besides the edge images
PARITY_TOLERANCE = 1e-4  # max |logit difference| in fp32 that still counts as the same model
MAX_ACCURACY_DROP = 1.0  # points of accuracy int8 may lose before --quantize needs --force


@dataclass(frozen=True)
class Parity:
    """The ONNX model against the PyTorch one on the same float inputs."""

    images: int  # of the run's data
    edge_images: int  # all black, all white, noise
    max_abs_diff: float  # over every output of every image
    top1_agreement: float  # fraction of images whose argmax agrees

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PARITY_TOLERANCE and self.top1_agreement == 1.0


@dataclass(frozen=True)
class Quantization:
    """int8 against fp32 on the run's test data, and the two file sizes."""

    images: int
    fp32_accuracy: float  # percent
    int8_accuracy: float  # percent
    fp32_bytes: int
    int8_bytes: int

    @property
    def drop(self) -> float:
        return self.fp32_accuracy - self.int8_accuracy


@dataclass(frozen=True)
class ExportResult:
    path: Path
    bytes: int
    opset: int
    parity: Parity
    quantization: Quantization | None = None


def export_onnx(
    run: str | os.PathLike,
    out: str | os.PathLike | None = None,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    quantize: str | None = None,
    force: bool = False,
) -> ExportResult:
    """Export `run` to `out` (default RUN/model.onnx, RUN/model.int8.onnx with quantize="int8").

    Args:
        images: uint8 (N, H, W, C) of the run's data at its input shape; the first
            PARITY_IMAGES are compared (with the edge images), all of them rate int8.
        labels: their class indices; needed by quantize.
        quantize: None or "int8" (ONNX Runtime dynamic quantisation).
        force: keep an int8 model that loses more than MAX_ACCURACY_DROP points.

    Raises CheckpointError (existing file, bad run, parity failed), ConfigError (bad option,
    int8 too inaccurate) and MissingExtraError (onnx, onnxscript or onnxruntime missing).
    """
    from cnnkit.runs import atomic_write_bytes, load_model

    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize {quantize!r} is not known; the only choice is int8")
    run = Path(run)
    default = "model.int8.onnx" if quantize else "model.onnx"
    out = Path(out) if out is not None else run / default
    if out.exists() and not overwrite:
        raise CheckpointError(f"{out} already exists; pass --overwrite to replace it")
    onnx = require("onnx", EXPORT_EXTRA)
    require("onnxscript", EXPORT_EXTRA)
    require("onnxruntime", EXPORT_EXTRA)
    _check_opset(opset, onnx)
    model, manifest = load_model(run)
    images = _images(images, manifest)
    proto = to_onnx(model, manifest, opset)
    onnx.checker.check_model(proto, full_check=True)
    blob = proto.SerializeToString()
    parity = check_parity(model, blob, images[:PARITY_IMAGES], manifest)
    if not parity.ok:
        raise CheckpointError(
            f"the ONNX export of {run} does not match PyTorch (max |logit diff| "
            f"{parity.max_abs_diff:.2e}, limit {PARITY_TOLERANCE:.0e}; top-1 agreement "
            f"{parity.top1_agreement:.2%}); the file was not written; please report this"
        )
    quantization = None
    if quantize:
        blob, quantization = quantize_int8(blob, images, labels, force)
    atomic_write_bytes(out, blob)
    return ExportResult(out, len(blob), opset, parity, quantization)


def _check_opset(opset: int, onnx: Any) -> None:
    newest = onnx.defs.onnx_opset_version()
    if type(opset) is not int or not DEFAULT_OPSET <= opset <= newest:
        raise ConfigError(
            f"--opset {opset!r} is not supported; give {DEFAULT_OPSET} to {newest} "
            f"(the exporter writes opset {DEFAULT_OPSET} natively)"
        )


def _images(images: np.ndarray | None, manifest: dict[str, Any]) -> np.ndarray:
    shape = tuple(manifest["input_shape"])
    if images is None:
        return np.zeros((0, *shape), dtype=np.uint8)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != shape:
        raise ConfigError(
            f"parity images must be uint8 (N, {', '.join(map(str, shape))}), got "
            f"{images.dtype} {images.shape}"
        )
    return images


# ----------------------------------------------------------------------------- the conversion


def to_onnx(model: Any, manifest: dict[str, Any], opset: int = DEFAULT_OPSET) -> Any:
    """The run's torch model -> an onnx.ModelProto, batch dimension dynamic, metadata attached.

    torch.onnx.export's torch.export-based ("dynamo") exporter: the TorchScript one is
    deprecated in torch 2.x. It needs onnxscript.
    """
    import torch

    height, width, channels = manifest["input_shape"]
    # Batch 2, not 1: an example of batch 1 lets torch.export specialise the dimension.
    example = torch.zeros(2, channels, height, width)
    batch = torch.export.Dim("batch")
    with _quiet("torch.onnx"):
        program = torch.onnx.export(
            model.eval(),
            (example,),
            dynamo=True,
            dynamic_shapes=({0: batch},),
            input_names=["input"],
            output_names=["logits"],
            opset_version=opset,
            verbose=False,
        )
        if program is None:  # torch returns None only for dynamo=False, never used here
            raise RuntimeError("torch.onnx.export returned no ONNXProgram")
        program.optimize()
    proto = program.model_proto
    del proto.metadata_props[:]
    for key, value in metadata(manifest).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "cnnkit"
    return proto


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library's chatter on one logger and in warnings (the exporter logs that
    torchvision's ops are skipped; quantize_dynamic logs to the root logger), which would break
    the CLI's one-line output."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def metadata(manifest: dict[str, Any]) -> dict[str, str]:
    """The "cnnkit.*" metadata_props: everything a predictor needs besides the graph, as JSON."""
    pre = manifest["preprocessing"]
    layers = manifest["spec"].get("layers") or [{}]
    values = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "notation": manifest.get("notation"),
        "spec": manifest["spec"],
        "input_shape": manifest["input_shape"],
        "input_layout": "NCHW float32 = (uint8 / 255 - mean) / std",
        "channels": manifest["input_shape"][2],
        "resize": pre.get("resize", "letterbox"),
        "pad_value": PAD_VALUE,
        "alpha_background": alpha_background(pre),
        "mean": pre["mean"],
        "std": pre["std"],
        "class_names": manifest["class_names"],
        "outputs": "probabilities" if layers[-1].get("type") == "softmax" else "logits",
        "weights_sha256": manifest["weights"]["sha256"],
    }
    return {PREFIX + key: json.dumps(value) for key, value in values.items()}


# ----------------------------------------------------------------------------- the checks


def edge_images(shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 (3, H, W, C): all black, all white, and uniform noise (seeded)."""
    noise = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    return np.stack([np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8), noise])


def check_parity(model: Any, blob: bytes, images: np.ndarray, manifest: dict[str, Any]) -> Parity:
    """Run the same float inputs through torch and ONNX Runtime and compare the outputs."""
    import torch

    edges = edge_images(tuple(manifest["input_shape"]))
    scale, bias = scale_and_bias(
        manifest["preprocessing"]["mean"], manifest["preprocessing"]["std"]
    )
    session = _session(blob)
    diffs, agree, total = [0.0], 0, 0
    for start in range(0, len(images) + len(edges), 256):
        batch = np.concatenate([images, edges])[start : start + 256]
        x = normalise(batch, scale, bias)  # (B, C, H, W)
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).reshape(len(x), -1).numpy()
        got = session.run(None, {"input": x})[0].reshape(len(x), -1)
        diffs.append(float(np.abs(got - expected).max()))
        agree += int((got.argmax(axis=1) == expected.argmax(axis=1)).sum())
        total += len(x)
    return Parity(len(images), len(edges), max(diffs), agree / total)


def _session(blob: bytes) -> Any:
    ort = require("onnxruntime", EXPORT_EXTRA)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])


def quantize_int8(
    blob: bytes, images: np.ndarray, labels: np.ndarray | None, force: bool
) -> tuple[bytes, Quantization]:
    """ONNX Runtime dynamic int8 quantisation (weights int8, activations quantised on the fly),
    rated on `images`; ConfigError when it loses more than MAX_ACCURACY_DROP points unless
    `force`."""
    if labels is None or len(images) == 0 or len(labels) != len(images):
        raise ConfigError("--quantize int8 needs the run's test images and labels to rate it")
    require("onnxruntime.quantization", EXPORT_EXTRA)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="cnnkit-int8-") as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(blob)
        with _quiet(""):  # the root logger
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        int8 = _with_metadata(target.read_bytes(), blob)
    labels = np.asarray(labels)
    rating = Quantization(
        images=len(images),
        fp32_accuracy=_accuracy(blob, images, labels),
        int8_accuracy=_accuracy(int8, images, labels),
        fp32_bytes=len(blob),
        int8_bytes=len(int8),
    )
    if rating.drop > MAX_ACCURACY_DROP and not force:
        raise ConfigError(
            f"int8 loses {rating.drop:.2f} points of accuracy ({rating.fp32_accuracy:.2f}% -> "
            f"{rating.int8_accuracy:.2f}%), more than {MAX_ACCURACY_DROP:g}; pass --force to keep it"
        )
    return int8, rating


def _with_metadata(int8: bytes, fp32: bytes) -> bytes:
    """The quantised model with the fp32 model's metadata_props (quantize_dynamic may drop them)."""
    import onnx

    model, source = onnx.load_from_string(int8), onnx.load_from_string(fp32)
    del model.metadata_props[:]
    model.metadata_props.extend(source.metadata_props)
    return model.SerializeToString()


def _accuracy(blob: bytes, images: np.ndarray, labels: np.ndarray) -> float:
    """Percent top-1 of an exported model (its own metadata's preprocessing) on uint8 images."""
    from cnnkit.onnx_runtime import OnnxClassifier, read_metadata

    session = _session(blob)
    info = read_metadata(dict(session.get_modelmeta().custom_metadata_map), "the export")
    classifier = OnnxClassifier(session, "<export>", info)
    predicted = classifier.log_probabilities(images, 512).argmax(axis=1)
    return float((predicted == labels).mean() * 100)
