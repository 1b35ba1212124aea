"""OnnxClassifier: an exported model run by ONNX Runtime, with no torch anywhere on the path.

    >>> model = cnnkit.load("model.onnx")            # a file `cnnkit export` wrote
    >>> model.predict(["seven.png"], top_k=3)
    [{"file": "seven.png", "top": [{"class": "7", "prob": 0.98}, ...], "error": None}]

It has the interface `cnnkit.predict.Classifier` offers a server's batcher: `class_names`,
`input_shape`, `resize`, `manifest`, `prepare(image)`, `log_probabilities(uint8 (N, H, W, C))`,
`predict(...)` and `evaluate(...)`; preprocessing is the same code (`cnnkit.preprocess`).

The preprocessing travels in the model's metadata_props (keys "cnnkit.*", JSON values; written by
`cnnkit.export`). A model made elsewhere has none: give `input_shape` and `class_names`; its
input is then taken as pixels / 255 (mean 0, std 1), letterboxed.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CheckpointError, ConfigError, DataError, MissingExtraError
from cnnkit.preprocess import (
    ALPHA_BACKGROUND,
    PAD_VALUE,
    ImageInput,
    check_batch_size,
    fit_image,
    fit_noted,
    log_softmax,
    normalise,
    predict_images,
    scale_and_bias,
)

FORMAT = "cnnkit-onnx"
FORMAT_VERSION = 1
PREFIX = "cnnkit."  # metadata_props keys this module reads and `cnnkit.export` writes
RUNTIME_EXTRA = "pip install 'cnnkit[runtime]'"
EXPORT_EXTRA = "pip install 'cnnkit[export]'"


def require(module: str, extra: str) -> Any:
    """Import an optional package, or MissingExtraError naming the extra that brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"the {module} package is not installed and this needs it; run {extra}"
        ) from None


class OnnxClassifier:
    """An ONNX model with its class names and preprocessing, ready for images."""

    def __init__(self, session: Any, path: str, info: dict[str, Any]) -> None:
        self.session = session
        self.path = path
        self.class_names: list[str] = list(info["class_names"])
        self.input_shape: tuple[int, int, int] = tuple(info["input_shape"])  # (H, W, C)
        self.resize: str = info["resize"]
        self.mean: list[float] = list(info["mean"])
        self.std: list[float] = list(info["std"])
        # A model cnnkit exported records its background; a foreign one gets white, as before.
        self.background: int = int(info.get("alpha_background", ALPHA_BACKGROUND))
        self._outputs_probs = info["outputs"] == "probabilities"
        self._scale, self._bias = scale_and_bias(self.mean, self.std)
        self._input_name = session.get_inputs()[0].name
        self.max_pixels: int | None = None  # decoding budget for paths (None: the default)
        # The run manifest's shape, so code written for Classifier.manifest reads it unchanged.
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "notation": info.get("notation", Path(path).name),
            "spec": info.get("spec"),
            "class_names": self.class_names,
            "input_shape": list(self.input_shape),
            "preprocessing": {
                "channels": self.input_shape[2],
                "resize": self.resize,
                "mean": self.mean,
                "std": self.std,
                "pad_value": PAD_VALUE,
                "alpha_background": self.background,
            },
            "weights": {"sha256": info.get("weights_sha256")},
        }
        # The planner's shapes per layer (pure Python) for an exported model; None for a foreign one.
        self.plan = _plan(info.get("spec"), path)

    def __repr__(self) -> str:
        return f"OnnxClassifier({self.path!r}, {len(self.class_names)} classes)"

    def prepare(self, image: ImageInput) -> np.ndarray:
        """One image (path, PIL image or uint8 array) -> uint8 (H, W, C); as Classifier.prepare."""
        return fit_image(image, self.input_shape, self.resize, self.background, self.max_pixels)

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 (N, C, H, W), normalised: the model's input."""
        return normalise(images, self._scale, self._bias)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The model's raw outputs (logits, or probabilities for a softmax head) of (N, C, H, W)."""
        return self.session.run(None, {self._input_name: x})[0]

    def log_probabilities(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, H, W, C) at the model's input shape -> float64 (N, classes) log-probabilities."""
        check_batch_size(batch_size)
        parts = [
            log_softmax(
                self.outputs(self.preprocess(images[i : i + batch_size])), self._outputs_probs
            )
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)))

    def predict(
        self, images: ImageInput | Sequence[ImageInput], top_k: int = 5, batch_size: int = 256
    ) -> list[dict[str, Any]]:
        """The top-k classes of each image, as `Classifier.predict` gives them."""
        fit = functools.partial(fit_noted, self)
        return predict_images(
            images, fit, self.log_probabilities, self.class_names, top_k, batch_size
        )

    def evaluate(
        self, images: np.ndarray, labels: Sequence[int] | np.ndarray, batch_size: int = 512
    ) -> dict[str, Any]:
        """`metrics.classification_report` of uint8 (N, H, W, C) images, as Classifier.evaluate."""
        from cnnkit.data.images import fit_images
        from cnnkit.metrics import classification_report

        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(labels):
            raise DataError(
                f"evaluate needs uint8 images (N, H, W, C) and one label each, got "
                f"{images.dtype} {images.shape} and {len(labels)} labels"
            )
        images = fit_images(images, self.input_shape, self.resize)
        log_probs = self.log_probabilities(images, batch_size)
        return classification_report(
            labels, log_probs.argmax(axis=1), class_names=self.class_names, log_probs=log_probs
        )


