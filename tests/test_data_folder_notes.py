"""A folder whose images differ a lot in mode or size gets a note; a uniform one gets none."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.data import open_source
from cnnkit.data.variety import variety_notes
from data_helpers import isolated_env, make_folder, png_bytes  # noqa: F401


def _mixed(root):
    """3 grey 12x12 images, and 1 colour 30x20 (width x height) in class b."""
    make_folder(root, {"a": 2, "b": 1}, size=12)
    colour = np.zeros((20, 30, 3), np.uint8)
    colour[..., 0] = 200
    (root / "b" / "big.png").write_bytes(png_bytes(colour))
    return root


def test_mixed_modes_and_sizes_are_noted_and_survive_the_cache(tmp_path, capsys):
    root = _mixed(tmp_path / "m")
    for _ in range(2):  # decoded, then read back from the cache
        notes = open_source(str(root), progress=False).notes
        assert notes == [
            "mixed modes: 3 of 4 images are grayscale and 1 colour; all were made RGB "
            "(grey replicated)",
            "image sizes differ by more than 2x, from 12x12 to 30x20 (width x height); all were "
            "fitted to 12x12 (letterbox), so small images are enlarged and large ones lose "
            "detail; pass --input to choose the size",
        ]
    assert main(["data", "info", str(root)]) == 0
    assert "note     mixed modes: 3 of 4 images are grayscale" in capsys.readouterr().out


def test_a_uniform_folder_gets_no_note(tmp_path):
    root = make_folder(tmp_path / "u", {"a": 2, "b": 2}, size=12)
    assert open_source(str(root), progress=False).notes == []


@pytest.mark.parametrize(
    "stats, expected",
    [
        ([(10, 10, False), (20, 20, False)], []),  # exactly 2x: no note
        ([(10, 10, False), (10, 21, False)], ["sizes differ"]),  # widths 2.1x apart
        ([(64, 64, True), (64, 64, False)], ["mixed modes"]),
        ([], []),
    ],
)
def test_variety_thresholds(stats, expected):
    notes = variety_notes(stats, (32, 32, 3), "letterbox")
    assert [next(k for k in ("sizes differ", "mixed modes") if k in n) for n in notes] == expected
