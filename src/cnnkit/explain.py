"""One small conv or pooling layer computed step by step, as data for `cnnkit explain`.

    explain("maxpool", [[0, 1, 0.5, 10], [2, 2.5, 1, -8], [4, 0, 5, 6], [15, 1, 2, 3]],
            kernel_size=2).output   # [[2.5, 10.0], [15.0, 6.0]]

The numbers come from the NumPy reference (`cnnkit.reference`): the padded input, each output
position's patch and what is done with it (dot product plus bias, max, or mean), and the output.
Rendering lives in `cnnkit.render_explain`; this module returns data only.
Arrays are channels-first: an input is (H, W) for one channel or (C, H, W).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from cnnkit import reference
from cnnkit.errors import ConfigError, SpecError
from cnnkit.shapes import Padding, padding_text

OPS = ("conv", "maxpool", "avgpool")
MAX_SIDE = 32  # explain prints every step: past 32x32 the text is unreadable, not wrong
MAX_CHANNELS = 8
INPUT_RANGE = (0, 9)  # random inputs: small non-negative integers, easy to add up by eye
FILTER_RANGE = (-1, 1)  # random filters: -1, 0, 1 make every product a copy, a zero or a negation


@dataclass(frozen=True)
class Step:
    """One output value: where its window lies in the padded input and how it is computed."""

    position: tuple[int, int]  # (i, j) in the output
    rows: tuple[int, int]  # first and last row of the window in the padded input
    cols: tuple[int, int]  # first and last column
    patch: list  # (Fh, Fw), or (C, Fh, Fw) for conv on C channels; None marks pooling padding
    value: float
    channel: int | None = None  # pooling on several channels: the channel of this step
    filter: list | None = None  # conv: the filter, shaped like the patch
    products: list | None = None  # conv: patch * filter, element by element
    sum: float | None = None  # conv: sum of products; avgpool: sum of the real pixels
    bias: float | None = None  # conv
    count: int | None = None  # avgpool: real (unpadded) pixels in the window
    argmax: tuple[int, int] | None = None  # maxpool: (row, col) of the first max in the patch


# The order a reader follows: where, what goes in, the arithmetic, the result.
_STEP_ORDER = (
    "position",
    "channel",
    "rows",
    "cols",
    "patch",
    "filter",
    "products",
    "sum",
    "count",
    "bias",
    "argmax",
    "value",
)


@dataclass(frozen=True)
class Explanation:
    """A layer computed step by step; `to_dict` gives the `--json` form."""

    op: str  # conv | maxpool | avgpool
    input_shape: tuple[int, int, int]  # (C, H, W)
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding
    pads: tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))
    multichannel: bool  # the input was given as (C, H, W); else matrices are 2-D
    padded_input: list  # (Hp, Wp) or (C, Hp, Wp); None marks pooling padding
    steps: tuple[Step, ...]
    output: list  # conv: (Ho, Wo), one filter; pooling: like the input, (Ho, Wo) or (C, Ho, Wo)
    filter: list | None = None
    bias: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; steps leave out the fields their op does not use."""
        data: dict[str, Any] = {
            "op": self.op,
            "input_shape": list(self.input_shape),
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding_text(self.padding),
            "padded_input": self.padded_input,
        }
        if self.op == "conv":
            data.update(filter=self.filter, bias=self.bias)
        steps = []
        for step in self.steps:
            fields = asdict(step)
            steps.append({k: fields[k] for k in _STEP_ORDER if fields[k] is not None})
        return {**data, "steps": steps, "output": self.output}


# ----------------------------------------------------------------------------- computing


