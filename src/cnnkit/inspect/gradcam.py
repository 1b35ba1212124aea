"""Grad-CAM (Selvaraju et al. 2017) and input-gradient saliency for one image, as arrays.

The class score is the logit (before any softmax). Grad-CAM weights each channel of the target
layer by the mean gradient of the score over its positions, sums, and keeps the positive part.
The coarse map is placed back on the input by the receptive-field geometry of `receptive`:
cell (i, j) sits at the centre of its input window, so a valid-padded network's map is not
shifted the way a plain resize would shift it (LeNet's pool2 cell 0 looks at rows 0-15,
centre 7.5; a resize of 5 cells to 32 px would put it at 2.7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit.errors import ConfigError
from cnnkit.inspect.receptive import jump_offset, plan_steps
from cnnkit.inspect.views import capture, evaluating, model_plan


def spatial_layers(model: nn.Module) -> list[str]:
    """Layers whose output still has a spatial extent (more than 1x1 and not flat)."""
    return [
        layer.name
        for layer in model_plan(model).layers
        if not layer.flat and layer.output_shape[0] * layer.output_shape[1] > 1
    ]


def choose_layer(model: nn.Module, layer: str | None) -> str:
    """`layer` checked, or by default the last layer with spatial extent."""
    names = spatial_layers(model)
    if not names:
        raise ConfigError(
            f"the model '{model_plan(model).spec}' has no layer with spatial extent, so Grad-CAM "
            f"has nothing to localise"
        )
    if layer is None:
        return names[-1]
    if layer not in names:
        every = [entry.name for entry in model_plan(model).layers]
        what = "is not a layer" if layer not in every else "has no spatial extent"
        raise ConfigError(
            f"--layer {layer!r} {what}; layers with spatial extent are {', '.join(names)}"
        )
    return layer


def check_class(target: int | None, classes: int) -> None:
    if target is not None and not 0 <= target < classes:
        raise ConfigError(
            f"--class {target} is out of range; the model has {classes} classes, 0..{classes - 1}"
        )


def place_on_input(cam: np.ndarray, rows: list, cols: list, size: tuple[int, int]) -> np.ndarray:
    """(h, w) cell map -> (H, W): bilinear between cell centres, each at its window's centre."""

    def weights(steps: list, cells: int, pixels: int) -> np.ndarray:  # (pixels, cells)
        jump, offset, span = jump_offset(steps)
        position = (np.arange(pixels) - (offset + (span - 1) / 2)) / jump  # in cells
        position = np.clip(position, 0, cells - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, cells - 1)
        frac = position - low
        matrix = np.zeros((pixels, cells))
        matrix[np.arange(pixels), low] += 1 - frac
        matrix[np.arange(pixels), high] += frac
        return matrix

    h, w = cam.shape
    return weights(rows, h, size[0]) @ cam @ weights(cols, w, size[1]).T


@dataclass
class GradCam:
    layer: str  # the target layer
    target: int  # the class explained
    predicted: int
    probabilities: np.ndarray  # (classes,)
    cam_cells: np.ndarray  # (h, w) at the layer's resolution, >= 0
    cam: np.ndarray  # (H, W) on the input, >= 0
    saliency: np.ndarray  # (H, W) max over channels of |d score / d input|

    @property
    def peak(self) -> tuple[int, int]:
        """(row, col) of the Grad-CAM maximum on the input."""
        row, col = np.unravel_index(int(np.argmax(self.cam)), self.cam.shape)
        return int(row), int(col)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "target": self.target,
            "predicted": self.predicted,
            "probabilities": self.probabilities.round(6).tolist(),
            "peak": list(self.peak),
            "cam_cells": self.cam_cells.round(6).tolist(),
            "cam": self.cam.round(5).tolist(),
            "saliency": self.saliency.round(6).tolist(),
        }


def gradcam(
    model: nn.Module, x: torch.Tensor, target: int | None = None, layer: str | None = None
) -> GradCam:
    """Grad-CAM and saliency of class `target` (default: the predicted one) for x (1, C, H, W)."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ConfigError(f"gradcam takes one image (1, C, H, W), got {tuple(x.shape)}")
    name = choose_layer(model, layer)
    x = x.detach().clone().requires_grad_(True)
    with evaluating(model), torch.enable_grad(), capture(model, [name]) as outputs:
        logits = model(x)  # (1, classes)
        check_class(target, logits.shape[1])
        predicted = int(logits.argmax(dim=1))
        chosen = predicted if target is None else target
        activation = outputs[name]  # (1, K, h, w)
        grad_act, grad_x = torch.autograd.grad(logits[0, chosen], [activation, x])
    weights = grad_act[0].mean(dim=(1, 2))  # (K,): each channel's importance
    cells = torch.relu((weights[:, None, None] * activation[0]).sum(dim=0))  # (h, w)
    cells_np = cells.detach().double().cpu().numpy()
    rows, cols = plan_steps(model_plan(model), name)
    cam = place_on_input(cells_np, rows, cols, (x.shape[2], x.shape[3]))
    saliency = grad_x[0].abs().amax(dim=0).cpu().numpy()  # (H, W)
    return GradCam(
        layer=name,
        target=chosen,
        predicted=predicted,
        probabilities=torch.softmax(logits.detach()[0].double(), 0).cpu().numpy(),
        cam_cells=cells_np,
        cam=cam,
        saliency=saliency,
    )
