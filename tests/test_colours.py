"""The page's colour stops (static/colours.js) are matplotlib's RdBu_r and inferno."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps

COLOURS_JS = Path(__file__).resolve().parents[1] / "src/cnnkit/serve/static/colours.js"


def js_stops(const: str) -> np.ndarray:
    """The [[r, g, b], ...] array exported as `const` by colours.js."""
    match = re.search(rf"export const {const} = (\[.*?\]);\n", COLOURS_JS.read_text())
    assert match, f"colours.js exports no {const}"
    return np.array(json.loads(match.group(1)), dtype=float)


@pytest.mark.parametrize(("const", "name"), [("RDBU_R", "RdBu_r"), ("INFERNO", "inferno")])
def test_stops_equal_matplotlib(const, name):
    stops = js_stops(const)
    assert 16 <= len(stops) <= 40 and stops.shape[1] == 3
    expected = colormaps[name](np.linspace(0.0, 1.0, len(stops)))[:, :3] * 255
    assert np.abs(stops - expected).max() <= 1.0, f"{const} drifted from matplotlib's {name}"


def test_signed_zero_is_the_middle_stop():
    # An odd count: value 0 of a symmetric range falls exactly on RdBu_r's middle, not between.
    stops = js_stops("RDBU_R")
    assert len(stops) % 2 == 1
    middle = colormaps["RdBu_r"](0.5)[:3]
    assert np.abs(stops[len(stops) // 2] - np.array(middle) * 255).max() <= 1.0
