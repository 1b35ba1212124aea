"""Text for `cnnkit explain` and `cnnkit solve`: the data of `explain` and `solve`, rendered.

Pure Python: it imports neither NumPy nor torch, so `cnnkit solve` stays instant.
Numbers are compact (2 not 2.0, 1.375, at most 6 significant digits); matrices are right-aligned
per column; a `.` marks pooling padding, which takes no part in the max or the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cnnkit.render import count, table
from cnnkit.shapes import output_size, padding_text

if TYPE_CHECKING:
    from cnnkit.explain import Explanation, Step
    from cnnkit.solve import Solution

PADDING_MARK = "."
MAX_TERMS = 16  # an avgpool mean lists its terms up to this many, then only the sum


def number(value: float | None) -> str:
    """2.0 -> '2', 1.375 -> '1.375', 1/3 -> '0.333333', None (padding) -> '.'."""
    if value is None:
        return PADDING_MARK
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))  # also turns -0.0 into 0
    return f"{value:.6g}"


def matrix(rows: Sequence[Sequence[float | None]], indent: str = "  ") -> list[str]:
    """A matrix as text lines, each column right-aligned to its widest number."""
    cells = [[number(v) for v in row] for row in rows]
    widths = [max(len(c) for c in column) for column in zip(*cells, strict=True)]
    return [
        indent + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    ]


def side_by_side(blocks: Sequence[Sequence[str]], gap: str = "   ") -> list[str]:
    """Join blocks of lines left to right, each padded to its own width, tops aligned."""
    height = max(len(block) for block in blocks)
    widths = [max((len(line) for line in block), default=0) for block in blocks]
    lines = []
    for row in range(height):
        parts = [
            (block[row] if row < len(block) else "").ljust(width)
            for block, width in zip(blocks, widths, strict=True)
        ]
        lines.append(gap.join(parts).rstrip())
    return lines


def _labelled(label: str, block: list[str]) -> list[str]:
    return [label, *block]


def _operator(symbol: str, height: int) -> list[str]:
    """A column holding `symbol` on the middle row of a block `height` lines high (plus label)."""
    return ["", *[symbol if row == (height - 1) // 2 else "" for row in range(height)]]


# ----------------------------------------------------------------------------- explain


def render_explanation(explanation: Explanation) -> str:
    """The whole walk-through: header, padded input, every step, output."""
    e = explanation
    lines = [_header(e), *_size_lines(e), ""]
    lines += _input_section(e)
    for step in e.steps:
        lines += ["", *_step_lines(e, step)]
    lines += ["", f"output ({_hw(e.output, e)}):"]
    lines += _matrices(e.output, e.op != "conv" and e.multichannel)
    return "\n".join(lines) + "\n"


def _header(e: Explanation) -> str:
    (fh, fw), (sh, sw) = e.kernel_size, e.stride
    what = {"conv": "filter", "maxpool": "window", "avgpool": "window"}[e.op]
    stride = f"{sh}" if sh == sw else f"{sh}x{sw}"
    c, h, w = e.input_shape
    depth = f"x{c}" if e.multichannel else ""
    bias = f", bias {number(e.bias)}" if e.op == "conv" else ""
    return (
        f"{e.op}: {fh}x{fw} {what}{bias}, stride {stride}, padding {padding_text(e.padding)}; "
        f"input {h}x{w}{depth} -> output {_hw(e.output, e)}"
    )


def _size_lines(e: Explanation) -> list[str]:
    """The course's output-size formula with this layer's numbers; one line if both axes agree."""
    axes = list(zip(e.input_shape[1:], e.kernel_size, e.stride, e.pads, strict=True))
    names = ["output size"] if axes[0] == axes[1] else ["output height", "output width"]
    lines = []
    for name, (n, f, s, (before, _after)) in zip(names, axes, strict=False):
        if e.padding == "same":
            formula = f"ceil({n} / {s})"
        elif e.padding == "valid":
            formula = f"floor(({n} - {f}) / {s}) + 1"
        else:
            formula = f"floor(({n} + 2*{before} - {f}) / {s}) + 1"
        lines.append(f"{name} = {formula} = {output_size(n, f, s, e.padding)}")
    return lines


def _input_section(e: Explanation) -> list[str]:
    (top, bottom), (left, right) = e.pads
    c, h, w = e.input_shape
    depth = f"x{c}" if e.multichannel else ""
    if top == bottom == left == right == 0:
        title = f"input ({h}x{w}{depth}):"
    else:
        if len({top, bottom, left, right}) == 1:
            where = f"{top} on every side"
        else:
            where = f"top {top}, bottom {bottom}, left {left}, right {right}"
        fill = (
            "filled with zeros"
            if e.op == "conv"
            else f"'{PADDING_MARK}' = padding, left out of the {_pool_word(e)}"
        )
        size = f"{h + top + bottom}x{w + left + right}{depth}"
        title = f"padded input ({size}; padding {where}; {fill}):"
    return [title, *_matrices(e.padded_input, e.multichannel)]


def _pool_word(e: Explanation) -> str:
    return "max" if e.op == "maxpool" else "mean"


def _matrices(data: list, multichannel: bool) -> list[str]:
    """One matrix, or one per channel with a `channel k:` label."""
    if not multichannel:
        return matrix(data)
    lines = []
    for k, channel in enumerate(data):
        lines += [f"  channel {k}:", *matrix(channel, "    ")]
    return lines


def _hw(output: list, e: Explanation) -> str:
    if e.op != "conv" and e.multichannel:
        return f"{len(output[0])}x{len(output[0][0])}x{len(output)}"
    return f"{len(output)}x{len(output[0])}"


def _step_lines(e: Explanation, step: Step) -> list[str]:
    i, j = step.position
    where = f"{_span('row', *step.rows)}, {_span('col', *step.cols)}"
    channel = f"channel {step.channel}, " if step.channel is not None else ""
    head = f"{channel}output[{i}, {j}]: {where} of the {'padded ' if any(sum(p) for p in e.pads) else ''}input"
    if e.op == "conv":
        return [head, *_conv_lines(e, step)]
    block = matrix(step.patch)
    if e.op == "maxpool":
        assert step.argmax is not None  # explain sets it on every maxpool step
        r, c = step.argmax
        return [head, *block, f"  max = {number(step.value)} (patch row {r}, col {c})"]
    real = [v for row in step.patch for v in row if v is not None]
    terms = _sum_text(real) if len(real) <= MAX_TERMS else number(step.sum)
    terms = f"({terms})" if len(real) > 1 and len(real) <= MAX_TERMS else terms
    left_out = len(real) < len(step.patch) * len(step.patch[0])
    pixels = "pixel" if step.count == 1 else "pixels"
    note = f"  ({step.count} real {pixels}; padding left out)" if left_out else ""
    return [head, *block, f"  mean = {terms} / {step.count} = {number(step.value)}{note}"]


def _span(name: str, first: int, last: int) -> str:
    return f"{name} {first}" if first == last else f"{name}s {first}-{last}"


def _sum_text(values: Sequence[float]) -> str:
    """0.5 + 10 - 8: a negative term is subtracted rather than added as '+ -8'."""
    text = number(values[0])
    for v in values[1:]:
        text += f" - {number(-v)}" if v < 0 else f" + {number(v)}"
    return text


def _conv_lines(e: Explanation, step: Step) -> list[str]:
    assert step.filter is not None and step.products is not None  # set on every conv step
    channels = (
        list(zip(step.patch, step.filter, step.products, strict=True))
        if e.multichannel
        else [(step.patch, step.filter, step.products)]
    )
    lines = []
    indent = "    " if e.multichannel else "  "
    for k, (patch, weights, products) in enumerate(channels):
        if e.multichannel:
            lines.append(f"  channel {k}:")
        height = len(patch)
        lines += side_by_side(
            [
                _labelled(f"{indent}patch", matrix(patch, indent)),
                _operator("*", height),
                _labelled("filter", matrix(weights, "")),
                _operator("=", height),
                _labelled("products", matrix(products, "")),
            ]
        )
    total = "sum of products" + (" over all channels" if e.multichannel else "")
    lines.append(
        f"  {total} = {number(step.sum)}; + bias {number(step.bias)} = {number(step.value)}"
    )
    return lines


# ----------------------------------------------------------------------------- solve


def render_solutions(
    solutions: Sequence[Solution], in_text: str, out_text: str, kind: str, max_filter: int
) -> str:
    """The solutions as a table, or a line that says there are none and what to relax."""
    if not solutions:
        from cnnkit.spec import parse_shape

        (h, w, c), (oh, ow, depth) = parse_shape(in_text), parse_shape(out_text)
        hints = []  # only what could help: a bigger filter, or pooling when the depth is kept
        square_only = h == w and oh != ow  # a square window maps a square input to a square output
        if not square_only:
            hints.append("a larger --max-filter")
        if kind == "conv" and c == depth:
            hints.append("--kind pool")
        advice = (
            "try " + " or ".join(hints)
            if hints
            else "no square filter and stride can (rectangular ones are not searched)"
        )
        return (
            f"no {kind} layer with a square filter up to {max_filter}x{max_filter} maps "
            f"{in_text} onto {out_text}; {advice}\n"
        )
    headers = ["filter", "stride", "padding", "filters", "params", "fits"]
    rows = [
        [
            f"{s.filter}x{s.filter}",
            str(s.stride),
            s.padding,
            str(s.filters),
            count(s.params),
            "exact" if s.exact else "drops edge",
        ]
        for s in solutions
    ]
    right = [False, True, False, True, True, False]
    title = f"{len(solutions)} {kind} layer(s) map {in_text} onto {out_text}:"
    note = (
        "fits: exact = the last window ends on the padded edge; "
        "drops edge = the last rows/cols of the padded input are never covered"
    )
    return "\n".join([title, "", table(headers, rows, right), "", note]) + "\n"
