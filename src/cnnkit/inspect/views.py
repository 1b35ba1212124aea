"""Filters and feature maps as numpy arrays, and the forward-hook helper the other views share.

Every function takes a cnnkit model (`cnnkit.network.build`: children named as the plan names
its layers, `model.plan`) and a normalised input tensor (B, C, H, W); none draws anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit.errors import ConfigError, SpecError
from cnnkit.plan import LayerPlan, Plan
from cnnkit.spec import shape_text

MAX_CHANNELS = 16  # a layer with more channels shows its strongest 16: more tiles become noise


# ----------------------------------------------------------------------------- model helpers


def model_plan(model: nn.Module) -> Plan:
    plan = getattr(model, "plan", None)
    if not isinstance(plan, Plan):
        raise ConfigError(
            f"{type(model).__name__} has no .plan; inspect needs a model from cnnkit.build"
        )
    return plan


def feature_names(model: nn.Module) -> list[str]:
    """Names of the conv, pool, inception and res layers, in order."""
    from cnnkit.network import feature_layers

    return [name for name, _ in feature_layers(model)]


def conv_names(model: nn.Module) -> list[str]:
    return [layer.name for layer in model_plan(model).layers if layer.kind == "conv"]


def layer_label(layer: LayerPlan) -> str:
    """`conv2 10x10x16`: the layer's name and output shape as the plan table shows them."""
    return f"{layer.name} {shape_text(layer.output_shape)}"


@contextmanager
def capture(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named children during the forward passes inside the block.

    The hooks are removed on exit, also after an exception, so nothing leaks into later calls.
    Outputs are kept as the module returned them (not detached): Grad-CAM differentiates them.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in names:
            module = getattr(model, name)

            def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor, name=name) -> None:
                outputs[name] = output

            handles.append(module.register_forward_hook(hook))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """model.eval() inside the block (batch norm uses running stats), the old mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------- filters


@dataclass
class Filters:
    """The first conv's weights and the per-filter weight norms of every conv."""

    layer: str  # the first conv layer's name
    weights: np.ndarray  # (K, C, Fh, Fw) float32
    norms: dict[str, np.ndarray]  # conv name -> (K,) L2 norm of each filter's weights

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "shape": list(self.weights.shape),
            "weights": self.weights.round(6).tolist(),
            "norms": {name: values.round(6).tolist() for name, values in self.norms.items()},
        }


def filters(model: nn.Module) -> Filters:
    """The first conv layer's filters and each conv layer's per-output-channel weight norms."""
    names = conv_names(model)
    if not names:
        raise SpecError(
            f"the model '{model_plan(model).spec}' has no conv layer, so it has no filters to show; "
            f"use --what features,gradcam,invariance"
        )
    norms = {}
    for name in names:
        weight = getattr(model, name).weight.detach().float()  # (K, C, Fh, Fw)
        norms[name] = weight.flatten(1).norm(dim=1).cpu().numpy()
    first = getattr(model, names[0]).weight.detach().float().cpu().numpy()
    return Filters(names[0], first, norms)


# ----------------------------------------------------------------------------- feature maps


@dataclass
class FeatureMap:
    """One layer's activations for one image."""

    name: str
    label: str  # `conv2 10x10x16`
    text: str  # the layer in notation, `conv 16@5x5 s1 valid`
    activations: np.ndarray  # (C, H, W): every channel
    shown: np.ndarray  # channel indices drawn, strongest first when not all are drawn
    strength: np.ndarray  # (C,) mean |activation| of each channel, the ranking

    @property
    def all_shown(self) -> bool:
        return len(self.shown) == len(self.activations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "text": self.text,
            "shape": list(self.activations.shape),
            "shown": self.shown.tolist(),
            "strength": self.strength.round(6).tolist(),
            "min": float(self.activations.min()),
            "max": float(self.activations.max()),
        }


def feature_maps(
    model: nn.Module, x: torch.Tensor, max_channels: int = MAX_CHANNELS
) -> list[FeatureMap]:
    """Activations of every conv/pool/inception/res layer for one image x (1, C, H, W)."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ConfigError(f"feature_maps takes one image (1, C, H, W), got {tuple(x.shape)}")
    plan = model_plan(model)
    names = feature_names(model)
    with evaluating(model), torch.no_grad(), capture(model, names) as outputs:
        model(x)
    maps = []
    for name in names:
        acts = outputs[name][0].float().cpu().numpy()  # (C, H, W)
        strength = np.abs(acts).mean(axis=(1, 2))
        if len(acts) <= max_channels:
            shown = np.arange(len(acts))
        else:  # strongest first; a stable sort keeps ties in channel order
            shown = np.argsort(-strength, kind="stable")[:max_channels]
        layer = plan.layer(name)
        maps.append(FeatureMap(name, layer_label(layer), layer.text, acts, shown, strength))
    return maps


def normaliser(classifier: Any) -> Callable[[np.ndarray], torch.Tensor]:
    """uint8 (N, H, W, C) already fitted -> the model's float input (N, C, H, W), as training
    normalised it (Classifier.batches, one batch); the views take this as `preprocess`."""

    def normalise(images: np.ndarray) -> torch.Tensor:
        return next(
            classifier.batches(np.ascontiguousarray(images), batch_size=max(len(images), 1))
        )

    return normalise