def explain(
    op: str,
    x: Any,
    *,
    filter: Any = None,
    kernel_size: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] | None = None,
    padding: Padding = "valid",
    bias: float | None = None,
) -> Explanation:
    """Compute one conv (one filter) or pooling layer on a small input, step by step.

    x: (H, W) or (C, H, W) numbers. conv: filter (Fh, Fw) or (C, Fh, Fw), stride defaults to 1,
    bias to 0. maxpool/avgpool: kernel_size F or (Fh, Fw), stride defaults to the window.
    """
    if op not in OPS:
        raise ConfigError(f"unknown op {op!r}; choose one of {', '.join(OPS)}")
    x = _as_matrices(x, "input")
    multichannel = x.ndim == 3
    x = x if multichannel else x[None]  # (C, H, W)
    _check_small(x.shape)
    if op == "conv":
        if filter is None:
            raise ConfigError("conv needs a filter, such as --filter '[[1,0],[0,-1]]' or 3x3")
        weight = _as_matrices(filter, "filter")
        weight = weight if weight.ndim == 3 else weight[None]  # (C, Fh, Fw)
        if weight.shape[0] != x.shape[0]:
            raise SpecError(
                f"the filter has {weight.shape[0]} channel(s) but the input has {x.shape[0]}; "
                "give the filter as a 3-D list with one matrix per input channel"
            )
        return _explain_conv(
            x, weight, stride, padding, 0.0 if bias is None else bias, multichannel
        )
    if filter is not None:
        raise ConfigError(f"{op} has no weights: give the window as --size 2, not a filter matrix")
    if bias is not None:
        raise ConfigError(f"{op} has no bias; --bias applies to conv only")
    if kernel_size is None:
        raise ConfigError(f"{op} needs a window size, such as --size 2")
    return _explain_pool(op, x, kernel_size, stride, padding, multichannel)


_MATRICES = ("patch", "filter", "products")  # a conv step's (C, Fh, Fw) lists


def _explain_conv(x, weight, stride, padding, bias, multichannel) -> Explanation:
    geo = reference.geometry(
        x.shape[1:], weight.shape[1:], 1 if stride is None else stride, padding
    )
    out = reference.conv2d_forward(x[None], weight[None], np.array([bias]), geo.stride, geo.padding)
    out = out[0, 0]  # (Ho, Wo): one filter
    padded = reference.pad(x[None], geo.pads)[0]  # (C, Hp, Wp)
    squeeze = (lambda a: a) if multichannel else (lambda a: a[0])
    steps = []
    for (i, j), _, _ in _positions(geo):
        step = conv_step(padded, weight, bias, (i, j), geo.stride)
        if not multichannel:  # one channel given as (H, W): its matrices stay 2-D
            step = replace(step, **{key: getattr(step, key)[0] for key in _MATRICES})
        # The value is the reference's own output, which the step's arithmetic must reproduce.
        steps.append(replace(step, value=float(out[i, j])))
    return Explanation(
        op="conv",
        input_shape=tuple(x.shape),
        kernel_size=geo.kernel,
        stride=geo.stride,
        padding=geo.padding,
        pads=geo.pads,
        multichannel=multichannel,
        padded_input=_data(squeeze(padded)),
        steps=tuple(steps),
        output=_data(out),
        filter=_data(squeeze(weight)),
        bias=float(bias),
    )


def conv_step(
    padded: np.ndarray,
    weight: np.ndarray,
    bias: float,
    position: tuple[int, int],
    stride: tuple[int, int],
) -> Step:
    """Output `position` of one filter over an already padded input, as its arithmetic.

    padded: (C, Hp, Wp); weight: (C, Fh, Fw). The step's patch, filter and products are
    (C, Fh, Fw) lists, and its value is sum + bias. `cnnkit explain` and the explorer page's
    conv step (`cnnkit.inspect.explorer`) both compute a conv output here.
    """
    rows, cols = _window(position, weight.shape[1:], stride)
    patch = padded[:, rows[0] : rows[1] + 1, cols[0] : cols[1] + 1]  # (C, Fh, Fw)
    products = patch * weight
    total = float(products.sum())
    return Step(
        position=position,
        rows=rows,
        cols=cols,
        patch=_data(patch),
        filter=_data(weight),
        products=_data(products),
        sum=total,
        bias=float(bias),
        value=total + float(bias),
    )


