"""The records a spec is made of: layers, the Spec, their canonical text, and the rules they obey.

Pure Python, like spec.py, which reads the notation and spec files into these records and
re-exports every public name here (`from cnnkit.spec import Conv` keeps working).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cnnkit.errors import SpecError
from cnnkit.shapes import Padding, padding_text

# A shape or count at or above this is refused: nobody means it, and it overflows int32.
MAX_ELEMENTS = 2**31


# ----------------------------------------------------------------------------- layer records


@dataclass(frozen=True)
class Conv:
    """`conv K@FhxFw [sS] [same|valid|pN]`: K filters of Fh x Fw, each with a bias."""

    filters: int
    kernel_size: tuple[int, int]
    stride: int = 1
    padding: Padding = "valid"
    type: ClassVar[str] = "conv"


@dataclass(frozen=True)
class Pool:
    """`maxpool F` / `avgpool F [sS] [padding]`: stride defaults to F."""

    op: str  # "max" | "avg"
    kernel_size: tuple[int, int]
    stride: int
    padding: Padding = "valid"

    @property
    def type(self) -> str:
        return f"{self.op}pool"


@dataclass(frozen=True)
class Activation:
    """`relu`, `gelu`, `tanh`, `sigmoid` or `softmax` (over the channels)."""

    function: str

    @property
    def type(self) -> str:
        return self.function


@dataclass(frozen=True)
class BatchNorm:
    type: ClassVar[str] = "bn"


@dataclass(frozen=True)
class Dropout:
    rate: float
    type: ClassVar[str] = "dropout"


@dataclass(frozen=True)
class Flatten:
    type: ClassVar[str] = "flatten"


@dataclass(frozen=True)
class Linear:
    """`fc N`: a fully connected layer with N outputs."""

    out_features: int
    type: ClassVar[str] = "fc"


@dataclass(frozen=True)
class GlobalAvgPool:
    type: ClassVar[str] = "gap"


@dataclass(frozen=True)
class Inception:
    """`inception A,Br>B,Cr>C,D`: GoogLeNet's module; output depth A + B + C + D."""

    branch1x1: int
    reduce3x3: int
    branch3x3: int
    reduce5x5: int
    branch5x5: int
    pool_proj: int
    type: ClassVar[str] = "inception"


@dataclass(frozen=True)
class Residual:
    """`res N [sS]`: two 3x3 convs (same padding, batch norm) plus a shortcut."""

    filters: int
    stride: int = 1
    type: ClassVar[str] = "res"


Layer = (
    Conv
    | Pool
    | Activation
    | BatchNorm
    | Dropout
    | Flatten
    | Linear
    | GlobalAvgPool
    | Inception
    | Residual
)
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "softmax")
KEYWORDS = (
    "conv",
    "maxpool",
    "avgpool",
    *ACTIVATIONS,
    "bn",
    "dropout",
    "flatten",
    "fc",
    "gap",
    "inception",
    "res",
)


@dataclass(frozen=True)
class Spec:
    """An input shape (H, W, C) and the layers applied to it, in order."""

    input_shape: tuple[int, int, int]
    layers: tuple[Layer, ...]

    def __str__(self) -> str:
        return to_notation(self)


# ----------------------------------------------------------------------------- canonical text


def to_notation(spec: Spec) -> str:
    """The canonical `>` text of a spec; parse(to_notation(s)) == s."""
    return " > ".join([shape_text(spec.input_shape), *(layer_text(layer) for layer in spec.layers)])


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def layer_text(layer: Layer) -> str:
    """One layer in the notation, with every option spelled out (`conv 6@5x5 s1 valid`)."""
    if isinstance(layer, Conv):
        return f"conv {layer.filters}@{shape_text(layer.kernel_size)} s{layer.stride} {padding_text(layer.padding)}"
    if isinstance(layer, Pool):
        size = (
            layer.kernel_size[0]
            if layer.kernel_size[0] == layer.kernel_size[1]
            else shape_text(layer.kernel_size)
        )
        return f"{layer.type} {size} s{layer.stride} {padding_text(layer.padding)}"
    if isinstance(layer, Dropout):
        return f"dropout {layer.rate:g}"
    if isinstance(layer, Linear):
        return f"fc {layer.out_features}"
    if isinstance(layer, Inception):
        i = layer
        return f"inception {i.branch1x1},{i.reduce3x3}>{i.branch3x3},{i.reduce5x5}>{i.branch5x5},{i.pool_proj}"
    if isinstance(layer, Residual):
        return f"res {layer.filters}" + (f" s{layer.stride}" if layer.stride != 1 else "")
    return layer.type


# ----------------------------------------------------------------------------- rules


def check_shape(shape: tuple[int, ...], where: str) -> None:
    """Refuse zero sizes and volumes of 2^31 elements or more."""
    if any(n <= 0 for n in shape):
        raise SpecError(f"{where}: every size must be at least 1, got {shape_text(shape)}")
    volume = 1
    for n in shape:
        volume *= n
    if volume >= MAX_ELEMENTS:
        raise SpecError(
            f"{where}: {shape_text(shape)} has {volume:,} elements, over the 2^31 cap; use a smaller input"
        )


def check_positive(value: int, where: str, what: str) -> int:
    """`value` itself, once it is at least 1 and under the 2^31 cap."""
    if value <= 0:
        raise SpecError(f"{where}: {what} must be at least 1, got {value}")
    if value >= MAX_ELEMENTS:
        raise SpecError(f"{where}: {what} {value:,} is over the 2^31 cap")
    return value


def check_stride(stride: int, where: str) -> int:
    if stride <= 0:
        raise SpecError(
            f"{where}: stride must be at least 1, got s{stride}; use s1 to visit every position"
        )
    if stride >= MAX_ELEMENTS:
        raise SpecError(f"{where}: stride {stride:,} is over the 2^31 cap")
    return stride


def check_rate(rate: float, where: str) -> float:
    if not 0.0 <= rate < 1.0:
        raise SpecError(
            f"{where}: dropout rate must be in [0, 1), got {rate:g}; 0.5 drops half the units"
        )
    return rate


def check_padding(padding: Padding, kernel: tuple[int, int], where: str) -> None:
    if isinstance(padding, int) and padding >= min(kernel):
        raise SpecError(
            f"{where}: padding p{padding} is not smaller than the {shape_text(kernel)} filter, so some windows "
            f"would see only zeros; use p{min(kernel) - 1} or less, or 'same'"
        )
