"""Architecture specs: the `>` notation and YAML/JSON files, parsed into frozen dataclasses.

    28x28x1 > conv 6@5x5 s1 same > relu > maxpool 2 > flatten > fc 10

A spec is an input shape `HxWxC` followed by layers separated by `>`. Pure Python: the
planner's fast path imports this module and nothing heavier. The records themselves (Conv,
Spec, ...), their canonical text and the rules they obey live in spec_layers.py; they are
re-exported here, so `from cnnkit.spec import Conv, parse` is the one import callers need.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from cnnkit.budgets import (
    QUOTE_CHARS,
    check_document,
    check_layer_count,
    clip,
    load_yaml,
    notation_problem,
    quote,
)
from cnnkit.errors import SpecError
from cnnkit.shapes import Padding, padding_text
from cnnkit.spec_layers import (
    ACTIVATIONS,
    KEYWORDS,
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
    check_padding,
    check_positive,
    check_rate,
    check_shape,
    check_stride,
    layer_text,
    shape_text,
    to_notation,
)

__all__ = [
    "ACTIVATIONS", "KEYWORDS", "MAX_ELEMENTS", "Activation", "BatchNorm", "Conv", "Dropout",
    "Flatten", "GlobalAvgPool", "Inception", "Layer", "Linear", "Pool", "Residual", "Spec",
    "check_padding", "check_positive", "check_rate", "check_shape", "check_stride", "from_dict",
    "layer_text", "load_text", "parse", "parse_shape", "shape_text", "to_dict", "to_notation",
]  # fmt: skip


# ----------------------------------------------------------------------------- notation


_INCEPTION = re.compile(
    r"inception\s+(\d+)\s*,\s*(\d+)\s*>\s*(\d+)\s*,\s*(\d+)\s*>\s*(\d+)\s*,\s*(\d+)\s*"
)
_TOKEN = re.compile(r"\S+")
# ASCII digits only: str.isdigit() accepts '²', which int() then refuses (issue 11).
_WHOLE = re.compile(r"[0-9]+")
# The layers that take no options, by keyword.
_PLAIN: dict[str, Callable[[], Layer]] = {"bn": BatchNorm, "flatten": Flatten, "gap": GlobalAvgPool}


def parse(text: str) -> Spec:
    """Parse the `>` notation. Raises SpecError naming the layer, with a caret under bad tokens."""
    if not isinstance(text, str):
        raise SpecError(
            f"a spec is a string such as '28x28x1 > conv 6@5x5 > relu', got {type(text).__name__}"
        )
    if not text.strip():
        raise SpecError(
            "empty spec: expected an input shape and layers, such as '28x28x1 > conv 6@5x5 > relu'"
        )
    problem = notation_problem(text)  # size, layer count, digits, token length
    if problem:
        raise SpecError(problem[0] + _caret(text, problem[1], problem[2]))
    segments = _segments(text)
    (shape_start, shape_end), *layer_spans = segments
    check_layer_count(len(layer_spans), "the spec")
    shape = _parse_shape_at(text, shape_start, shape_end)
    layers = []
    for number, (start, end) in enumerate(layer_spans, start=1):
        layers.append(_parse_layer(text, start, end, number))
    return Spec(shape, tuple(layers))


def parse_shape(text: str) -> tuple[int, int, int]:
    """Parse `HxWxC` (such as `28x28x1`) into (H, W, C)."""
    return _parse_shape_at(text, 0, len(text))


def _segments(text: str) -> list[tuple[int, int]]:
    """Character spans of the shape and each layer; an inception's own `>` stay inside it."""
    spans, start = [], 0
    while True:
        stripped = len(text) - len(text[start:].lstrip())
        match = _INCEPTION.match(text, stripped)
        search_from = match.end() if match else start
        cut = text.find(">", search_from)
        end = len(text) if cut < 0 else cut
        spans.append((start, end))
        if cut < 0:
            return spans
        start = cut + 1


