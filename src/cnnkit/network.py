"""Spec -> torch.nn.Module: the only place that maps spec kinds onto torch layers.

    model = build("lenet5")            # a preset, a notation string, a spec file, or a Spec
    model.conv1.weight                 # children are named as the planner names the layers
    logits = model(x)                  # x (B, C, H, W) float -> (B, classes)

Every size comes from the planner (`cnnkit.plan`), which takes it from `cnnkit.shapes`:
'same' is TensorFlow's SAME (the extra pixel at the bottom/right), pN pads N on every side.
Padding amounts are fixed when the model is built, so forward has no shape branching and
compiles as one graph; the model is built for the plan's input size.
Max pooling pads with -inf and average pooling excludes the padding from the mean, as the
NumPy reference (`cnnkit.reference`) does.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.budgets import check_model
from cnnkit.errors import ConfigError
from cnnkit.plan import LayerPlan, Plan, plan
from cnnkit.presets import resolve
from cnnkit.shapes import pad_amounts
from cnnkit.spec import (
    Activation,
    BatchNorm,
    Conv,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Inception,
    Layer,
    Linear,
    Pool,
    Residual,
    Spec,
)

Pads = tuple[int, int, int, int]  # (top, bottom, left, right), as LayerPlan.padding

# ----------------------------------------------------------------------------- layers


def _same_pads(h: int, w: int, kernel: int, stride: int) -> Pads:
    """TensorFlow SAME amounts for a square filter on an h x w input."""
    return (*pad_amounts(h, kernel, stride, "same"), *pad_amounts(w, kernel, stride, "same"))


def _f_pad(pads: Pads) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) -> F.pad's order for the last two axes (left, right, top, bottom)."""
    top, bottom, left, right = pads
    return (left, right, top, bottom)


class Conv2d(nn.Conv2d):
    """nn.Conv2d with any (top, bottom, left, right) zero padding, resolved at build time.

    Symmetric padding goes to torch's own `padding`; uneven padding (TF SAME with stride > 1 or an
    even filter) is an explicit F.pad followed by the convolution with padding 0. Either way
    `pad` holds the amounts, so a single output can be recomputed by hand from `weight`, `bias`,
    `stride`, `kernel_size` and `pad`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: int = 1,
        pad: Pads = (0, 0, 0, 0),
        bias: bool = True,
    ) -> None:
        top, bottom, left, right = pad
        symmetric = top == bottom and left == right
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(top, left) if symmetric else 0,
            bias=bias,
        )
        self.pad: Pads = tuple(pad)  # type: ignore[assignment]
        self.explicit_pad: tuple[int, int, int, int] | None = None if symmetric else _f_pad(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K, Ho, Wo)
        if self.explicit_pad is not None:  # fixed at build time: not a shape branch
            x = F.pad(x, self.explicit_pad)  # (B, C, H + top + bottom, W + left + right)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pad={self.pad}"


class _Pool2d(nn.Module):
    """A pooling window with cnnkit's resolved padding (top, bottom, left, right)."""

    def __init__(self, kernel_size: tuple[int, int], stride: int, pad: Pads = (0, 0, 0, 0)) -> None:
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = (stride, stride)  # a pair, as nn.Conv2d keeps it
        self.pad: Pads = tuple(pad)  # type: ignore[assignment]
        # torch's own padding refuses more than half the window, so pad explicitly instead.
        self.explicit_pad = _f_pad(pad) if any(pad) else None

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, pad={self.pad}"


class MaxPool2d(_Pool2d):
    """Max pooling whose padding is -inf, so a padded pixel is never the maximum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, Ho, Wo)
        if self.explicit_pad is not None:
            x = F.pad(x, self.explicit_pad, value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


class AvgPool2d(_Pool2d):
    """Average pooling over the real pixels of each window: padding is excluded from the mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, Ho, Wo)
        if self.explicit_pad is None:
            return F.avg_pool2d(x, self.kernel_size, self.stride)
        # Window sums of the zero-padded input over window counts of real pixels; the count is
        # a one-channel pass, cheap next to the input's C channels.
        ones = x.new_ones((1, 1, *x.shape[2:]))  # (1, 1, H, W)
        sums = F.avg_pool2d(
            F.pad(x, self.explicit_pad), self.kernel_size, self.stride, divisor_override=1
        )  # (B, C, Ho, Wo)
        counts = F.avg_pool2d(
            F.pad(ones, self.explicit_pad), self.kernel_size, self.stride, divisor_override=1
        )  # (1, 1, Ho, Wo), at least 1: a pN or SAME border is narrower than the window
        return sums / counts


class GlobalAvgPool2d(nn.Module):
    """Mean over H and W, flattened: (B, C, H, W) -> (B, C), flat as the planner says."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(x), 1)  # (B, C, 1, 1) -> (B, C)


def _conv_relu(in_channels: int, out_channels: int, kernel: int) -> list[nn.Module]:
    """A stride-1 'same' conv with bias, then ReLU: every conv of an inception module."""
    pad = (kernel - 1) // 2  # odd filters at stride 1: SAME is symmetric
    return [Conv2d(in_channels, out_channels, (kernel, kernel), 1, (pad, pad, pad, pad)), nn.ReLU()]


class InceptionBlock(nn.Module):
    """GoogLeNet's module, as plan._inception counts it; branches concatenated on channels."""

    def __init__(self, in_channels: int, layer: Inception) -> None:
        super().__init__()
        c = in_channels
        self.branch1 = nn.Sequential(*_conv_relu(c, layer.branch1x1, 1))
        self.branch2 = nn.Sequential(
            *_conv_relu(c, layer.reduce3x3, 1), *_conv_relu(layer.reduce3x3, layer.branch3x3, 3)
        )
        self.branch3 = nn.Sequential(
            *_conv_relu(c, layer.reduce5x5, 1), *_conv_relu(layer.reduce5x5, layer.branch5x5, 5)
        )
        self.branch4 = nn.Sequential(
            MaxPool2d((3, 3), 1, (1, 1, 1, 1)), *_conv_relu(c, layer.pool_proj, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, A+B+C+D, H, W)
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)


