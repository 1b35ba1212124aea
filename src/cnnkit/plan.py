"""The planner: every layer's output shape, parameters, MACs and receptive field, before anything runs.

Pure Python (no torch, no numpy), so `cnnkit plan` starts instantly. `build` checks itself
against these numbers, and these numbers are checked against torch in the tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cnnkit.errors import SpecError
from cnnkit.shapes import Padding, output_size, pad_amounts, padding_text
from cnnkit.spec import (
    MAX_ELEMENTS,
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
    layer_text,
    parse,
    shape_text,
)

BYTES_PER_VALUE = 4  # activations are counted at float32


@dataclass(frozen=True)
class LayerPlan:
    """What one layer does to its input, as resolved by the planner."""

    index: int  # 1-based position in the spec
    name: str  # conv1, pool2, fc3, ... numbered per kind
    kind: str  # the layer's type: conv, maxpool, relu, ...
    text: str  # the layer in canonical notation
    output_shape: tuple[int, int, int]  # (H, W, C); a flat vector of N is (1, 1, N)
    flat: bool  # True after flatten/gap/fc: no spatial extent left
    neurons: int  # the output volume H*W*C
    params: int  # weights + biases, shared across positions as a CNN shares them
    params_unshared: int  # what a locally connected layer with this output would need
    macs: int  # multiply-accumulates for one image
    receptive_field: tuple[int, int] | None  # input pixels one output unit sees; None once flat
    jump: tuple[int, int] | None  # input pixels between neighbouring output units
    kernel_size: tuple[int, int] | None = None
    stride: int | None = None
    padding: tuple[int, int, int, int] | None = None  # zeros added (top, bottom, left, right)
    padding_mode: str | None = None  # 'valid', 'same' or 'pN' as written

    @property
    def activation_bytes(self) -> int:
        return self.neurons * BYTES_PER_VALUE

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        data["activation_bytes"] = self.activation_bytes
        return data


@dataclass(frozen=True)
class Plan:
    """A spec with every layer resolved; `totals` sums the per-layer figures."""

    spec: Spec
    layers: tuple[LayerPlan, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.spec.input_shape

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return self.layers[-1].output_shape if self.layers else self.spec.input_shape

    @property
    def totals(self) -> dict[str, int]:
        return {
            "layers": len(self.layers),
            "params": sum(layer.params for layer in self.layers),
            "params_unshared": sum(layer.params_unshared for layer in self.layers),
            "macs": sum(layer.macs for layer in self.layers),
            "neurons": sum(layer.neurons for layer in self.layers),
            "activation_bytes": sum(layer.activation_bytes for layer in self.layers),
        }

    def layer(self, name: str) -> LayerPlan:
        for layer in self.layers:
            if layer.name == name:
                return layer
        names = ", ".join(layer.name for layer in self.layers)
        raise SpecError(f"no layer named {name!r}; the layers are {names}")

    def to_dict(self) -> dict[str, Any]:
        """The stable `--json` document (schema in README.md)."""
        return {
            "input": list(self.input_shape),
            "spec": str(self.spec),
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": self.totals,
            "notes": list(self.notes),
        }


@dataclass
class _State:
    """The tensor between layers, and the receptive-field bookkeeping."""

    shape: tuple[int, int, int]
    flat: bool = False
    rf: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)


def plan(spec: Spec | str) -> Plan:
    """Resolve every layer of `spec` (a Spec or `>` notation), or raise SpecError naming the
    first layer that cannot work.

    >>> plan("32x32x3 > conv 20@8x8 s2 p1").layers[0].output_shape
    (14, 14, 20)
    """
    if isinstance(spec, str):
        spec = parse(spec)
    if not isinstance(spec, Spec):
        raise SpecError(
            f"plan() takes a Spec or a spec string such as '28x28x1 > relu', got {type(spec).__name__}"
        )
    state = _State(spec.input_shape)
    counts: dict[str, int] = {}
    layers = []
    for index, layer in enumerate(spec.layers, start=1):
        where = f"layer {index} '{layer_text(layer)}'"
        figures = _resolve(layer, state, where)
        family = _family(layer)
        counts[family] = counts.get(family, 0) + 1
        h, w, c = state.shape
        if h * w * c >= MAX_ELEMENTS:
            raise SpecError(
                f"{where}: output {shape_text(state.shape)} is over the 2^31-element cap; downsample earlier"
            )
        layers.append(
            LayerPlan(
                index=index,
                name=f"{family}{counts[family]}",
                kind=layer.type,
                text=layer_text(layer),
                output_shape=state.shape,
                flat=state.flat,
                neurons=h * w * c,
                receptive_field=None if state.flat else state.rf,
                jump=None if state.flat else state.jump,
                **figures,
            )
        )
    return Plan(spec, tuple(layers))


def _family(layer: Layer) -> str:
    """The name stem: pooling layers share 'pool', activations are named by function."""
    return "pool" if isinstance(layer, Pool) else layer.type


def _resolve(layer: Layer, state: _State, where: str) -> dict[str, Any]:
    """Advance `state` through `layer`; return the layer's own figures."""
    h, w, c = state.shape
    if isinstance(layer, (Conv, Pool, Inception, Residual, GlobalAvgPool)) and state.flat:
        raise SpecError(
            f"{where}: needs a spatial HxWxC input, but the input is already flat ({c} values); move it before flatten/fc"
        )
    if isinstance(layer, Conv):
        return _window(
            layer.kernel_size, layer.stride, layer.padding, layer.filters, state, where, conv=True
        )
    if isinstance(layer, Pool):
        return _pool(layer, state, where)
    if isinstance(layer, Inception):
        return _inception(layer, state)
    if isinstance(layer, Residual):
        return _residual(layer, state, where)
    if isinstance(layer, GlobalAvgPool):
        state.shape, state.flat = (1, 1, c), True
        return _figures(0, 0, 0)
    if isinstance(layer, Flatten):
        state.shape, state.flat = (1, 1, h * w * c), True
        return _figures(0, 0, 0)
    if isinstance(layer, Linear):
        return _linear(layer, state, where)
    if isinstance(layer, BatchNorm):
        return _figures(2 * c, 2 * c, 0)  # a scale and a shift per channel
    if isinstance(layer, (Activation, Dropout)):
        return _figures(0, 0, 0)
    raise SpecError(f"{where}: the planner does not know this layer type")  # pragma: no cover