def _plan(spec: Any, path: str) -> Any:
    if spec is None:
        return None
    from cnnkit.errors import SpecError
    from cnnkit.plan import plan
    from cnnkit.spec import from_dict

    try:
        return plan(from_dict(spec))
    except SpecError as error:
        raise CheckpointError(
            f"{path}: the spec in its metadata cannot be planned ({error})"
        ) from None


def load_onnx(
    path: str | os.PathLike,
    input_shape: str | Sequence[int] | None = None,
    class_names: str | Sequence[str] | None = None,
    threads: int | None = None,
) -> OnnxClassifier:
    """The OnnxClassifier of an .onnx file; `input_shape` ("28x28x1") and `class_names` ("a,b"
    or a file of one name a line) are needed only for a model cnnkit did not export.

    `threads`: ONNX Runtime's intra-op threads (default: its own choice, all cores).
    """
    session = open_session(path, threads)
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    if f"{PREFIX}format" in metadata:
        info = read_metadata(metadata, path)
        if input_shape is not None or class_names is not None:
            given = parse_input_shape(input_shape) if input_shape is not None else None
            if given is not None and list(given) != info["input_shape"]:
                raise ConfigError(
                    f"--input {input_shape} contradicts {path}'s own input {info['input_shape']}; "
                    f"leave --input out for a model cnnkit exported"
                )
            if class_names is not None:
                info["class_names"] = _checked_classes(parse_classes(class_names), info, path)
    else:
        info = foreign_info(session, path, input_shape, class_names)
    return OnnxClassifier(session, os.fspath(path), info)


