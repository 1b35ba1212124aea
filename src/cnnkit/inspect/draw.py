"""Arrays -> Pillow images: colour maps, tile grids, heat maps with colour bars, charts.

Pillow only (no matplotlib). Two colour maps, as lookup tables (255 and 256 entries) interpolated
linearly between documented anchors:
  DIVERGING  blue-white-red, ColorBrewer RdBu (5 classes, reversed): -1 (33,102,172),
             -0.5 (146,197,222), 0 (255,255,255) white, +0.5 (244,165,130), +1 (178,24,43).
             Signed values (filter weights, pre-activation maps), centred on 0.
  SEQUENTIAL matplotlib's inferno sampled at 0, 1/4, 1/2, 3/4, 1: (0,0,4) (87,16,110)
             (188,55,84) (249,142,9) (252,255,164). Values >= 0 (Grad-CAM, probabilities).
Small arrays are scaled up with NEAREST so each value stays a visible square.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DIVERGING_ANCHORS = [
    (0.0, (33, 102, 172)),
    (0.25, (146, 197, 222)),
    (0.5, (255, 255, 255)),
    (0.75, (244, 165, 130)),
    (1.0, (178, 24, 43)),
]
SEQUENTIAL_ANCHORS = [
    (0.0, (0, 0, 4)),
    (0.25, (87, 16, 110)),
    (0.5, (188, 55, 84)),
    (0.75, (249, 142, 9)),
    (1.0, (252, 255, 164)),
]
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
PAD = 8


def _table(anchors: list[tuple[float, tuple[int, int, int]]], size: int) -> np.ndarray:
    """(size, 3) uint8: anchors interpolated linearly, entry i at position i/(size - 1)."""
    where = np.linspace(0, 1, size)
    stops = [a for a, _ in anchors]
    return (
        np.stack([np.interp(where, stops, [c[ch] for _, c in anchors]) for ch in range(3)], axis=1)
        .round()
        .astype(np.uint8)
    )


# An odd length gives the diverging map an exact middle entry, so 0 is exactly white.
DIVERGING = _table(DIVERGING_ANCHORS, 255)
SEQUENTIAL = _table(SEQUENTIAL_ANCHORS, 256)


def _lookup(table: np.ndarray, t: np.ndarray) -> np.ndarray:
    """t in [0, 1] (clipped) -> the table's nearest entry."""
    return table[np.clip(np.rint(t * (len(table) - 1)), 0, len(table) - 1).astype(np.intp)]


