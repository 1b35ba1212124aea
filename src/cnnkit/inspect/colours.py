"""One colour map per meaning, for the CLI pictures, the report's charts and the web page.

    SIGNED        values around 0 (filter weights, pre-activation maps): blue < 0 < red, white
                  at exactly 0, always on a symmetric range [-limit, +limit]. ColorBrewer RdBu
                  (5 classes, reversed), the map the explorer page's conv step already uses.
    NON_NEGATIVE  values >= 0 (Grad-CAM, saliency, probabilities, counts): black 0 .. pale
                  yellow max. matplotlib's inferno, perceptually uniform and readable in grey.

Each map is a list of hex stops, interpolated linearly: `table` gives the lookup table that the
Pillow pictures use and that `charts` hands to matplotlib, and `web_colour_maps` the stops as
JSON-ready data for the page. NumPy only, so `serve` can import it
without matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ColourMap:
    """Hex stops spaced evenly over [0, 1] and the number of entries of the lookup table."""

    name: str
    stops: tuple[str, ...]
    size: int
    signed: bool  # True: drawn on [-limit, +limit] with 0 in the middle


SIGNED = ColourMap(
    "signed",
    ("#2166ac", "#92c5de", "#ffffff", "#f4a582", "#b2182b"),
    # An odd length gives the table an exact middle entry, so 0 is exactly white.
    size=255,
    signed=True,
)
# inferno sampled at 17 points: linear between them stays within 7/255 of matplotlib's
# 256-entry table (tests/test_inspect.py checks it); 5 points were 16/255 off.
NON_NEGATIVE = ColourMap(
    "non-negative",
    (
        "#000004",
        "#0b0724",
        "#210c4a",
        "#3d0965",
        "#57106e",
        "#71196e",
        "#8a226a",
        "#a32c61",
        "#bc3754",
        "#d24644",
        "#e45a31",
        "#f1731d",
        "#f98e09",
        "#fcac11",
        "#f9cb35",
        "#f2ea69",
        "#fcffa4",
    ),  # fmt: skip
    size=256,
    signed=False,
)
MAPS = {m.name: m for m in (SIGNED, NON_NEGATIVE)}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    """'#2166ac' -> (33, 102, 172)."""
    value = hex_colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


@lru_cache(maxsize=4)
def table(colour_map: ColourMap) -> np.ndarray:
    """(size, 3) uint8: the stops interpolated linearly, entry i at position i / (size - 1)."""
    where = np.linspace(0, 1, colour_map.size)
    at = np.linspace(0, 1, len(colour_map.stops))
    stops = np.array([rgb(s) for s in colour_map.stops], dtype=np.float64)  # (S, 3)
    channels = [np.interp(where, at, stops[:, ch]) for ch in range(3)]
    out = np.stack(channels, axis=1).round().astype(np.uint8)
    out.flags.writeable = False  # shared by every caller through the cache
    return out


def lookup(lut: np.ndarray, t: np.ndarray) -> np.ndarray:
    """t in [0, 1] (clipped) -> the table's nearest entry, uint8 (..., 3)."""
    index = np.clip(np.rint(np.asarray(t, dtype=np.float64) * (len(lut) - 1)), 0, len(lut) - 1)
    return lut[index.astype(np.intp)]


def signed(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Signed values -> uint8 RGB (..., 3): -limit blue, 0 white, +limit red."""
    limit = float(np.abs(values).max()) if limit is None else float(limit)
    t = 0.5 + 0.5 * np.asarray(values, dtype=np.float64) / (limit if limit > 0 else 1.0)
    return lookup(table(SIGNED), t)


def non_negative(values: np.ndarray, low: float = 0.0, high: float | None = None) -> np.ndarray:
    """Values -> uint8 RGB (..., 3) over [low, high] (high: the maximum when None)."""
    high = float(np.max(values)) if high is None else float(high)
    span = high - low if high > low else 1.0
    return lookup(table(NON_NEGATIVE), (np.asarray(values, dtype=np.float64) - low) / span)


def web_colour_maps() -> dict[str, Any]:
    """The maps as JSON for the page: name -> hex stops (evenly spaced) and whether signed.

    The page interpolates linearly between the stops, as `table` does, so a value gets the same
    colour in the browser as in `cnnkit inspect` and the report.
    """
    return {
        m.name: {"stops": list(m.stops), "signed": m.signed, "size": m.size} for m in MAPS.values()
    }
