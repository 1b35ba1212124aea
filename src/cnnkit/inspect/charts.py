"""Charts drawn by matplotlib: lines, bars, heat maps and colour bars, as Pillow images.

matplotlib's Agg canvas draws on a private Figure (never pyplot: no global state, no display,
safe in the server's threads). matplotlib is imported inside the functions only, so importing
this module costs nothing and `cnnkit plan` starts without it. Each chart has a `*_figure`
function that returns the Figure (tests measure its text boxes) and one that returns the picture.
Colours come from `colours`, one map per meaning.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
from PIL import Image

from cnnkit.inspect import colours

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

# ----------------------------------------------------------------------------- matplotlib charts

DPI = 100  # 1 inch = 100 px: the sizes below are in pixels
FONT = 9  # points: 12.5 px at 100 dpi, the size of the Pillow captions
CHAR_PX = 0.62 * FONT * DPI / 72  # the average width of a DejaVu Sans character, for layout
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]  # matplotlib's tab10


def new_figure(width: float, height: float) -> Figure:
    """A private Agg figure of `width` x `height` px, laid out by matplotlib (constrained)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def picture(figure: Figure) -> Image.Image:
    """The figure drawn by Agg, as an RGB Pillow image."""
    canvas = cast("FigureCanvasAgg", figure.canvas)  # attached by new_figure
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def _style(axes: Axes, title: str, x_title: str, y_title: str) -> None:
    axes.set_title(title, fontsize=FONT + 2)
    axes.set_xlabel(x_title, fontsize=FONT + 1)
    axes.set_ylabel(y_title, fontsize=FONT + 1)
    axes.tick_params(labelsize=FONT)
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(True, color="#e8e8e8", linewidth=0.8)
    axes.set_axisbelow(True)


def _tick(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10000 or abs(value) < 0.001:
        return f"{value:.1e}"
    return f"{value:.3g}"


def _percent_axis(axes: Axes, log: bool) -> None:
    """Label the y axis in percent. On a log axis spanning under about one decade, matplotlib
    would print 6x10^-3 between the decades: label 2, 3 and 5 there instead (0.2%, 0.3%, 0.5%)."""
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _position: int | None = None) -> str:
        return f"{100 * value:.3g}%"

    low, high = axes.get_ylim()
    few = log and low > 0 and np.log10(high / low) < 1.3

    def minor(value: float, _position: int | None = None) -> str:
        leading = round(value / 10 ** np.floor(np.log10(value)))
        return label(value) if few and leading in (2, 3, 5) else ""

    axes.yaxis.set_major_formatter(FuncFormatter(label))
    if log:
        axes.yaxis.set_minor_formatter(FuncFormatter(minor))


def line_chart_figure(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_title: str,
    y_title: str,
    size: tuple[int, int] = (420, 280),
    y_range: tuple[float, float] | None = None,
    log_y: bool = False,
    percent: bool = False,
) -> Figure:
    """Lines (with dots up to 30 points) and the legend under the axes, off the data.

    On a log axis, values <= 0 are left out (an error rate of exactly 0 has no place there).
    `percent`: the values are fractions, labelled as percentages (0.004 -> "0.4%").
    """
    from matplotlib.ticker import MaxNLocator

    figure = new_figure(*size)
    axes = figure.add_subplot()
    for i, (name, (xs, ys)) in enumerate(series.items()):
        points = [
            (x, y)
            for x, y in zip(xs, ys, strict=True)
            if y is not None and np.isfinite(y) and (y > 0 or not log_y)
        ]
        if points:
            px, py = zip(*points, strict=True)
            dots = "o" if len(points) <= 30 else None
            axes.plot(
                px, py, color=PALETTE[i % len(PALETTE)], lw=1.8, marker=dots, ms=3.5, label=name
            )
    if log_y and axes.lines:
        axes.set_yscale("log")
    if percent and axes.lines:
        _percent_axis(axes, log_y)
    if y_range is not None:
        axes.set_ylim(*y_range)
    if all(float(x).is_integer() for xs, _ in series.values() for x in xs):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    _style(axes, title, x_title, y_title)
    if axes.lines:
        columns = min(len(axes.lines), 3)
        figure.legend(loc="outside lower center", ncols=columns, frameon=False, fontsize=FONT)
    return figure


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_title: str,
    y_title: str,
    size: tuple[int, int] = (420, 280),
    y_range: tuple[float, float] | None = None,
    log_y: bool = False,
    percent: bool = False,
) -> Image.Image:
    """`line_chart_figure` drawn."""
    figure = line_chart_figure(series, title, x_title, y_title, size, y_range, log_y, percent)
    return picture(figure)


def tick_labels(labels: Sequence[str], slot: float) -> tuple[list[str], bool]:
    """Labels for bars `slot` px apart: wrapped at spaces into <= 3 lines that fit, else turned.

    Returns (labels, turned). Turned labels are whole and vertical, one per slot.
    """
    chars = max(1, int(slot / CHAR_PX - 0.5))  # half a character to spare between labels
    wrapped = [textwrap.wrap(str(t), chars, break_long_words=False) or [""] for t in labels]
    fits = all(len(lines) <= 3 and max(map(len, lines)) <= chars for lines in wrapped)
    if fits:
        return ["\n".join(lines) for lines in wrapped], False
    return [str(t) for t in labels], True


