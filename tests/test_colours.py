"""One colour language: cnnkit.inspect.colours holds matplotlib's RdBu_r and inferno as stops,
and the page's static/colours.js holds the same stops, both written by scripts/make_colours.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps

from cnnkit.inspect import colours

ROOT = Path(__file__).resolve().parents[1]
COLOURS_JS = ROOT / "src/cnnkit/serve/static/colours.js"
JS_NAMES = {"signed": "RDBU_R", "non-negative": "INFERNO"}  # colours.MAPS name -> JS constant
MAPS = list(colours.MAPS.values())


def js_stops(const: str) -> np.ndarray:
    """The [[r, g, b], ...] array exported as `const` by colours.js."""
    match = re.search(rf"export const {const} = (\[.*?\]);\n", COLOURS_JS.read_text())
    assert match, f"colours.js exports no {const}"
    return np.array(json.loads(match.group(1)), dtype=float)


def py_stops(colour_map: colours.ColourMap) -> np.ndarray:
    return np.array([colours.rgb(h) for h in colour_map.stops], dtype=float)


def test_the_two_meanings_have_their_matplotlib_maps():
    assert (colours.SIGNED.matplotlib, colours.NON_NEGATIVE.matplotlib) == ("RdBu_r", "inferno")
    assert colours.SIGNED.signed and not colours.NON_NEGATIVE.signed
    assert set(colours.MAPS) == set(JS_NAMES)


@pytest.mark.parametrize("colour_map", MAPS, ids=lambda m: m.matplotlib)
def test_the_stops_are_matplotlibs_map_sampled_at_33_points(colour_map):
    stops = py_stops(colour_map)
    assert stops.shape == (33, 3)
    expected = colormaps[colour_map.matplotlib](np.linspace(0.0, 1.0, 33))[:, :3] * 255
    assert np.abs(stops - expected).max() <= 1.0, f"{colour_map.name} drifted from matplotlib"


@pytest.mark.parametrize("colour_map", MAPS, ids=lambda m: m.matplotlib)
def test_the_page_has_the_same_stops(colour_map):
    np.testing.assert_array_equal(js_stops(JS_NAMES[colour_map.name]), py_stops(colour_map))


@pytest.mark.parametrize("colour_map", MAPS, ids=lambda m: m.matplotlib)
def test_the_lookup_table_is_within_5_of_matplotlibs_own(colour_map):
    """Reference: matplotlib's 256-entry table; linear between 33 stops measured 3.8 and 4.4."""
    where = np.linspace(0.0, 1.0, colour_map.size)
    reference = colormaps[colour_map.matplotlib](where)[:, :3] * 255
    ours = colours.table(colour_map).astype(np.float64)
    assert np.abs(ours - reference).max() <= 5


@pytest.mark.parametrize("colour_map", MAPS, ids=lambda m: m.matplotlib)
def test_the_page_and_the_pictures_give_a_value_the_same_colour(colour_map):
    """The page interpolates colours.js's stops linearly (maps.js colourAt); the pictures look
    the value up in `table`: the two agree within the table's step."""
    stops = js_stops(JS_NAMES[colour_map.name])
    lut = colours.table(colour_map)
    for t in np.linspace(0, 1, 41):
        at = t * (len(stops) - 1)
        low = min(int(at), len(stops) - 2)
        expected = stops[low] + (at - low) * (stops[low + 1] - stops[low])
        got = colours.lookup(lut, np.array(t)).astype(np.float64)
        assert np.abs(got - expected).max() <= 4, t


def test_signed_zero_is_the_middle_stop():
    # An odd count: value 0 of a symmetric range falls exactly on RdBu_r's middle, not between.
    stops = py_stops(colours.SIGNED)
    assert len(stops) % 2 == 1 and colours.SIGNED.size % 2 == 1
    middle = stops[len(stops) // 2]
    assert np.abs(middle - np.array(colormaps["RdBu_r"](0.5)[:3]) * 255).max() <= 1.0
    np.testing.assert_array_equal(colours.signed(np.array([0.0]), 1.0)[0], middle)


def test_the_generator_has_nothing_to_change():
    """`make_colours.py --check`: both files are exactly what matplotlib gives now."""
    script = ROOT / "scripts" / "make_colours.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