def open_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session; CheckpointError for a missing, corrupt or unsupported file."""
    ort = require("onnxruntime", RUNTIME_EXTRA)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist or is not a file; give an .onnx model file")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: warnings would break the one-line contract
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's pybind errors share no public base class
        raise CheckpointError(_session_problem(path, str(error), ort.__version__)) from None


def _session_problem(path: Path, message: str, version: str) -> str:
    """One line on why ONNX Runtime refused `path`, from its own (multi-line) message."""
    detail = " ".join(message.split())
    if "implementation" in detail or "NOT_IMPLEMENTED" in detail or "not a registered" in detail:
        return (
            f"{path} needs an operator ONNX Runtime {version} lacks ({detail[-120:]}); re-export "
            f"it with a lower --opset or upgrade onnxruntime"
        )
    return (
        f"{path} is not a loadable ONNX model: corrupt or truncated ({detail[:120]}); "
        f"export it again"
    )


def read_metadata(metadata: dict[str, str], path: Any) -> dict[str, Any]:
    """The "cnnkit.*" metadata_props of an exported model -> checked preprocessing info."""
    try:
        info = {
            key[len(PREFIX) :]: json.loads(v)
            for key, v in metadata.items()
            if key.startswith(PREFIX)
        }
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{path}: its cnnkit metadata is not JSON ({error}); export it again"
        ) from None
    if info.get("format") != FORMAT or type(info.get("format_version")) is not int:
        raise CheckpointError(f"{path}: metadata format {info.get('format')!r} is not {FORMAT!r}")
    if info["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: metadata format_version {info['format_version']} is newer than this cnnkit "
            f"reads ({FORMAT_VERSION}); upgrade cnnkit"
        )
    missing = [
        k
        for k in ("input_shape", "class_names", "resize", "mean", "std", "outputs")
        if k not in info
    ]
    if missing:
        raise CheckpointError(
            f"{path}: its cnnkit metadata lacks {', '.join(missing)}; export it again"
        )
    if info.get("pad_value") != PAD_VALUE or info.get("alpha_background") not in (0, 255):
        raise CheckpointError(
            f"{path}: pads with {info.get('pad_value')!r} and puts alpha on "
            f"{info.get('alpha_background')!r}, but this cnnkit pads with {PAD_VALUE} and puts "
            f"alpha on 0 or 255; use the cnnkit version that exported it"
        )
    return info


def foreign_info(session: Any, path: Any, input_shape: Any, class_names: Any) -> dict[str, Any]:
    """Preprocessing for a model without cnnkit metadata, from the user's --input and --classes."""
    if input_shape is None or class_names is None:
        raise ConfigError(
            f"{path} has no cnnkit metadata (it was not made by 'cnnkit export'); give its input "
            f"and classes, e.g. --input 28x28x1 --classes 0,1,2 (or --classes names.txt)"
        )
    height, width, channels = parse_input_shape(input_shape)
    dims = session.get_inputs()[0].shape  # (N, C, H, W); a dim is an int, or a str when dynamic
    fixed = [d if isinstance(d, int) else None for d in dims]
    if len(dims) != 4 or any(
        f not in (None, want) for f, want in zip(fixed[1:], (channels, height, width), strict=True)
    ):
        raise ConfigError(
            f"--input {height}x{width}x{channels} does not fit {path}, whose input is {dims} "
            f"(N, C, H, W); give its H x W x C"
        )
    info: dict[str, Any] = {
        "input_shape": [height, width, channels],
        "resize": "letterbox",
        "mean": [0.0] * channels,
        "std": [1.0] * channels,
        "outputs": "logits",
    }
    info["class_names"] = _checked_classes(parse_classes(class_names), None, path, session)
    return info


def _checked_classes(names: list[str], info: Any, path: Any, session: Any = None) -> list[str]:
    expected = len(info["class_names"]) if info else None
    if session is not None:
        shape = session.get_outputs()[0].shape
        last = shape[-1] if shape else None
        expected = last if isinstance(last, int) else None
    if expected is not None and len(names) != expected:
        raise ConfigError(
            f"--classes gives {len(names)} names but {path} outputs {expected} classes; "
            f"give one name per output"
        )
    return names


def parse_input_shape(text: str | Sequence[int]) -> tuple[int, int, int]:
    """'28x28x1' (or (28, 28, 1)) -> (28, 28, 1); ConfigError otherwise."""
    parts = text.lower().split("x") if isinstance(text, str) else list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or shape[2] not in (1, 3):
        raise ConfigError(
            f"--input {text!r} is not HxWxC with 1 or 3 channels; write it like 28x28x1"
        )
    return shape


def parse_classes(text: str | Sequence[str]) -> list[str]:
    """'a,b,c', a file with one name a line, or a list -> the class names."""
    if isinstance(text, str):
        if Path(text).is_file():
            names = [line.strip() for line in Path(text).read_text(encoding="utf-8").splitlines()]
        else:
            names = [name.strip() for name in text.split(",")]
    else:
        names = [str(name) for name in text]
    names = [name for name in names if name]
    if not names:
        raise ConfigError(f"--classes {text!r} names no classes; write them like 0,1,2")
    return names


def load(path: str | os.PathLike, device: Any = "cpu", **onnx_options: Any) -> Any:
    """`cnnkit.load`: an .onnx file -> OnnxClassifier (no torch; `onnx_options` go to
    `load_onnx`), a run directory -> `cnnkit.predict.Classifier` on `device`.

    >>> cnnkit.load("runs/mnist/model.onnx").predict("seven.png")
    """
    if is_onnx_path(path):
        return load_onnx(path, **onnx_options)
    if onnx_options:
        raise ConfigError(f"{', '.join(onnx_options)}: only for an .onnx model, not the run {path}")
    from cnnkit.predict import load as load_run

    return load_run(path, device=device)


def is_onnx_path(path: str | os.PathLike) -> bool:
    """True for a path that names an ONNX model rather than a run directory."""
    return Path(path).suffix.lower() == ".onnx"