def _pool(layer: Pool, state: _State, where: str) -> dict[str, Any]:
    h, w, c = state.shape
    if (h, w) == (1, 1):
        raise SpecError(
            f"{where}: pooling a 1x1 input does nothing; remove the pooling layer or pool earlier"
        )
    return _window(layer.kernel_size, layer.stride, layer.padding, c, state, where, conv=False)


def _linear(layer: Linear, state: _State, where: str) -> dict[str, Any]:
    c = state.shape[2]
    if not state.flat:
        raise SpecError(
            f"{where}: fc needs a flat input, but gets {shape_text(state.shape)}; "
            f"add 'flatten' (or 'gap') before it, or pass --auto-flatten"
        )
    params = (c + 1) * layer.out_features
    state.shape = (1, 1, layer.out_features)
    return _figures(params, params, c * layer.out_features)


def _figures(params: int, unshared: int, macs: int, **extra: Any) -> dict[str, Any]:
    return {"params": params, "params_unshared": unshared, "macs": macs, **extra}


def _window(
    kernel: tuple[int, int],
    stride: int,
    padding: Padding,
    depth: int,
    state: _State,
    where: str,
    conv: bool,
) -> dict[str, Any]:
    """A conv or pool window slid over the input; depth is the output depth."""
    h, w, c = state.shape
    fh, fw = kernel
    (top, bottom), (left, right) = (
        pad_amounts(h, fh, stride, padding),
        pad_amounts(w, fw, stride, padding),
    )
    if fh > h + top + bottom or fw > w + left + right:
        padded = f"{h + top + bottom}x{w + left + right}"
        pad_note = "" if padded == f"{h}x{w}" else f" (padded to {padded})"
        raise SpecError(
            f"{where}: the {fh}x{fw} filter is larger than its {h}x{w} input{pad_note}; use a smaller filter or padding"
        )
    out_h, out_w = output_size(h, fh, stride, padding), output_size(w, fw, stride, padding)
    state.shape = (out_h, out_w, depth)
    state.rf = (state.rf[0] + (fh - 1) * state.jump[0], state.rf[1] + (fw - 1) * state.jump[1])
    state.jump = (state.jump[0] * stride, state.jump[1] * stride)
    if conv:
        params = (fh * fw * c + 1) * depth
        figures = _figures(params, params * out_h * out_w, out_h * out_w * depth * fh * fw * c)
    else:
        figures = _figures(0, 0, 0)
    return {
        **figures,
        "kernel_size": kernel,
        "stride": stride,
        "padding": (top, bottom, left, right),
        "padding_mode": padding_text(padding),
    }