def _caret(text: str, start: int, end: int) -> str:
    """The spec on one line and carets under text[start:end], for an error message; a long
    spec is cut to the QUOTE_CHARS characters around the mark."""
    end = min(end, start + QUOTE_CHARS)
    first = max(0, min(start - QUOTE_CHARS // 4, len(text) - QUOTE_CHARS))
    lead = "..." if first else ""
    flat = lead + clip(text[first:].replace("\n", " "))
    return f"\n  {flat}\n  {' ' * (start - first + len(lead))}{'^' * max(end - start, 1)}"


def _parse_shape_at(text: str, start: int, end: int) -> tuple[int, int, int]:
    raw = text[start:end].strip()
    offset = start + (len(text[start:end]) - len(text[start:end].lstrip()))
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", raw)
    if not match:
        hint = (
            " (add the channel count: 28x28x1 for grayscale, 28x28x3 for colour)"
            if re.fullmatch(r"\d+x\d+", raw)
            else ""
        )
        raise SpecError(
            f"input shape {quote(raw)} is malformed{hint}: expected HxWxC such as 28x28x1"
            + _caret(text, offset, offset + len(raw))
        )
    shape = tuple(int(g) for g in match.groups())
    check_shape(shape, f"input shape {quote(raw)}")
    return shape  # type: ignore[return-value]


def _parse_layer(text: str, start: int, end: int, number: int) -> Layer:
    tokens = [
        (m.group(), start + m.start(), start + m.end()) for m in _TOKEN.finditer(text[start:end])
    ]
    where = f"layer {number} '{clip(text[start:end].strip())}'"
    if not tokens:
        raise SpecError(
            f"layer {number} is empty: remove the extra '>' or add a layer"
            + _caret(text, start, end)
        )
    keyword, kstart, kend = tokens[0]
    keyword = keyword.lower()
    if keyword not in KEYWORDS:
        close = difflib.get_close_matches(keyword, KEYWORDS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"expected one of {', '.join(KEYWORDS)}"
        raise SpecError(
            f"layer {number}: unknown layer {tokens[0][0]!r}; {hint}" + _caret(text, kstart, kend)
        )
    args = tokens[1:]
    if keyword == "inception":
        return _parse_inception(text, kstart, end, where)
    if keyword in ("conv", "maxpool", "avgpool", "res"):
        return _parse_windowed(keyword, args, text, where)
    if keyword in ("dropout", "fc"):
        if len(args) != 1:
            example = "dropout 0.5" if keyword == "dropout" else "fc 10"
            raise SpecError(
                f"{where}: expected one number, such as '{example}'" + _caret(text, kstart, end)
            )
        return _parse_number_layer(keyword, args[0], text, where)
    if args:
        token, astart, aend = args[0]
        raise SpecError(
            f"{where}: '{keyword}' takes no options, got {token!r}" + _caret(text, astart, aend)
        )
    if keyword in ACTIVATIONS:
        return Activation(keyword)
    return _PLAIN[keyword]()


def _parse_inception(text: str, kstart: int, end: int, where: str) -> Inception:
    """'inception 64,96>128,16>32,32' from its keyword at text[kstart] to the layer's end."""
    match = _INCEPTION.fullmatch(text[kstart:end].strip() + " ")
    if not match:
        raise SpecError(
            f"{where}: expected 'inception A,Br>B,Cr>C,D' such as 'inception 64,96>128,16>32,32'"
            + _caret(text, kstart, end)
        )
    numbers = [check_positive(int(g), where, "a branch width") for g in match.groups()]
    return Inception(*numbers)


def _parse_number_layer(
    keyword: str, arg: tuple[str, int, int], text: str, where: str
) -> Linear | Dropout:
    """'fc 10' or 'dropout 0.5': the layer's one number, as (token, start, end) in text."""
    value, vstart, vend = arg
    if keyword == "fc":
        if not _WHOLE.fullmatch(value):
            raise SpecError(
                f"{where}: {value!r} is not a whole number of outputs, such as 'fc 10'"
                + _caret(text, vstart, vend)
            )
        return Linear(check_positive(int(value), where, "the output count"))
    try:
        rate = float(value)
    except ValueError:
        raise SpecError(
            f"{where}: {value!r} is not a rate, such as 'dropout 0.5'" + _caret(text, vstart, vend)
        ) from None
    return Dropout(check_rate(rate, where))


def _parse_windowed(keyword: str, args: list[tuple[str, int, int]], text: str, where: str) -> Layer:
    """conv, maxpool, avgpool and res: a size first, then options `sS` and a padding."""
    examples = {
        "conv": "conv 6@5x5 s1 same",
        "maxpool": "maxpool 2 s2",
        "avgpool": "avgpool 2",
        "res": "res 64 s2",
    }
    if not args:
        raise SpecError(f"{where}: missing its size; write it like '{examples[keyword]}'")
    size, sstart, send = args[0]
    stride, padding = _window_options(keyword, args[1:], text, where)
    if keyword == "res":
        if not _WHOLE.fullmatch(size):
            raise SpecError(
                f"{where}: {size!r} is not a filter count; write it like 'res 64'"
                + _caret(text, sstart, send)
            )
        return Residual(check_positive(int(size), where, "the filter count"), stride or 1)
    if keyword == "conv":
        match = re.fullmatch(r"(\d+)@(\d+)(?:x(\d+))?", size)
        if not match:
            raise SpecError(
                f"{where}: {size!r} is not K@FxF; write it like 'conv 6@5x5'"
                + _caret(text, sstart, send)
            )
        filters = check_positive(int(match[1]), where, "the filter count")
        kernel = _kernel(match[2], match[3], where)
        layer: Conv | Pool = Conv(
            filters, kernel, stride or 1, "valid" if padding is None else padding
        )
    else:
        match = re.fullmatch(r"(\d+)(?:x(\d+))?", size)
        if not match:
            raise SpecError(
                f"{where}: {size!r} is not a window size; write it like '{examples[keyword]}'"
                + _caret(text, sstart, send)
            )
        kernel = _kernel(match[1], match[2], where)
        layer = Pool(
            keyword[:3], kernel, stride or kernel[0], "valid" if padding is None else padding
        )
    check_padding(layer.padding, layer.kernel_size, where)
    return layer


def _window_options(
    keyword: str, options: list[tuple[str, int, int]], text: str, where: str
) -> tuple[int | None, Padding | None]:
    """The `sS` stride and the padding after a windowed layer's size; None where not given."""
    stride: int | None = None
    padding: Padding | None = None
    for token, tstart, tend in options:
        low = token.lower()
        is_padding = low in ("same", "valid") or re.fullmatch(r"p\d+", low)
        if is_padding and padding is not None and keyword != "res":
            raise SpecError(
                f"{where}: padding given twice ({padding_text(padding)} and {low}); keep one"
                + _caret(text, tstart, tend)
            )
        if re.fullmatch(r"s\d+", low) and stride is None:
            stride = check_stride(int(low[1:]), where)
        elif low in ("same", "valid") and keyword != "res":
            padding = low
        elif re.fullmatch(r"p\d+", low) and keyword != "res":
            padding = int(low[1:])
        else:
            raise SpecError(
                f"{where}: unexpected option {token!r}; options are sS (stride)"
                + ("" if keyword == "res" else " and same, valid or pN (padding)")
                + _caret(text, tstart, tend)
            )
    return stride, padding


def _kernel(height: str, width: str | None, where: str) -> tuple[int, int]:
    h = check_positive(int(height), where, "the filter size")
    return (h, check_positive(int(width), where, "the filter size") if width else h)


# ----------------------------------------------------------------------------- YAML / JSON form

_FIELDS: dict[str, tuple[str, ...]] = {
    "conv": ("filters", "kernel_size", "stride", "padding"),
    "maxpool": ("kernel_size", "stride", "padding"),
    "avgpool": ("kernel_size", "stride", "padding"),
    "dropout": ("rate",),
    "fc": ("out_features",),
    "inception": ("branch1x1", "reduce3x3", "branch3x3", "reduce5x5", "branch5x5", "pool_proj"),
    "res": ("filters", "stride"),
}


def to_dict(spec: Spec) -> dict[str, Any]:
    """The file form: `{"input": [H, W, C], "layers": [{"type": "conv", ...}, ...]}`."""
    layers = []
    for layer in spec.layers:
        entry: dict[str, Any] = {"type": layer.type}
        for name in _FIELDS.get(layer.type, ()):
            value = getattr(layer, name)
            entry[name] = list(value) if isinstance(value, tuple) else value
        layers.append(entry)
    return {"input": list(spec.input_shape), "layers": layers}


def from_dict(data: Any) -> Spec:
    """Build a spec from its file form, refusing unknown fields and wrong types."""
    if not isinstance(data, dict):
        raise SpecError(
            f"a spec file must hold a mapping with 'input' and 'layers', got {type(data).__name__}"
        )
    check_document(data, "spec file")
    unknown = set(data) - {"input", "layers"}
    if unknown:
        raise SpecError(
            f"spec file: unknown field(s) {clip(', '.join(sorted(map(str, unknown))))}; allowed are input, layers"
        )
    shape = data.get("input")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(n) is int for n in shape)):
        raise SpecError(
            f"spec file: 'input' must be [H, W, C] such as [28, 28, 1], got {quote(shape)}"
        )
    check_shape(tuple(shape), "spec file 'input'")
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise SpecError(
            f"spec file: 'layers' must be a list of {{type: ...}} entries, got {quote(layers)}"
        )
    check_layer_count(len(layers), "spec file")
    return Spec(
        tuple(shape), tuple(_layer_from_dict(entry, n) for n, entry in enumerate(layers, start=1))
    )


def _entry_fields(entry: Any, number: int) -> tuple[str, str, dict[str, Any]]:
    """(type, where, fields) of a spec file's layer entry, its type and field names checked."""
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise SpecError(
            f"layer {number}: expected a mapping with a 'type', such as {{type: relu}}, got {quote(entry)}"
        )
    kind = entry["type"].lower()
    where = f"layer {number} ({clip(kind)})"
    if kind not in KEYWORDS:
        close = difflib.get_close_matches(kind, KEYWORDS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"expected one of {', '.join(KEYWORDS)}"
        raise SpecError(f"layer {number}: unknown type {quote(entry['type'])}; {hint}")
    allowed = _FIELDS.get(kind, ())
    unknown = set(entry) - {"type", *allowed}
    if unknown:
        raise SpecError(
            f"{where}: unknown field(s) {clip(', '.join(sorted(map(str, unknown))))}; allowed are {', '.join(allowed) or 'none'}"
        )
    return kind, where, {name: entry[name] for name in allowed if name in entry}


def _layer_from_dict(entry: Any, number: int) -> Layer:
    kind, where, fields = _entry_fields(entry, number)

    def number_field(name: str, default: int | None = None) -> int:
        value = fields.get(name, default)
        if type(value) is not int:
            raise SpecError(f"{where}: '{name}' must be a whole number, got {quote(value)}")
        return check_positive(value, where, name)

    if kind in ACTIVATIONS:
        return Activation(kind)
    if kind in ("bn", "flatten", "gap"):
        return _PLAIN[kind]()
    if kind == "fc":
        return Linear(number_field("out_features"))
    if kind == "dropout":
        rate: Any = fields.get("rate")
        if type(rate) not in (int, float):
            raise SpecError(f"{where}: 'rate' must be a number in [0, 1), got {quote(rate)}")
        return Dropout(check_rate(float(rate), where))
    if kind == "inception":
        return Inception(*(number_field(name) for name in _FIELDS[kind]))
    if kind == "res":
        return Residual(number_field("filters"), check_stride(number_field("stride", 1), where))
    kernel = _kernel_field(fields.get("kernel_size"), where)
    padding = _padding_field(fields.get("padding", "valid"), where)
    check_padding(padding, kernel, where)
    if kind == "conv":
        return Conv(
            number_field("filters"), kernel, check_stride(number_field("stride", 1), where), padding
        )
    return Pool(kind[:3], kernel, check_stride(number_field("stride", kernel[0]), where), padding)


def _kernel_field(value: Any, where: str) -> tuple[int, int]:
    if type(value) is int:
        value = [value, value]
    if not (isinstance(value, list) and len(value) == 2 and all(type(n) is int for n in value)):
        raise SpecError(f"{where}: 'kernel_size' must be F or [Fh, Fw], got {quote(value)}")
    return (
        check_positive(value[0], where, "kernel_size"),
        check_positive(value[1], where, "kernel_size"),
    )


def _padding_field(value: Any, where: str) -> Padding:
    if value in ("same", "valid"):
        return value
    if type(value) is int and value >= 0:
        return value
    raise SpecError(
        f"{where}: 'padding' must be 'same', 'valid' or a number of pixels N >= 0, got {quote(value)}"
    )


def load_text(text: str, name: str = "spec file") -> Spec:
    """Parse a YAML or JSON document (JSON is YAML) into a spec, within the budgets of
    cnnkit.budgets: size, nesting, digits, layers, and no YAML aliases."""
    return from_dict(load_yaml(text, name))