def _explain_pool(op, x, kernel_size, stride, padding, multichannel) -> Explanation:
    geo = reference.geometry(
        x.shape[1:], kernel_size, kernel_size if stride is None else stride, padding
    )
    forward = reference.max_pool2d_forward if op == "maxpool" else reference.avg_pool2d_forward
    out = forward(x[None], geo.kernel, geo.stride, geo.padding)[0]  # (C, Ho, Wo)
    # Pooling leaves padding out (max pads with -inf, the mean skips it): NaN marks it here
    # and None in the data, so nothing shows a number that takes no part.
    padded = reference.pad(x[None], geo.pads, np.nan)[0]  # (C, Hp, Wp)
    steps = []
    for channel in range(x.shape[0]):
        for (i, j), rows, cols in _positions(geo):
            patch = padded[channel, rows[0] : rows[1] + 1, cols[0] : cols[1] + 1]
            real = patch[~np.isnan(patch)]
            common = {
                "position": (i, j),
                "rows": rows,
                "cols": cols,
                "patch": _data(patch),
                "value": float(out[channel, i, j]),
                "channel": channel if multichannel else None,
            }
            if op == "maxpool":
                flat = int(np.nanargmax(patch))  # the first max, as the backward pass routes it
                step = Step(**common, argmax=divmod(flat, patch.shape[1]))
            else:
                step = Step(**common, sum=float(real.sum()), count=int(real.size))
            steps.append(step)
    return Explanation(
        op=op,
        input_shape=tuple(x.shape),
        kernel_size=geo.kernel,
        stride=geo.stride,
        padding=geo.padding,
        pads=geo.pads,
        multichannel=multichannel,
        padded_input=_data(padded if multichannel else padded[0]),
        steps=tuple(steps),
        output=_data(out if multichannel else out[0]),
    )


def _positions(geo: reference.Geometry):
    """Each output position (i, j) with its window's (first, last) rows and cols, row by row."""
    for i in range(geo.out_hw[0]):
        for j in range(geo.out_hw[1]):
            yield (i, j), *_window((i, j), geo.kernel, geo.stride)


