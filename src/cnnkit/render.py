"""Text rendering: plain aligned tables, and the plan table. Computing happens elsewhere.

Pure Python; every command that prints a table goes through `table`, so they look alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnkit.plan import LayerPlan, Plan
from cnnkit.spec import shape_text


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None
) -> str:
    """Columns padded to their widest cell; a rule under the header and above a 'total' row."""
    right = right or [False] * len(headers)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).rjust(w) if r else str(c).ljust(w)
            for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(headers), rule]
    for row in rows:
        if row and str(row[0]).lower().startswith("total"):
            out.append(rule)
        out.append(line(row))
    return "\n".join(out)


def count(n: int | None) -> str:
    """12,345 with thousands separators; '-' for none."""
    return "-" if n is None else f"{n:,}"


def size_bytes(n: int) -> str:
    """Bytes in binary units, 3 significant digits: 3.06 KiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _window(layer: LayerPlan) -> str:
    """Filter, stride and resolved padding: `5x5 s1 p0`, or `3x3 s2 same(0/1)` when uneven."""
    if layer.kernel_size is None:
        return f"s{layer.stride}" if layer.stride and layer.stride != 1 else ""
    top, bottom, left, right = layer.padding or (0, 0, 0, 0)
    if (top, left) == (bottom, right) and top == left:
        resolved = f"p{top}"
    else:
        resolved = (
            f"p{top}/{bottom}"
            if (top, bottom) == (left, right)
            else f"p{top}/{bottom},{left}/{right}"
        )
    mode = layer.padding_mode if layer.padding_mode in ("same", "valid") else None
    return f"{shape_text(layer.kernel_size)} s{layer.stride} " + (
        f"{mode}={resolved}" if mode else resolved
    )


def _field(layer: LayerPlan) -> str:
    if layer.receptive_field is None:
        return "all"
    return shape_text(layer.receptive_field)


def _shape(shape: tuple[int, int, int], flat: bool) -> str:
    return str(shape[2]) if flat else shape_text(shape)


def _layer_row(layer: LayerPlan) -> list[str]:
    """One layer's cells in render_plan's columns."""
    unshared = count(layer.params_unshared) if layer.params_unshared != layer.params else ""
    return [
        str(layer.index),
        layer.name,
        layer.kind,
        _window(layer),
        _shape(layer.output_shape, layer.flat),
        count(layer.neurons),
        count(layer.params),
        unshared,
        count(layer.macs),
        _field(layer),
        ""
        if layer.jump is None
        else str(layer.jump[0])
        if layer.jump[0] == layer.jump[1]
        else shape_text(layer.jump),
        size_bytes(layer.activation_bytes),
    ]


def render_plan(plan: Plan) -> str:
    """The plan as a table with a totals row, then the notes."""
    headers = [
        "#",
        "layer",
        "kind",
        "window",
        "output",
        "neurons",
        "params",
        "unshared",
        "MACs",
        "RF",
        "jump",
        "memory",
    ]
    right = [True, False, False, False, True, True, True, True, True, True, True, True]
    h, w, c = plan.input_shape
    rows = [
        [
            "0",
            "input",
            "",
            "",
            shape_text(plan.input_shape),
            count(h * w * c),
            "",
            "",
            "",
            "1",
            "1",
            size_bytes(h * w * c * 4),
        ]
    ]
    rows += [_layer_row(layer) for layer in plan.layers]
    totals = plan.totals
    rows.append(
        [
            "total",
            "",
            "",
            "",
            _shape(plan.output_shape, bool(plan.layers and plan.layers[-1].flat)),
            count(totals["neurons"]),
            count(totals["params"]),
            count(totals["params_unshared"]),
            count(totals["macs"]),
            "",
            "",
            size_bytes(totals["activation_bytes"]),
        ]
    )
    lines = [f"spec: {plan.spec}", "", table(headers, rows, right), ""]
    lines.append(
        f"{count(totals['params'])} parameters ({size_bytes(totals['params'] * 4)} at float32); "
        f"without parameter sharing it would take {count(totals['params_unshared'])}. "
        f"{count(totals['macs'])} multiply-accumulates per image."
    )
    lines.extend(f"note: {note}" for note in plan.notes)
    return "\n".join(lines)
