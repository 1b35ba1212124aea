"""The model side of the explorer page: predictions, every layer's maps, Grad-CAM, one conv step.

    explorer = Explorer(load("runs/lenet"))
    pixels = explorer.classifier.prepare(Image.open("seven.png"))  # uint8 (H, W, C)
    explorer.conv_step(pixels, "conv1", channel=0, y=3, x=4).to_dict()["result"]

Every method takes fitted pixels and returns arrays or small dataclasses; `cnnkit.serve` turns
them into JSON. A request the model cannot answer (a layer that is not a conv, a position outside
the layer) raises ConfigError with a message that names the parameter. Predictions and top-k are
`Predictor`'s (cnnkit.inspect.predictor), which alone serves an ONNX model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit import explain, reference
from cnnkit.devices import use_threads  # noqa: F401  (its home is devices; serve imports it here)
from cnnkit.errors import ConfigError
from cnnkit.inspect.gradcam import GradCam, gradcam
from cnnkit.inspect.predictor import Predictor
from cnnkit.inspect.receptive import input_box
from cnnkit.inspect.views import capture, conv_names, model_plan
from cnnkit.plan import LayerPlan, Plan
from cnnkit.predict import Classifier

MAX_TILE = 64  # feature maps larger than this (per side) are averaged down for the page
MAX_CHANNELS = 64  # maps shown per layer; more would be too small to read anyway
MAX_VALUES = 512  # values shown per flat layer (fc outputs)


@dataclass
class LayerMaps:
    """One layer's output for one image, cut to what a page can show."""

    layer: LayerPlan
    maps: np.ndarray  # (C', h, w) float32: the first MAX_CHANNELS channels; (0, 1, 1) when flat
    downsampled: bool  # h, w were area-averaged down to MAX_TILE per side
    values: list[float] | None = None  # a flat layer's first MAX_VALUES outputs


@dataclass
class Activations:
    layers: list[LayerMaps]  # every layer of the plan, in order
    probabilities: np.ndarray  # (classes,) float64


@dataclass
class ConvStep:
    """The numbers behind output (channel, y, x) of a conv layer, from its real input."""

    layer: str
    channel: int
    y: int
    x: int
    input_layer: str  # the layer whose output this conv reads, or "input"
    step: explain.Step  # patch, filter and products (C, Fh, Fw); value = sum + bias
    stride: int
    padding: tuple[int, int, int, int]  # (top, bottom, left, right)
    padded: np.ndarray  # (Fh, Fw) bool: True where the window lies on padding
    activation: float  # the module's own output at (channel, y, x)
    receptive_field: tuple[int, int, int, int]  # (top, left, height, width) in input pixels

    def to_dict(self) -> dict[str, Any]:
        top, bottom, left, right = self.padding
        box_top, box_left, box_height, box_width = self.receptive_field
        return {
            "layer": self.layer,
            "channel": self.channel,
            "y": self.y,
            "x": self.x,
            "input_layer": self.input_layer,
            "kernel_size": list(self.padded.shape),
            "stride": self.stride,
            "padding": [top, bottom, left, right],
            "origin": [self.step.rows[0] - top, self.step.cols[0] - left],
            "padded": self.padded.tolist(),
            "patch": self.step.patch,
            "weights": self.step.filter,
            "products": self.step.products,
            "channel_sums": np.array(self.step.products).sum(axis=(1, 2)).tolist(),
            "sum": self.step.sum,
            "bias": self.step.bias,
            "result": self.step.value,
            "activation": self.activation,
            "receptive_field": {
                "top": box_top,
                "left": box_left,
                "height": box_height,
                "width": box_width,
            },
        }


