"""Arrays -> Pillow images: image tiles, grids, captions; the charts come from `charts`.

Colour maps come from `colours` (one per meaning; `diverging` and `sequential` are their names
here). Small arrays are scaled up with NEAREST so each value stays a visible square. The charts
(lines, bars, heat maps, colour bars) are drawn by matplotlib in `charts` and named here too, so
that a figure needs one module for its pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cnnkit.inspect import colours
from cnnkit.inspect.charts import bar_chart, colour_bar, heat_map, line_chart  # noqa: F401

# The two maps under the names the figures use: signed values and values >= 0.
DIVERGING = colours.table(colours.SIGNED)
SEQUENTIAL = colours.table(colours.NON_NEGATIVE)
diverging = colours.signed
sequential = colours.non_negative

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
PAD = 8


# ----------------------------------------------------------------------------- Pillow pictures


@lru_cache(maxsize=8)
def font(size: int = 15) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font


def text_size(text: str, size: int = 15) -> tuple[int, int]:
    # getbbox is relative to the draw origin, and text is drawn at (0, 0): keep the top offset.
    _, _, right, bottom = font(size).getbbox(text + "gy")
    return int(font(size).getbbox(text)[2]) if text else 0, int(bottom) + 3


def wrap(text: str, width: int, size: int = 13) -> list[str]:
    """Lines of `text` no wider than `width` px: at newlines, then spaces, then anywhere.

    A class name without spaces ("class_with_long_name_7") is cut between characters rather than
    truncated, so every character stays visible.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if text_size(candidate, size)[0] <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:  # the word alone is too wide: break it where it must break
                if line and text_size(line + char, size)[0] > width:
                    lines.append(line)
                    line = ""
                line += char
        lines.append(line)
    return lines


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W), (H, W, 1) or (H, W, 3) -> (H, W, 3)."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def tile(rgb: np.ndarray, size: int) -> Image.Image:
    """uint8 RGB array scaled up with NEAREST by a whole factor to about `size` px."""
    height, width = rgb.shape[:2]
    scale = max(1, round(size / max(height, width)))
    return Image.fromarray(to_rgb(rgb)).resize(
        (width * scale, height * scale), Image.Resampling.NEAREST
    )


def blank(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (max(width, 1), max(height, 1)), BACKGROUND)


def label(
    text: str,
    size: int = 15,
    colour: tuple[int, int, int] = INK,
    width: int = 0,
    centre: bool = False,
) -> Image.Image:
    """One line of text, or several (one per "\\n"), on white; left aligned unless centred."""
    lines = text.split("\n")
    sizes = [text_size(line, size) for line in lines]
    image = blank(max(width, *(w for w, _ in sizes)), sum(h for _, h in sizes))
    y = 0
    for line, (w, h) in zip(lines, sizes, strict=True):
        x = (image.width - w) // 2 if centre else 0
        ImageDraw.Draw(image).text((x, y), line, font=font(size), fill=colour)
        y += h
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
    tiles: Sequence[Image.Image],
    columns: int,
    captions: Sequence[str] | None = None,
    gap: int = 4,
    caption_width: int = 0,
) -> Image.Image:
    """Tiles in rows of `columns`, each with an optional caption under it.

    A caption is wrapped to its column (the widest tile, or `caption_width` px when larger), and
    columns are `gap` + 6 px apart when captioned, so neighbouring captions never touch.
    """
    column_w = max(max(t.width for t in tiles) + 2, caption_width)
    cells = []
    for i, image in enumerate(tiles):
        cell = bordered(image)
        if captions is not None:
            text = "\n".join(wrap(captions[i], column_w, 13))
            cell = stack([cell, label(text, 13, centre=True)], gap=1, centre=True)
        cells.append(cell)
    gap_x = gap + 6 if captions is not None else gap
    cell_w = max(c.width for c in cells)
    cell_h = max(c.height for c in cells)
    rows = -(-len(cells) // columns)
    out = blank(columns * cell_w + (columns - 1) * gap_x, rows * cell_h + (rows - 1) * gap)
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        out.paste(cell, (c * (cell_w + gap_x) + (cell_w - cell.width) // 2, r * (cell_h + gap)))
    return out
