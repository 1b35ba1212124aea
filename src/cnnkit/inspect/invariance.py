"""Translation invariance: how predictions change as the image shifts by -k..k pixels.

Shifting happens on the uint8 image, before normalisation, and fills the uncovered border
with 0 (black), which is MNIST's background; grid cell [dy + k, dx + k] is the shift by dy
rows (down) and dx columns (right).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit.errors import ConfigError
from cnnkit.inspect.gradcam import check_class
from cnnkit.inspect.views import evaluating

Preprocess = Callable[[np.ndarray], torch.Tensor]


def shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """uint8 (N, H, W, C) moved dy rows down and dx columns right, zeros filling in."""
    out = np.zeros_like(images)
    _, height, width, _ = images.shape
    src_y, dst_y = slice(max(-dy, 0), height - max(dy, 0)), slice(max(dy, 0), height - max(-dy, 0))
    src_x, dst_x = slice(max(-dx, 0), width - max(dx, 0)), slice(max(dx, 0), width - max(-dx, 0))
    out[:, dst_y, dst_x] = images[:, src_y, src_x]
    return out


def _check_k(k: int, shape: tuple[int, ...]) -> None:
    if not 0 < k < min(shape[1], shape[2]):
        raise ConfigError(f"--shift {k} must be between 1 and {min(shape[1], shape[2]) - 1} px")


@dataclass
class ShiftGrid:
    k: int
    target: int  # class whose probability is shown
    probability: np.ndarray  # (2k+1, 2k+1): P(target) at each shift
    agree: np.ndarray  # (2k+1, 2k+1) bool: argmax equals the unshifted argmax
    predicted: np.ndarray  # (2k+1, 2k+1) int: argmax at each shift

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "shifts": list(range(-self.k, self.k + 1)),
            "target": self.target,
            "probability": self.probability.round(6).tolist(),
            "agree": self.agree.tolist(),
            "predicted": self.predicted.tolist(),
            "agreement": float(self.agree.mean()),
        }


def image_invariance(
    model: nn.Module,
    image: np.ndarray,
    preprocess: Preprocess,
    k: int = 4,
    target: int | None = None,
) -> ShiftGrid:
    """Every shift of one uint8 (H, W, C) image in one batch of (2k+1)^2."""
    _check_k(k, image[None].shape)
    side = 2 * k + 1
    batch = np.concatenate(
        [shift(image[None], dy, dx) for dy in range(-k, k + 1) for dx in range(-k, k + 1)]
    )
    with evaluating(model), torch.no_grad():
        probs = torch.softmax(model(preprocess(batch)).double(), dim=1).cpu().numpy()
    check_class(target, probs.shape[1])
    centre = probs[side * k + k]  # the unshifted image
    base = int(centre.argmax())
    chosen = base if target is None else target
    predicted = probs.argmax(axis=1).reshape(side, side)
    return ShiftGrid(k, chosen, probs[:, chosen].reshape(side, side), predicted == base, predicted)


@dataclass
class ShiftAccuracy:
    k: int
    images: int
    along_x: np.ndarray  # (2k+1,): accuracy when shifted dx = -k..k columns (right)
    along_y: np.ndarray  # (2k+1,): accuracy when shifted dy = -k..k rows (down)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "shifts": list(range(-self.k, self.k + 1)),
            "images": self.images,
            "accuracy_x": self.along_x.round(6).tolist(),
            "accuracy_y": self.along_y.round(6).tolist(),
            "unshifted": float(self.along_x[self.k]),
        }


def dataset_invariance(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    preprocess: Preprocess,
    k: int = 4,
    batch_size: int = 1000,
) -> ShiftAccuracy:
    """Accuracy of uint8 images (N, H, W, C) against their labels, shifted along x, then y.

    One axis at a time (4k + 1 passes over the data, not (2k + 1)^2): the per-image view
    shows the full grid; for a data set the two axes tell the same story at a fraction of the cost.
    """
    _check_k(k, images.shape)
    labels_t = torch.as_tensor(labels)

    def accuracy(dy: int, dx: int) -> float:
        correct = 0
        for start in range(0, len(images), batch_size):
            part = shift(images[start : start + batch_size], dy, dx)
            guess = model(preprocess(part)).argmax(dim=1).cpu()
            correct += int((guess == labels_t[start : start + len(part)]).sum())
        return correct / max(len(images), 1)

    with evaluating(model), torch.no_grad():
        along_x = np.array([accuracy(0, d) for d in range(-k, k + 1)])
        along_y = np.array([along_x[k] if d == 0 else accuracy(d, 0) for d in range(-k, k + 1)])
    return ShiftAccuracy(k, len(images), along_x, along_y)