def bar_chart_figure(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    y_title: str,
    y_range: tuple[float, float] = (0.0, 1.0),
    x_title: str = "",
    height: int = 260,
) -> Figure:
    """Vertical bars, every bar labelled in full (wrapped or turned), the value on wide bars.

    Bars are at least 16 px apart, so up to 100 turned labels (12.5 px tall) never touch; the
    figure grows with the number of bars and with the longest label.
    """
    count = len(values)
    slot = max(16, min(64, 640 // max(count, 1)))
    texts, turned = tick_labels(labels, slot)
    longest = max((len(t) for t in texts), default=0)
    extra = longest * CHAR_PX if turned else 16 * max((t.count("\n") + 1 for t in texts), default=1)
    figure = new_figure(max(360, 90 + count * slot), height + extra)
    axes = figure.add_subplot()
    bars = axes.bar(range(count), values, width=0.75, color=PALETTE[0])
    if slot >= 30:
        axes.bar_label(bars, fmt="%.2f", fontsize=FONT - 1, padding=1)
    low, high = y_range
    high = max(high, max(values, default=high))
    axes.set_ylim(low, high * (1.08 if slot >= 30 else 1.0))
    axes.set_xlim(-0.6, count - 0.4)
    axes.set_xticks(range(count), texts, rotation=90 if turned else 0, fontsize=FONT)
    _style(axes, title, x_title, y_title)
    axes.grid(False, axis="x")
    return figure


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    y_title: str,
    y_range: tuple[float, float] = (0.0, 1.0),
    x_title: str = "",
    height: int = 260,
) -> Image.Image:
    """`bar_chart_figure` drawn."""
    return picture(bar_chart_figure(labels, values, title, y_title, y_range, x_title, height))


def _colormap(table: np.ndarray) -> Colormap:
    from matplotlib.colors import ListedColormap

    return ListedColormap(np.asarray(table) / 255.0)


def colour_bar(
    table: np.ndarray, low: float, high: float, height: int, ticks: int = 5
) -> Image.Image:
    """A vertical strip of `table` (high at the top), `height` px, with `ticks` labelled values."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    values = np.linspace(low, high, ticks)
    text_w = max(len(_tick(v)) for v in values) * CHAR_PX
    width, strip, top = 14 + 8 + text_w + 6, 14, 8
    figure = new_figure(width, height + 2 * top)
    figure.set_layout_engine("none")
    axes = figure.add_axes(
        (1 / width, top / (height + 2 * top), strip / width, height / (height + 2 * top))
    )
    bar = figure.colorbar(ScalarMappable(Normalize(low, high), _colormap(table)), cax=axes)
    bar.set_ticks(values.tolist(), labels=[_tick(v) for v in values], fontsize=FONT)
    bar.outline.set_edgecolor("#787878")
    return picture(figure)


def heat_map_figure(
    values: np.ndarray,
    table: np.ndarray,
    low: float,
    high: float,
    cell: int,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    row_title: str = "",
    col_title: str = "",
    numbers: np.ndarray | None = None,
    number_format: str = "{:.2f}",
    marks: np.ndarray | None = None,
) -> Figure:
    """A matrix as `cell`-px cells, every row and column labelled, numbers, a colour bar.

    `marks` (bool, same shape) draws a cross in a cell, e.g. where a prediction flips. Labels
    shrink with the cell (never taller than it) and column labels turn when they do not fit.
    """
    rows, cols = values.shape
    size = min(FONT, 0.8 * cell * 72 / DPI)  # points
    char_px = CHAR_PX * size / FONT
    row_labels = [str(t) for t in row_labels] if row_labels else [""] * rows
    col_labels = [str(t) for t in col_labels] if col_labels else [""] * cols
    turned = max(len(t) for t in col_labels) * char_px > cell - 2
    label_w = max(len(t) for t in row_labels) * char_px
    label_h = max(len(t) for t in col_labels) * char_px if turned else 16
    width = 40 + label_w + cols * cell + 90
    figure = new_figure(width, 60 + rows * cell + label_h)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap=_colormap(table), vmin=low, vmax=high, interpolation="nearest")
    axes.set_xticks(range(cols), col_labels, rotation=90 if turned else 0, fontsize=size)
    axes.set_yticks(range(rows), row_labels, fontsize=size)
    axes.tick_params(length=0)
    axes.set_xlabel(col_title, fontsize=FONT + 1)
    axes.set_ylabel(row_title, fontsize=FONT + 1)
    if numbers is not None:
        t = np.clip((values - low) / (high - low if high > low else 1.0), 0, 1)
        light = colours.lookup(np.asarray(table), t).astype(int).sum(axis=-1) > 380
        for (r, c), number in np.ndenumerate(numbers):
            colour = "#141414" if light[r, c] else "white"
            text = number_format.format(number)
            axes.text(c, r, text, ha="center", va="center", fontsize=size, color=colour)
    if marks is not None:
        r, c = np.nonzero(marks)
        # In the cell's top-right corner, small, so that the cell's number stays readable.
        side = 0.3 * cell * 72 / DPI  # points
        axes.scatter(c + 0.3, r - 0.3, marker="x", s=side**2, color="#00a0ff", lw=1.8)
    bar = figure.colorbar(image, ax=axes, fraction=0.05, pad=0.02)
    bar.ax.tick_params(labelsize=FONT)
    if np.all(np.mod(values, 1) == 0):  # counts: no ticks at half an image
        from matplotlib.ticker import MaxNLocator

        bar.locator = MaxNLocator(integer=True)
    return figure


def heat_map(
    values: np.ndarray,
    table: np.ndarray,
    low: float,
    high: float,
    cell: int,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    row_title: str = "",
    col_title: str = "",
    numbers: np.ndarray | None = None,
    number_format: str = "{:.2f}",
    marks: np.ndarray | None = None,
) -> Image.Image:
    """`heat_map_figure` drawn."""
    figure = heat_map_figure(
        values, table, low, high, cell, row_labels, col_labels, row_title, col_title,
        numbers, number_format, marks,
    )  # fmt: skip
    return picture(figure)