class ResidualBlock(nn.Module):
    """He et al.'s basic block, as plan._residual counts it; convs have no bias (bn follows)."""

    def __init__(self, in_channels: int, layer: Residual, h: int, w: int) -> None:
        super().__init__()
        c, n, s = in_channels, layer.filters, layer.stride
        self.conv1 = Conv2d(c, n, (3, 3), s, _same_pads(h, w, 3, s), bias=False)
        self.bn1 = nn.BatchNorm2d(n)
        self.relu1 = nn.ReLU()
        self.conv2 = Conv2d(n, n, (3, 3), 1, (1, 1, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm2d(n)
        # A 1x1 conv at stride s samples the same positions as the SAME 3x3 path: ceil(h/s) rows.
        self.shortcut: nn.Module = (
            nn.Sequential(Conv2d(c, n, (1, 1), s, bias=False), nn.BatchNorm2d(n))
            if c != n or s != 1
            else nn.Identity()
        )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, N, Ho, Wo)
        out = self.relu1(self.bn1(self.conv1(x)))  # (B, N, Ho, Wo)
        out = self.bn2(self.conv2(out))  # (B, N, Ho, Wo)
        return self.relu2(out + self.shortcut(x))


_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _layer(layer: Layer, layer_plan: LayerPlan, in_shape: tuple[int, int, int]) -> nn.Module:
    """The torch module for one spec layer; in_shape is its input (H, W, C) from the planner."""
    h, w, c = in_shape
    pads: Pads = layer_plan.padding or (0, 0, 0, 0)
    if isinstance(layer, Conv):
        return Conv2d(c, layer.filters, layer.kernel_size, layer.stride, pads)
    if isinstance(layer, Pool):
        pool = MaxPool2d if layer.op == "max" else AvgPool2d
        return pool(layer.kernel_size, layer.stride, pads)
    if isinstance(layer, Activation):
        if layer.function == "softmax":
            return nn.Softmax(dim=1)  # over channels, spatial or flat
        return _ACTIVATIONS[layer.function]()
    if isinstance(layer, BatchNorm):
        # The input's flatness, not this layer's: bn keeps it, so the planner's flag is the same.
        return nn.BatchNorm1d(c) if layer_plan.flat else nn.BatchNorm2d(c)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, Flatten):
        return nn.Flatten()  # (B, C, H, W) -> (B, C*H*W); already flat stays (B, N)
    if isinstance(layer, Linear):
        return nn.Linear(c, layer.out_features)
    if isinstance(layer, GlobalAvgPool):
        return GlobalAvgPool2d()
    if isinstance(layer, Inception):
        return InceptionBlock(c, layer)
    if isinstance(layer, Residual):
        return ResidualBlock(c, layer, h, w)
    raise ConfigError(f"{layer_plan.name}: build does not know layer type {layer.type!r}")


# ----------------------------------------------------------------------------- the network


class Network(nn.Sequential):
    """The layers of a spec in order, each named as the planner names it (conv1, pool1, ...).

    `plan` and `spec` are kept on the model so callers can read shapes and layer names.
    Input (B, C, H, W) float, with (H, W, C) = plan.input_shape; output (B, N) once flat,
    else (B, C', H', W'). A slice (`model[:3]`, which nn.Sequential builds through this
    constructor) keeps the children's names but has no plan: plan and spec are None.
    """

    def __init__(
        self, layers: OrderedDict[str, nn.Module], network_plan: Plan | None = None
    ) -> None:
        super().__init__(layers)
        self.plan = network_plan
        self.spec = network_plan.spec if network_plan is not None else None


def build(spec: Spec | str, seed: int | None = None) -> Network:
    """Build the torch model of a spec, a preset name, a notation string or a spec file path.

    Args:
        spec: a Spec, or text for `cnnkit.presets.resolve` ("lenet5", "28x28x1 > conv 6@5x5 ...").
        seed: when given, the weights come from torch.manual_seed(seed) inside fork_rng, so the
            same seed gives the same weights and the global RNG state is left as it was.

    Raises SpecError when the spec cannot be planned.

    >>> build("28x28x1 > conv 4@3x3 same > relu > flatten > fc 10")(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    if isinstance(spec, str):
        spec = resolve(spec)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"seed={seed!r} must be an integer or None")
    network_plan = plan(spec)
    check_model(network_plan)  # 2^31 parameters at most, refused before torch allocates them
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_shape = spec.input_shape
        for layer, layer_plan in zip(spec.layers, network_plan.layers, strict=True):
            layers[layer_plan.name] = _layer(layer, layer_plan, in_shape)
            in_shape = layer_plan.output_shape
    return Network(layers, network_plan)


# ----------------------------------------------------------------------------- helpers

_FEATURE_TYPES = (Conv2d, MaxPool2d, AvgPool2d, InceptionBlock, ResidualBlock)


def feature_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The conv, pool, inception and res children in order: the layers with feature maps."""
    return [
        (name, child) for name, child in model.named_children() if isinstance(child, _FEATURE_TYPES)
    ]


def count_params(model: nn.Module) -> int:
    """Every parameter (weights, biases, batch-norm scales and shifts), as the planner counts."""
    return sum(p.numel() for p in model.parameters())
