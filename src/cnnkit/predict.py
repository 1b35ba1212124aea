"""Classifier: a trained run rebuilt from its directory, preprocessing any image as training did.

    >>> model = cnnkit.load("runs/mnist")
    >>> model.predict(["seven.png", "photo.jpg"], top_k=3)
    [{"file": "seven.png", "top": [{"class": "7", "prob": 0.98}, ...], "error": None,
      "notes": []}, {"file": "photo.jpg", ..., "notes": ["colour, made grey for ..."]}]

Preprocessing is the manifest's, through `cnnkit.preprocess` (shared with the ONNX predictor):
`cnnkit.data.preprocess_image` (channel policy, EXIF, alpha on the training background, pad or
resize) and then the manifest's mean/std, computed as `DeviceLoader` computes it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from cnnkit.data.images import DEFAULT_MAX_PIXELS
from cnnkit.errors import DataError
from cnnkit.metrics import classification_report
from cnnkit.preprocess import (  # image_files: kept importable from here for callers
    ImageInput,
    alpha_background,
    as_list,
    check_batch_size,
    fit_image,
    fit_noted,
    image_files,
    predict_images,
)
from cnnkit.runs import load_model

__all__ = ["Classifier", "ImageInput", "image_files", "load"]


class Classifier:
    """A trained model with its class names and preprocessing, ready for images."""

    def __init__(self, model: torch.nn.Module, manifest: dict[str, Any], device: Any = "cpu"):
        self.model = model.eval()
        self.manifest = manifest
        self.device = torch.device(device)
        self.class_names: list[str] = list(manifest["class_names"])
        self.input_shape: tuple[int, int, int] = tuple(manifest["input_shape"])  # (H, W, C)
        pre = manifest["preprocessing"]
        self.resize: str = pre.get("resize", "letterbox")
        self.mean: list[float] = list(pre["mean"])
        self.std: list[float] = list(pre["std"])
        self.background: int = alpha_background(pre)  # under transparent pixels: 0 or 255
        # A spec that ends in softmax outputs probabilities already; others output logits.
        layers = manifest["spec"].get("layers") or [{}]
        last = layers[-1] if isinstance(layers[-1], dict) else {}  # from_dict checked the layers
        self._outputs_probs = last.get("type") == "softmax"
        self._normalisation: tuple[torch.Tensor, torch.Tensor] | None = None  # (scale, bias)
        # Image files declaring more pixels are refused from their header (ImageTooLarge).
        self.max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __repr__(self) -> str:
        return (
            f"Classifier({self.manifest.get('notation', '?')!r}, "
            f"{len(self.class_names)} classes, device={str(self.device)!r})"
        )

    # ------------------------------------------------------------------------- preprocessing

    def prepare(self, image: ImageInput) -> np.ndarray:
        """One image (path, PIL image or uint8 HxW / HxWxC array) -> uint8 (H, W, C) for the model.

        Raises ImageError for a file that cannot be decoded or an array that is not an image.
        """
        return fit_image(image, self.input_shape, self.resize, self.background, self.max_pixels)

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        """Renamed `prepare` (it preprocesses one image); training a model is `cnnkit.fit`."""
        raise AttributeError(
            "Classifier.fit was renamed Classifier.prepare (it preprocesses one image); "
            "to train a model use cnnkit.fit(data, model=...)"
        )

    def batches(self, images: np.ndarray, batch_size: int = 256) -> Iterator[torch.Tensor]:
        """uint8 (N, H, W, C) -> float (B, C, H, W) batches on the device, normalised.

        The training loader's own arithmetic (`cnnkit.data.loader.normalise`), so a model sees
        its inputs exactly as it saw them in training; tested bitwise against the loader.
        """
        from cnnkit.data.loader import normalisation, normalise

        check_batch_size(batch_size)
        if self._normalisation is None:  # built once: a server calls this for every request
            self._normalisation = normalisation(self.mean, self.std, self.device)
        scale, bias = self._normalisation
        for start in range(0, len(images), batch_size):
            # np.require copies read-only slices, which torch.from_numpy warns about.
            u8 = torch.from_numpy(
                np.require(images[start : start + batch_size], requirements=["C", "W"])
            )
            x = normalise(u8.to(self.device), scale, bias)  # (B, H, W, C)
            yield x.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)

    def preprocess(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Images as `predict` takes them -> the model's input (N, C, H, W); raises on a bad one."""
        fitted = np.stack([self.prepare(image) for image in as_list(images)])  # (N, H, W, C)
        return next(self.batches(fitted, batch_size=len(fitted)))

    # ------------------------------------------------------------------------- inference

    @torch.inference_mode()
    def log_probabilities(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, H, W, C) at the model's input shape -> float64 (N, classes) log-probabilities."""
        outputs = []
        for x in self.batches(images, batch_size):
            out = self.model(x)
            out = out.reshape(len(out), -1).double()  # (B, classes)
            # A softmax head gives probabilities; log of them, else log_softmax of the logits.
            out = out.clamp_min(torch.finfo(out.dtype).tiny).log() if self._outputs_probs else out
            outputs.append(torch.log_softmax(out, dim=1).cpu().numpy())
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.class_names)))

    def predict(
        self, images: ImageInput | Sequence[ImageInput], top_k: int = 5, batch_size: int = 256
    ) -> list[dict[str, Any]]:
        """The top-k classes of each image: [{"file", "top": [{"class", "prob"}], "error"}].

        `images` is one image or a list of them: paths, PIL images or uint8 arrays. An image
        that cannot be read gets "error" (and an empty "top"); the others are still predicted.
        """
        fit = functools.partial(fit_noted, self)
        return predict_images(
            images, fit, self.log_probabilities, self.class_names, top_k, batch_size
        )

    def evaluate(
        self, images: np.ndarray, labels: Sequence[int] | np.ndarray, batch_size: int = 512
    ) -> dict[str, Any]:
        """`metrics.classification_report` of uint8 (N, H, W, C) images against their labels.

        Images of another size or channel count are fitted as training fits them.
        """
        from cnnkit.data import fit_images

        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise DataError(
                f"evaluate needs uint8 images (N, H, W, C), got {images.dtype} {images.shape}"
            )
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels; they must pair up")
        if len(images) == 0:
            raise DataError("no images to evaluate")
        images = fit_images(images, self.input_shape, self.resize)
        log_probs = self.log_probabilities(images, batch_size)
        return classification_report(
            labels, log_probs.argmax(axis=1), class_names=self.class_names, log_probs=log_probs
        )


def load(path: str | os.PathLike, device: Any = "cpu") -> Classifier:
    """The Classifier of a run directory (`cnnkit train --out DIR`), with verified weights.

    >>> classifier = cnnkit.load("runs/mnist")
    """
    model, manifest = load_model(path, device=device)
    return Classifier(model, manifest, device)