def _inception(layer: Inception, state: _State) -> dict[str, Any]:
    """Four branches at stride 1 with same padding, concatenated on depth."""
    h, w, c = state.shape
    convs = [  # (in, out, filter) of every conv in the module; each has a bias
        (c, layer.branch1x1, 1),
        (c, layer.reduce3x3, 1),
        (layer.reduce3x3, layer.branch3x3, 3),
        (c, layer.reduce5x5, 1),
        (layer.reduce5x5, layer.branch5x5, 5),
        (c, layer.pool_proj, 1),
    ]
    params = sum((f * f * cin + 1) * cout for cin, cout, f in convs)
    macs = h * w * sum(f * f * cin * cout for cin, cout, f in convs)
    state.shape = (h, w, layer.branch1x1 + layer.branch3x3 + layer.branch5x5 + layer.pool_proj)
    # The widest path is the 5x5 branch: its 1x1 reduction adds nothing, the 5x5 adds 4 jumps.
    state.rf = (state.rf[0] + 4 * state.jump[0], state.rf[1] + 4 * state.jump[1])
    return _figures(params, params * h * w, macs)


def _residual(layer: Residual, state: _State, where: str) -> dict[str, Any]:
    """conv3x3(stride) > bn > relu > conv3x3 > bn, plus a shortcut; the convs have no bias (bn follows)."""
    h, w, c = state.shape
    n, s = layer.filters, layer.stride
    out_h, out_w = output_size(h, 3, s, "same"), output_size(w, 3, s, "same")
    projected = c != n or s != 1  # the shortcut needs a 1x1 conv (and bn) to match shape
    params = 9 * c * n + 2 * n + 9 * n * n + 2 * n + ((c * n + 2 * n) if projected else 0)
    macs = out_h * out_w * (9 * c * n + 9 * n * n + (c * n if projected else 0))
    state.shape = (out_h, out_w, n)
    state.rf = (state.rf[0] + 2 * state.jump[0], state.rf[1] + 2 * state.jump[1])
    state.jump = (state.jump[0] * s, state.jump[1] * s)
    state.rf = (state.rf[0] + 2 * state.jump[0], state.rf[1] + 2 * state.jump[1])
    return _figures(params, params * out_h * out_w, macs, stride=s)


def auto_flatten(spec: Spec) -> tuple[Spec, tuple[str, ...]]:
    """Insert `flatten` before every fc that meets a spatial input; return the notes to show."""
    layers: list[Layer] = []
    notes: list[str] = []
    flat = False
    for index, layer in enumerate(spec.layers, start=1):
        if isinstance(layer, Linear) and not flat:
            layers.append(Flatten())
            notes.append(
                f"layer {index} '{layer_text(layer)}': inserted 'flatten' before it (--auto-flatten)"
            )
            flat = True
        layers.append(layer)
        if isinstance(layer, (Flatten, GlobalAvgPool, Linear)):
            flat = True
    return Spec(spec.input_shape, tuple(layers)), tuple(notes)


def plan_with_notes(spec: Spec, flatten: bool = False) -> Plan:
    """`plan`, optionally after `auto_flatten`, keeping its notes on the plan."""
    notes: tuple[str, ...] = ()
    if flatten:
        spec, notes = auto_flatten(spec)
    return dataclasses.replace(plan(spec), notes=notes)
