"""`cnnkit train` on a folder says what it did to the data: decoded size and skipped files."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnnkit.cli import main


def test_folder_training_notes_the_decoding_and_the_skipped_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        folder = tmp_path / "photos" / name
        folder.mkdir(parents=True)
        for index in range(8):
            pixels = (rng.random((30, 20, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
    (tmp_path / "photos" / "cats" / "broken.png").write_text("not an image")
    code = main(
        [
            "train",
            "--data",
            str(tmp_path / "photos"),
            "--batch-size",
            "4",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 0
    # Model auto keeps the colour and makes the 30x20 images square (sqrt(600) -> 28, the least).
    assert "model auto: auto-28x28x3-c2 for colour images of 30x20" in out
    assert "decoded to the model's input 28x28x3 (letterbox" in out
    assert "1 file(s) skipped as unreadable (" in out and "broken.png" in out
