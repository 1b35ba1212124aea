"""Images in, model inputs out, top-k back: the one preprocessing every predictor shares.

`cnnkit.predict.Classifier` (torch) and `cnnkit.onnx_runtime.OnnxClassifier` (ONNX Runtime) both
call these functions, so a photo reaches an exported model exactly as it reaches the run it came
from. NumPy and Pillow only: nothing here imports torch (tests/test_layering.py checks).

    image (path, PIL image, uint8 array) --fit_image--> uint8 (H, W, C)
        --normalise--> float32 (N, C, H, W) = (u8 / 255 - mean) / std

`fit_noted` also says what fitting changed in an image unlike the training data (`input_notes`:
"colour, made grey for this 28x28x1 model"), so `predict`, `evaluate` and the server can tell.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError, ConfigError, DataError, ImageError
from cnnkit.spec import shape_text

ImageInput = str | os.PathLike | np.ndarray | Any  # Any: a PIL.Image.Image

# What `cnnkit.data.images` fills with, recorded in exported models' metadata: a letterbox or
# centring pad is black (0); transparent pixels are composited on white (255) in data folders,
# and on the training data's background in what a model is asked to predict (`alpha_background`).
PAD_VALUE = 0
ALPHA_BACKGROUND = 255
# Mean pixel (0-1, averaged over channels) below which training data is taken to be light on a
# dark background: MNIST 0.131, KMNIST 0.19, Fashion-MNIST 0.286 against photo sets at 0.34-0.48
# (GTSRB 0.32-0.34, CIFAR-10 0.47, ImageNet 0.45), the published per-channel means.
DARK_MEAN = 0.3


def alpha_background(preprocessing: dict[str, Any]) -> int:
    """0 (black) or 255 (white): what transparent pixels become, following the training data.

    The value recorded in `preprocessing` (an exported model's metadata) when there is one, else
    black for dark-background data such as MNIST's white-on-black digits, else white.
    """
    recorded = preprocessing.get("alpha_background")
    if recorded in (0, 255):
        return int(recorded)
    mean = [float(m) for m in preprocessing.get("mean") or [1.0]]
    return 0 if sum(mean) / len(mean) < DARK_MEAN else 255


def fit_image(
    image: ImageInput,
    input_shape: tuple[int, int, int],
    resize: str,
    background: int = ALPHA_BACKGROUND,
    max_pixels: int | None = None,
) -> np.ndarray:
    """One image (path, PIL image or uint8 HxW / HxWxC array) -> uint8 (H, W, C) for the model.

    A path is decoded within `max_pixels` (None: data.images' default budget), a JPEG straight
    to about the model's size. Raises ImageError for a file that cannot be decoded or an array
    that is not an image.
    """
    from cnnkit.data.images import preprocess_image

    pil = as_image(image, max_pixels, input_shape[:2])
    return preprocess_image(pil, input_shape, resize, background)


def fit_noted(predictor: Any, image: ImageInput) -> tuple[np.ndarray, list[str]]:
    """(uint8 (H, W, C), notes): `fit_image` for a predictor (its input_shape, resize and
    background), with what was done to the image that training data did not need (`input_notes`).
    """
    from cnnkit.data.images import preprocess_image

    shape, resize, background = predictor.input_shape, predictor.resize, predictor.background
    pil = as_image(image, getattr(predictor, "max_pixels", None), shape[:2])
    pixels = preprocess_image(pil, shape, resize, background)
    return pixels, input_notes(pil, shape, resize, background)


def as_image(
    image: ImageInput, max_pixels: int | None = None, draft: tuple[int, int] | None = None
) -> Any:
    """A path, PIL image or uint8 array -> a decoded PIL image; ImageError otherwise.

    A path is decoded within `max_pixels` (None: data.images' default budget); with `draft`
    (H, W), a JPEG is decoded straight to about that size.
    """
    from PIL import Image

    from cnnkit.data.images import DEFAULT_MAX_PIXELS, open_image

    if isinstance(image, (str, os.PathLike)):
        budget = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        return open_image(image, max_pixels=budget, draft=draft)
    if isinstance(image, np.ndarray):
        return array_image(image)
    if not isinstance(image, Image.Image):
        raise ImageError(
            f"cannot predict a {type(image).__name__}; give a file path, a PIL image or a "
            f"uint8 array (H, W) or (H, W, C)"
        )
    return image


def input_notes(
    image: Any, input_shape: tuple[int, int, int], resize: str, background: int
) -> list[str]:
    """Short notes on what fitting `image` (PIL) to the model changed: an animation's frame,
    transparency, colour or grey, and size. [] for an image like the training data."""
    height, width, channels = input_shape
    model = f"this {shape_text(input_shape)} model"
    notes = []
    frames = image.info.get("frames") or getattr(image, "n_frames", 1)
    if frames > 1:
        notes.append(f"frame 0 of a {frames}-frame {image.format or 'animated'} image used")
    if _transparent(image):
        colour = "black" if background == 0 else "white"
        notes.append(f"transparent pixels composited onto {colour}, the training background")
    coloured = _coloured(image)
    if coloured and channels == 1:
        notes.append(f"colour, made grey for {model}")
    elif not coloured and channels == 3 and _grey_mode(image.mode):
        notes.append(f"grayscale, copied into 3 channels for {model}")
    w, h = image.info.get("declared_size", image.size)  # before a JPEG's draft decode
    if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF turns it a quarter: shown as h x w
        w, h = h, w
    padded = height >= h and width >= w and h * width == w * height
    if (h, w) != (height, width) and not padded:
        notes.append(f"resized ({resize}) from {w}x{h} to {width}x{height} (width x height)")
    elif padded and 4 * h < 3 * height:
        # A border of a few pixels is how array data is fitted in training too (MNIST's 28x28
        # into LeNet's 32x32: not noted); a small image in a wide border is not.
        notes.append(f"padded from {w}x{h} to {width}x{height} (width x height)")
    return notes


def _grey_mode(mode: str) -> bool:
    return mode in ("1", "L", "LA", "La", "F") or mode.startswith("I")


# Notes look at a nearest-neighbour sample of at most this many pixels: a 40 MP RGBA upload
# converted whole would cost ~500 MB (tests/test_serve_limits.py keeps a decode under 300 MB).
NOTE_SAMPLE_PIXELS = 1_000_000


def _sample(image: Any) -> Any:
    """`image` itself when small, else a nearest-neighbour copy of about NOTE_SAMPLE_PIXELS."""
    from PIL import Image

    pixels = image.width * image.height
    if pixels <= NOTE_SAMPLE_PIXELS:
        return image
    factor = math.ceil(math.sqrt(pixels / NOTE_SAMPLE_PIXELS))
    size = (max(1, image.width // factor), max(1, image.height // factor))
    return image.resize(size, Image.Resampling.NEAREST)


def _transparent(image: Any) -> bool:
    """True when some (sampled) pixel is not fully opaque."""
    if image.mode not in ("LA", "La", "RGBA", "RGBa", "PA") and "transparency" not in image.info:
        return False
    return _sample(image).convert("RGBA").getchannel("A").getextrema()[0] < 255


def _coloured(image: Any) -> bool:
    """True when the channels differ somewhere (sampled): an RGB file of grey pixels is not colour."""
    if _grey_mode(image.mode):
        return False
    rgb = np.asarray(_sample(image).convert("RGB"))
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


def scale_and_bias(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias), float32 (C,), so that u8 * scale + bias = (u8/255 - mean) / std in one pass.

    float32 throughout, operation by operation as `cnnkit.data.loader.normalisation` computes it
    in torch: IEEE rounding makes the two bitwise equal (tests/test_export.py checks).
    """
    scale = np.float32(1) / (np.asarray(std, dtype=np.float32) * np.float32(255))
    bias = -np.asarray(mean, dtype=np.float32) * np.float32(255) * scale
    return scale, bias


def normalise(images: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W), contiguous: the model's input."""
    x = images.astype(np.float32) * scale + bias  # (N, H, W, C)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, C, H, W)


def log_softmax(outputs: np.ndarray, outputs_probs: bool) -> np.ndarray:
    """Model outputs (N, ...) -> float64 (N, classes) log-probabilities.

    A softmax head gives probabilities: their log, renormalised; other heads give logits.
    """
    out = outputs.reshape(len(outputs), -1).astype(np.float64)  # (N, classes)
    if outputs_probs:
        out = np.log(np.maximum(out, np.finfo(np.float64).tiny))
    out = out - out.max(axis=1, keepdims=True)
    return out - np.log(np.exp(out).sum(axis=1, keepdims=True))


def predict_images(
    images: ImageInput | Sequence[ImageInput],
    fit: Callable[[ImageInput], tuple[np.ndarray, list[str]]],
    log_probabilities: Callable[[np.ndarray, int], np.ndarray],
    class_names: Sequence[str],
    top_k: int,
    batch_size: int,
) -> list[dict[str, Any]]:
    """The top-k classes of each image: [{"file", "top": [{"class", "prob"}], "error", "notes"}].

    `fit` is a predictor's image -> (uint8 (H, W, C), notes), as `fit_noted`; `log_probabilities`
    its uint8 (N, H, W, C), batch size -> (N, classes). An image that cannot be read gets "error"
    and an empty "top"; "notes" says what was done to an image unlike the training data.
    """
    if type(top_k) is not int or top_k < 1:
        raise ConfigError(f"top_k={top_k!r} must be a whole number of at least 1, e.g. 5")
    items = as_list(images)
    results: list[dict[str, Any]] = []
    fitted, fitted_at = [], []
    for index, image in enumerate(items):
        results.append({"file": file_name(image), "top": [], "error": None, "notes": []})
        try:
            pixels, results[-1]["notes"] = fit(image)
            fitted.append(pixels)
        except CnnkitError as error:
            results[-1]["error"] = str(error)
            continue
        fitted_at.append(index)
    if fitted:
        probs = np.exp(log_probabilities(np.stack(fitted), batch_size))  # (N, classes)
        k = min(top_k, len(class_names))
        # Stable sort of -p: equal probabilities keep class order, so output is reproducible.
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        for row, index in enumerate(fitted_at):
            results[index]["top"] = [
                {"class": class_names[c], "prob": float(probs[row, c])} for c in order[row]
            ]
    return results


def check_batch_size(batch_size: int) -> None:
    if type(batch_size) is not int or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be a whole number of at least 1")


def as_list(images: Any) -> list[Any]:
    """One image or many -> a list; a 4-D array is a batch of images."""
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (str, os.PathLike)) or hasattr(images, "getbands"):  # PIL image
        return [images]
    if isinstance(images, Iterable):
        return list(images)
    return [images]


def file_name(image: Any) -> str | None:
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    name = getattr(image, "filename", None)  # set by PIL.Image.open
    return str(name) if name else None


def array_image(array: np.ndarray) -> Any:
    """uint8 (H, W) or (H, W, C) with C in 1, 2, 3, 4 -> a PIL image (L, LA, RGB or RGBA)."""
    from PIL import Image

    if array.dtype != np.uint8:
        raise ImageError(
            f"array of dtype {array.dtype}: give uint8 pixels 0-255 "
            f"(for floats in [0, 1]: (a * 255).round().astype(np.uint8))"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (2, 3, 4))):
        raise ImageError(
            f"array of shape {array.shape} is not an image; give (H, W) or (H, W, C) with C 1-4"
        )
    if min(array.shape[:2]) < 1:
        raise ImageError(f"array of shape {array.shape} has no pixels")
    return Image.fromarray(np.ascontiguousarray(array))  # L, LA, RGB or RGBA by shape


def image_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, and each folder's image files (recursively, sorted; hidden ones skipped).

    Raises DataError for a folder without images; a missing file stays in the list, so that
    `predict` reports it next to the others.
    """
    from cnnkit.data.images import EXTENSIONS

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in EXTENSIONS
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not found:
            raise DataError(
                f"{path} is a folder without image files ({', '.join(EXTENSIONS)}); "
                f"give image files or a folder that holds some"
            )
        files.extend(found)
    return files