def _window(
    position: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (first, last) rows and cols in the padded input of output (i, j)'s window."""
    (i, j), (fh, fw), (sh, sw) = position, kernel, stride
    return (i * sh, i * sh + fh - 1), (j * sw, j * sw + fw - 1)


def _data(array: np.ndarray) -> list:
    """An array as nested lists of floats, NaN (pooling padding) as None."""
    if array.ndim == 0:
        return None if np.isnan(array) else float(array)  # type: ignore[return-value]
    return [_data(row) for row in array]


def _check_small(shape: tuple[int, int, int]) -> None:
    c, h, w = shape
    if h > MAX_SIDE or w > MAX_SIDE or c > MAX_CHANNELS:
        raise ConfigError(
            f"the input is {h}x{w}x{c}: explain prints every step, so it is meant for small "
            f"layers up to {MAX_SIDE}x{MAX_SIDE}x{MAX_CHANNELS}; use a smaller input "
            "(cnnkit.reference computes layers of any size)"
        )


def _as_matrices(value: Any, name: str) -> np.ndarray:
    """Numbers nested as a matrix (2-D) or one matrix per channel (3-D) -> float64 array."""
    shape = _nested_shape(value, name, "")
    if len(shape) not in (2, 3):
        example = "[[0,1],[2,3]]"
        raise SpecError(
            f"the {name} {json.dumps(value)} has {len(shape)} dimension(s); give a matrix such "
            f"as {example}, or a 3-D list with one matrix per channel"
        )
    return np.array(value, dtype=np.float64)


def _nested_shape(value: Any, name: str, where: str) -> tuple[int, ...]:
    """The shape of nested lists of finite numbers, with an error that points at a bad entry."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if not value:
            raise SpecError(f"the {name} has an empty list at {where or 'the top'}; give numbers")
        shapes = [_nested_shape(item, name, f"{where}[{k}]") for k, item in enumerate(value)]
        for k, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise SpecError(
                    f"the {name} is not rectangular: {where}[{k}] = {_brief(value[k])} is "
                    f"{_shape(shape)} but {where}[0] = {_brief(value[0])} is "
                    f"{_shape(shapes[0])}; every row needs the same length"
                )
        return (len(value), *shapes[0])
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool
    )
    if not number or not math.isfinite(value):
        raise SpecError(
            f"the {name} has {json.dumps(value)} at {where}; every entry must be a number"
        )
    return ()


def _brief(value: Any) -> str:
    text = json.dumps(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 30 else text[:27] + "..."


def _shape(shape: tuple[int, ...]) -> str:
    if not shape:
        return "a single number"
    if len(shape) == 1:
        return f"a row of {shape[0]}"
    return f"{'x'.join(map(str, shape))} numbers"


# ----------------------------------------------------------------------------- text arguments

_SIZE = re.compile(r"(\d+)x(\d+)(?:x(\d+))?")


def parse_padding(text: str) -> Padding:
    """`valid`, `same`, `1` or `p1` -> "valid" | "same" | 1."""
    text = text.strip().lower()
    if text in ("valid", "same"):
        return text
    match = re.fullmatch(r"p?(\d+)", text)
    if not match:
        raise ConfigError(
            f"--padding {text!r} must be valid, same, or a number of pixels such as 1 (or p1)"
        )
    return int(match.group(1))


def parse_values(text: str, name: str, *, seed: int, low: int, high: int) -> np.ndarray:
    """A JSON literal (`[[0,1],[2,3]]`) or a size (`4x4`, `4x4x3`) filled with random integers.

    A size HxWxC gives (C, H, W); integers are drawn uniformly from low..high with `seed`.
    """
    match = _SIZE.fullmatch(text.strip().lower())
    if match:
        h, w = int(match.group(1)), int(match.group(2))
        c = int(match.group(3)) if match.group(3) else None
        if min(h, w, c or 1) < 1:
            raise ConfigError(f"--{name} {text!r}: every size must be at least 1")
        if name == "input":
            _check_small((c or 1, h, w))
        elif max(h, w) > MAX_SIDE:
            raise ConfigError(f"--{name} {text!r} is larger than {MAX_SIDE}x{MAX_SIDE}")
        shape = (h, w) if c is None else (c, h, w)
        return np.random.default_rng(seed).integers(low, high + 1, size=shape).astype(np.float64)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(
            f"--{name} {text!r} is neither a size nor valid JSON ({error.msg} at character "
            f"{error.pos}); give a matrix such as [[0,1],[2,3]] or a size such as 4x4"
        ) from None
    return _as_matrices(value, name)


def explain_from_text(
    op: str,
    input_text: str,
    *,
    filter_text: str | None = None,
    size: int | None = None,
    stride: int | None = None,
    padding_text: str = "valid",
    bias: float | None = None,
    seed: int = 0,
) -> Explanation:
    """`explain` from the command line's strings: literals or sizes with a seed.

    conv: --filter is a literal or a size FhxFw (random weights with `seed`; --size F means FxF).
    pooling: the window is --size F or --filter FxF.
    """
    if op not in OPS:
        raise ConfigError(f"unknown op {op!r}; choose one of {', '.join(OPS)}")
    padding = parse_padding(padding_text)
    # Input and filter draw from different streams, so changing the filter keeps the input.
    x = parse_values(input_text, "input", seed=seed, low=INPUT_RANGE[0], high=INPUT_RANGE[1])
    if filter_text is not None and size is not None:
        raise ConfigError(f"give either --filter {filter_text} or --size {size}, not both")
    if op == "conv":
        filter_text = filter_text or f"{size or 3}x{size or 3}"
        match = _SIZE.fullmatch(filter_text.strip().lower())
        if match and match.group(3):
            raise ConfigError(
                f"--filter {filter_text!r}: give the filter size as FhxFw; its channels follow "
                "the input's"
            )
        if match and x.ndim == 3:  # one random matrix per input channel
            filter_text = f"{filter_text.strip()}x{x.shape[0]}"
        weight = parse_values(
            filter_text, "filter", seed=seed + 1, low=FILTER_RANGE[0], high=FILTER_RANGE[1]
        )
        return explain(op, x, filter=weight, stride=stride, padding=padding, bias=bias)
    if filter_text is not None:
        match = _SIZE.fullmatch(filter_text.strip().lower())
        if not match or match.group(3):
            raise ConfigError(
                f"{op} has no weights: --filter {filter_text!r} must be a window size such "
                "as 2x2 (or use --size 2)"
            )
        window: int | tuple[int, int] = (int(match.group(1)), int(match.group(2)))
    else:
        window = 2 if size is None else size
    return explain(op, x, kernel_size=window, stride=stride, padding=padding, bias=bias)