class Explorer(Predictor):
    """A loaded Classifier and everything the page computes from it; safe to share by threads."""

    views = True
    plan: Plan  # always: a cnnkit model carries its plan

    def __init__(self, classifier: Classifier) -> None:
        self.model = classifier.model.eval()
        super().__init__(classifier, model_plan(self.model))
        self.conv_names = tuple(conv_names(self.model))

    # --------------------------------------------------------------- views

    def _outputs(self, pixels: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The normalised input (1, C, H, W) and every plan layer's output, by name."""
        x = self.classifier.preprocess(pixels)
        names = [layer.name for layer in self.plan.layers]
        with self.lock, torch.inference_mode(), capture(self.model, names) as outputs:
            self.model(x)
        return x, outputs

    def activations(self, pixels: np.ndarray) -> Activations:
        """Every layer's output for one image, and the class probabilities."""
        _, outputs = self._outputs(pixels)
        layers = [_layer_maps(layer, outputs[layer.name][0]) for layer in self.plan.layers]
        scores = outputs[self.plan.layers[-1].name][0].reshape(-1).double().cpu()  # (classes,)
        # A spec ending in softmax outputs probabilities already; others output logits.
        if self.plan.layers[-1].kind != "softmax":
            scores = torch.softmax(scores, 0)
        return Activations(layers, scores.numpy())

    def gradcam(self, pixels: np.ndarray, target: int | None) -> GradCam:
        """Grad-CAM and saliency of class `target` (default: the predicted one)."""
        classes = len(self.classifier.class_names)
        if target is not None and not 0 <= target < classes:
            raise ConfigError(
                f"class={target} is out of range; the model has classes 0..{classes - 1}"
            )
        with self.lock:
            return gradcam(self.model, self.classifier.preprocess(pixels), target)

    def conv_step(self, pixels: np.ndarray, name: str, channel: int, y: int, x: int) -> ConvStep:
        """Output (channel, y, x) of conv layer `name`, by `explain`'s arithmetic on its input."""
        self._check_position(name, channel, y, x)
        index = [layer.name for layer in self.plan.layers].index(name)
        previous = self.plan.layers[index - 1].name if index else "input"
        image, outputs = self._outputs(pixels)
        layer_input = (image if index == 0 else outputs[previous])[0]  # (C, H, W)
        module = getattr(self.model, name)
        top, bottom, left, right = module.pad
        pads = ((top, bottom), (left, right))
        padded = reference.pad(layer_input[None].double().cpu().numpy(), pads)[0]  # zeros
        bias = float(module.bias[channel].detach()) if module.bias is not None else 0.0
        weight = module.weight[channel].detach().double().cpu().numpy()  # (C, Fh, Fw)
        step = explain.conv_step(padded, weight, bias, (y, x), module.stride)
        # Where the window lies on padding: the same pad, of a mask of the real pixels.
        real = np.ones((1, 1, *layer_input.shape[1:]), dtype=bool)
        window = reference.pad(real, pads, False)[0, 0][
            step.rows[0] : step.rows[1] + 1, step.cols[0] : step.cols[1] + 1
        ]
        return ConvStep(
            layer=name,
            channel=channel,
            y=y,
            x=x,
            input_layer=previous,
            step=step,
            stride=module.stride[0],
            padding=(top, bottom, left, right),
            padded=~window,
            activation=float(outputs[name][0, channel, y, x]),
            receptive_field=input_box(self.plan, name, y, x),
        )

    def _check_position(self, name: str, channel: int, y: int, x: int) -> None:
        if name not in self.conv_names:
            raise ConfigError(
                f"layer={name!r} is not a conv layer; the conv layers are "
                f"{', '.join(self.conv_names) or 'none'}"
            )
        height, width, depth = self.plan.layer(name).output_shape
        for what, value, limit in (("channel", channel, depth), ("y", y, height), ("x", x, width)):
            if not 0 <= value < limit:
                raise ConfigError(
                    f"{what}={value} is outside {name}'s output {height}x{width}x{depth}; "
                    f"use 0..{limit - 1}"
                )


def _layer_maps(layer: LayerPlan, out: torch.Tensor) -> LayerMaps:
    """One layer's output (C, H, W) or flat, cut to MAX_CHANNELS maps of at most MAX_TILE."""
    if layer.flat:
        values = out.reshape(-1)[:MAX_VALUES].double().tolist()
        return LayerMaps(layer, np.zeros((0, 1, 1), np.float32), False, values)
    maps = out[:MAX_CHANNELS].float()  # (C', H, W)
    height, width = maps.shape[1:]
    downsampled = max(height, width) > MAX_TILE
    if downsampled:  # area averaging keeps a small bright feature visible, unlike striding
        scale = MAX_TILE / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        maps = F.adaptive_avg_pool2d(maps[None], size)[0]
    return LayerMaps(layer, maps.cpu().numpy(), downsampled)