def diverging(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Signed values -> uint8 RGB (..., 3): -limit blue, 0 white, +limit red."""
    limit = float(np.abs(values).max()) if limit is None else float(limit)
    t = 0.5 + 0.5 * np.asarray(values, dtype=np.float64) / (limit if limit > 0 else 1.0)
    return _lookup(DIVERGING, t)


def sequential(values: np.ndarray, low: float = 0.0, high: float | None = None) -> np.ndarray:
    """Values -> uint8 RGB (..., 3) with the inferno-like map over [low, high]."""
    high = float(np.max(values)) if high is None else float(high)
    span = high - low if high > low else 1.0
    t = (np.asarray(values, dtype=np.float64) - low) / span
    return _lookup(SEQUENTIAL, t)


# ----------------------------------------------------------------------------- primitives


@lru_cache(maxsize=8)
def font(size: int = 15) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font


def text_size(text: str, size: int = 15) -> tuple[int, int]:
    # getbbox is relative to the draw origin, and text is drawn at (0, 0): keep the top offset.
    _, _, right, bottom = font(size).getbbox(text + "gy")
    return font(size).getbbox(text)[2] if text else 0, bottom + 3


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W), (H, W, 1) or (H, W, 3) -> (H, W, 3)."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def tile(rgb: np.ndarray, size: int) -> Image.Image:
    """uint8 RGB array scaled up with NEAREST by a whole factor to about `size` px."""
    height, width = rgb.shape[:2]
    scale = max(1, round(size / max(height, width)))
    return Image.fromarray(to_rgb(rgb)).resize((width * scale, height * scale), Image.NEAREST)


def blank(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (max(width, 1), max(height, 1)), BACKGROUND)


def label(
    text: str, size: int = 15, colour: tuple[int, int, int] = INK, width: int = 0
) -> Image.Image:
    w, h = text_size(text, size)
    image = blank(max(w, width), h)
    ImageDraw.Draw(image).text((0, 0), text, font=font(size), fill=colour)
    return image


def stack(
    images: Sequence[Image.Image], vertical: bool = True, gap: int = PAD, centre: bool = False
) -> Image.Image:
    """Images one below (or beside) the other on white, left/top aligned unless centred."""
    images = [im for im in images if im is not None]
    if vertical:
        width = max(im.width for im in images)
        out = blank(width, sum(im.height for im in images) + gap * (len(images) - 1))
        y = 0
        for im in images:
            out.paste(im, ((width - im.width) // 2 if centre else 0, y))
            y += im.height + gap
    else:
        height = max(im.height for im in images)
        out = blank(sum(im.width for im in images) + gap * (len(images) - 1), height)
        x = 0
        for im in images:
            out.paste(im, (x, (height - im.height) // 2 if centre else 0))
            x += im.width + gap
    return out


def framed(image: Image.Image, margin: int = 12) -> Image.Image:
    out = blank(image.width + 2 * margin, image.height + 2 * margin)
    out.paste(image, (margin, margin))
    return out


def titled(image: Image.Image, title: str, note: str | None = None) -> Image.Image:
    parts = [label(title, 17)]
    if note:
        parts.append(label(note, 14, MUTED))
    return stack([stack(parts, gap=2), image], gap=6)


def bordered(image: Image.Image, colour: tuple[int, int, int] = (190, 190, 190)) -> Image.Image:
    out = Image.new("RGB", (image.width + 2, image.height + 2), colour)
    out.paste(image, (1, 1))
    return out


def grid(
    tiles: Sequence[Image.Image], columns: int, captions: Sequence[str] | None = None, gap: int = 4
) -> Image.Image:
    """Tiles in rows of `columns`, each with an optional caption under it."""
    cells = []
    for i, image in enumerate(tiles):
        cell = bordered(image)
        if captions is not None:
            cell = stack([cell, label(captions[i], 13)], gap=1, centre=True)
        cells.append(cell)
    cell_w = max(c.width for c in cells)
    cell_h = max(c.height for c in cells)
    rows = -(-len(cells) // columns)
    out = blank(columns * cell_w + (columns - 1) * gap, rows * cell_h + (rows - 1) * gap)
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        out.paste(cell, (c * (cell_w + gap), r * (cell_h + gap)))
    return out


def _tick(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10000 or abs(value) < 0.001:
        return f"{value:.1e}"
    return f"{value:.3g}"


def colour_bar(
    table: np.ndarray, low: float, high: float, height: int, ticks: int = 5
) -> Image.Image:
    """A vertical strip of `table` (high at the top) with `ticks` labelled values."""
    strip_w, tick_w = 14, 4
    labels = [_tick(low + (high - low) * i / (ticks - 1)) for i in range(ticks)]
    text_w = max(text_size(t, 13)[0] for t in labels)
    top = 8  # room for the top label's upper half
    out = blank(strip_w + tick_w + 4 + text_w, height + 2 * top)
    ramp = _lookup(table, np.linspace(1, 0, height))  # (height, 3)
    out.paste(Image.fromarray(np.repeat(ramp[:, None], strip_w, axis=1)), (0, top))
    draw = ImageDraw.Draw(out)
    draw.rectangle([0, top, strip_w - 1, top + height - 1], outline=(120, 120, 120))
    for i, text in enumerate(labels):
        y = top + round((height - 1) * (1 - i / (ticks - 1)))
        draw.line([strip_w, y, strip_w + tick_w, y], fill=INK)
        draw.text((strip_w + tick_w + 3, y), text, font=font(13), fill=INK, anchor="lm")
    return out


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
    """A matrix as coloured cells with axis labels, optional numbers in the cells, a colour bar.

    `marks` (bool, same shape) draws a cross in a cell, e.g. where a prediction flips.
    """
    rows, cols = values.shape
    t = np.clip((values - low) / (high - low if high > low else 1.0), 0, 1)
    colours = _lookup(table, t)  # (rows, cols, 3)
    body = Image.fromarray(colours.astype(np.uint8)).resize(
        (cols * cell, rows * cell), Image.NEAREST
    )
    draw = ImageDraw.Draw(body)
    size = 13 if cell >= 34 else 11
    if numbers is not None:
        for r in range(rows):
            for c in range(cols):
                light = colours[r, c].astype(int).sum() > 380
                draw.text(
                    ((c + 0.5) * cell, (r + 0.5) * cell),
                    number_format.format(numbers[r, c]),
                    font=font(size),
                    fill=INK if light else (255, 255, 255),
                    anchor="mm",
                )
    if marks is not None:
        for r, c in zip(*np.nonzero(marks), strict=True):
            x0, y0, x1, y1 = (
                c * cell + cell // 4,
                r * cell + cell // 4,
                (c + 1) * cell - cell // 4,
                (r + 1) * cell - cell // 4,
            )
            draw.line([x0, y0, x1, y1], fill=(0, 160, 255), width=2)
            draw.line([x0, y1, x1, y0], fill=(0, 160, 255), width=2)
    row_labels = row_labels or [""] * rows
    col_labels = col_labels or [""] * cols
    label_w = max(text_size(t, 13)[0] for t in [*row_labels, "0"]) + 6
    label_h = text_size("0", 13)[1] + 4
    title_w = text_size("Ag", 15)[1] + 4 if row_title else 0
    bar = colour_bar(table, low, high, body.height)
    width = title_w + label_w + body.width + 10 + bar.width
    height = body.height + label_h + (text_size("Ag", 15)[1] + 4 if col_title else 0) + 8
    out = blank(width, height)
    x0, y0 = title_w + label_w, 8
    out.paste(body, (x0, y0))
    draw = ImageDraw.Draw(out)
    show_every = max(
        1, -(-max(rows, cols) * 14 // max(body.height, 1))
    )  # skip labels that would overlap
    for r, text in enumerate(row_labels):
        if r % show_every == 0:
            draw.text((x0 - 4, y0 + (r + 0.5) * cell), text, font=font(13), fill=INK, anchor="rm")
    for c, text in enumerate(col_labels):
        if c % show_every == 0:
            draw.text(
                (x0 + (c + 0.5) * cell, y0 + body.height + 3),
                text,
                font=font(13),
                fill=INK,
                anchor="mt",
            )
    if col_title:
        draw.text(
            (x0 + body.width / 2, y0 + body.height + label_h + 2),
            col_title,
            font=font(15),
            fill=INK,
            anchor="mt",
        )
    if row_title:
        rotated = label(row_title, 15).rotate(90, expand=True)
        out.paste(rotated, (0, y0 + (body.height - rotated.height) // 2))
    out.paste(bar, (x0 + body.width + 10, y0 - 8))
    return out


# ----------------------------------------------------------------------------- charts


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1
    raw = (high - low) / (count - 1)
    magnitude = 10 ** np.floor(np.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    start = np.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 0.001:
        if value >= low - step * 0.001:
            ticks.append(round(float(value), 10))
        value += step
    return ticks


PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]


def line_chart(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_title: str,
    y_title: str,
    size: tuple[int, int] = (420, 260),
    y_range: tuple[float, float] | None = None,
) -> Image.Image:
    """Lines with axes, ticks, axis titles and a legend; a single point is drawn as a dot."""
    width, height = size
    left, right, top, bottom = 62, 14, 30, 46
    out = blank(width, height)
    draw = ImageDraw.Draw(out)
    xs = [x for xv, _ in series.values() for x in xv]
    ys = [y for _, yv in series.values() for y in yv if y is not None and np.isfinite(y)]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0, 1)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    y_lo, y_hi = y_range or ((min(ys), max(ys)) if ys else (0, 1))
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    y_ticks = _nice_ticks(y_lo, y_hi)
    y_lo, y_hi = min(y_lo, y_ticks[0]), max(y_hi, y_ticks[-1])
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x_lo) / (x_hi - x_lo) * plot_w,
            top + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h,
        )

    draw.text((width / 2, 4), title, font=font(16), fill=INK, anchor="mt")
    for value in y_ticks:
        _, y = px(x_lo, value)
        draw.line([left, y, left + plot_w, y], fill=(232, 232, 232))
        draw.text((left - 5, y), _tick(value), font=font(13), fill=INK, anchor="rm")
    for value in _nice_ticks(x_lo, x_hi):
        x, _ = px(value, y_lo)
        draw.line([x, top + plot_h, x, top + plot_h + 4], fill=INK)
        draw.text((x, top + plot_h + 6), _tick(value), font=font(13), fill=INK, anchor="mt")
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=INK)
    draw.text((left + plot_w / 2, height - 4), x_title, font=font(14), fill=INK, anchor="md")
    rotated = label(y_title, 14).rotate(90, expand=True)
    out.paste(rotated, (2, top + (plot_h - rotated.height) // 2))
    legend_x = left + 8
    for i, (name, (xv, yv)) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = [px(x, y) for x, y in zip(xv, yv, strict=True) if y is not None and np.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points if len(points) <= 30 else []:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.line([legend_x, top + 12, legend_x + 16, top + 12], fill=colour, width=3)
        draw.text((legend_x + 20, top + 12), name, font=font(13), fill=INK, anchor="lm")
        legend_x += 28 + text_size(name, 13)[0]
    return out


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    y_title: str,
    y_range: tuple[float, float] = (0.0, 1.0),
    x_title: str = "",
    height: int = 260,
) -> Image.Image:
    """Vertical bars with the value above each (when they fit), axes and titles."""
    count = len(values)
    bar_w = max(4, min(40, 600 // max(count, 1)))
    left, right, top, bottom = 62, 14, 30, 28 + (20 if x_title else 0)
    width = max(left + right + count * (bar_w + 4), 260)
    out = blank(width, height)
    draw = ImageDraw.Draw(out)
    plot_h = height - top - bottom
    lo, hi = y_range
    hi = max(hi, max(values, default=hi))
    y_ticks = _nice_ticks(lo, hi)
    hi = max(hi, y_ticks[-1])

    def y_px(value: float) -> float:
        return top + (1 - (value - lo) / (hi - lo)) * plot_h

    draw.text((width / 2, 4), title, font=font(16), fill=INK, anchor="mt")
    for value in y_ticks:
        draw.line([left, y_px(value), width - right, y_px(value)], fill=(232, 232, 232))
        draw.text((left - 5, y_px(value)), _tick(value), font=font(13), fill=INK, anchor="rm")
    # Label every n-th bar so that labels never overlap: n bars must be as wide as one label.
    widest = max((text_size(str(t)[:8], 13)[0] for t in labels), default=0) + 6
    every = max(1, -(-widest // (bar_w + 4)))
    for i, value in enumerate(values):
        x = left + 4 + i * (bar_w + 4)
        draw.rectangle([x, y_px(value), x + bar_w, y_px(lo)], fill=PALETTE[0])
        if bar_w >= 30:
            draw.text(
                (x + bar_w / 2, y_px(value) - 2),
                f"{value:.2f}",
                font=font(11),
                fill=INK,
                anchor="md",
            )
        if i % every == 0:
            draw.text(
                (x + bar_w / 2, y_px(lo) + 4),
                str(labels[i])[:8],
                font=font(13),
                fill=INK,
                anchor="mt",
            )
    draw.line([left, top, left, y_px(lo), width - right, y_px(lo)], fill=INK)
    if x_title:
        draw.text(
            (left + (width - left - right) / 2, height - 4),
            x_title,
            font=font(14),
            fill=INK,
            anchor="md",
        )
    rotated = label(y_title, 14).rotate(90, expand=True)
    out.paste(rotated, (2, top + (plot_h - rotated.height) // 2))
    return out
