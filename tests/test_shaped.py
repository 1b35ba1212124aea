"""One way to open a source for a model: train, evaluate, inspect and report see the same data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.data import shaped
from cnnkit.errors import DataError

MODEL = "32x32x3 > conv 4@3x3 > maxpool 2 > flatten > fc 3"  # RGB 32x32: gray 28x28 needs fitting


def gray_npz(path: Path, width: int = 28) -> str:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 255, (48, 28, width), dtype=np.uint8),
        y_train=np.arange(48) % 3,
        x_test=rng.integers(0, 255, (12, 28, width), dtype=np.uint8),
        y_test=np.arange(12) % 3,
        class_names=np.array(["ant", "bee", "cat"]),
    )
    return str(path)


@pytest.mark.slow
def test_every_entry_point_sees_the_same_tensors_and_notes(tmp_path, monkeypatch, capsys):
    opened: dict[str, shaped.ShapedSource] = {}
    real = shaped.open_for_model
    command = ["?"]

    def spy(*args, **kwargs):
        opened[command[0]] = result = real(*args, **kwargs)
        return result

    monkeypatch.setattr(shaped, "open_for_model", spy)
    npz, run = gray_npz(tmp_path / "gray.npz"), str(tmp_path / "run")
    commands = {
        "train": ["train", "--model", MODEL, "--data", npz, "--epochs", "1", "--out", run,
                  "--batch-size", "8", "--quiet"],
        "evaluate": ["evaluate", run, "--data", npz],
        "inspect": ["inspect", run, "--data", npz, "--what", "patches", "--images", "4",
                    "--out", str(tmp_path / "inspect")],
        "report": ["report", run, "--data", npz, "--images", "4"],
    }  # fmt: skip
    for name, argv in commands.items():
        command[0] = name
        assert main(argv) == 0, capsys.readouterr()
    capsys.readouterr()

    reference = opened["train"]
    assert reference.notes == [
        f"data {npz!r} fitted to the model's input: grayscale replicated to RGB, "
        f"zero-padded from 28x28 to 32x32"
    ]
    test = reference.dataset.splits["test"]
    assert test.images.shape == (12, 32, 32, 3)
    for name in ("evaluate", "inspect", "report"):
        other = opened[name]
        assert other.notes == reference.notes, name
        assert other.class_names == reference.class_names == ["ant", "bee", "cat"], name
        np.testing.assert_array_equal(other.dataset.splits["test"].images, test.images)
        np.testing.assert_array_equal(other.dataset.splits["test"].labels, test.labels)


def test_labels_follow_the_runs_classes_by_name(tmp_path):
    npz = gray_npz(tmp_path / "gray.npz", width=28)
    manifest = {"input_shape": [28, 28, 1], "class_names": ["cat", "bee", "ant"]}
    data = shaped.open_for_run(manifest, npz)
    chosen = data.choose_split()
    assert (chosen.name, chosen.note) == ("test", None)
    assert data.class_names == ["cat", "bee", "ant"]
    np.testing.assert_array_equal(chosen.split.labels, 2 - np.arange(12) % 3)  # ant is the run's 2


@pytest.mark.parametrize(
    ("for_run", "pattern"),
    [
        (False, r"the model takes 28x28x1 images but '.*wide\.npz' holds 28x40x1, another "
                r"aspect ratio; pass --input 28x40x1 to train the model on the data's own shape"),
        (True, r"--data .*wide\.npz: its images are 28x40x1 but the model takes 28x28x1; another "
               r"aspect ratio, and the run was trained without --resize; give data shaped like"),
    ],
)  # fmt: skip
def test_another_aspect_ratio_is_refused_without_a_resize_mode(tmp_path, for_run, pattern):
    npz = gray_npz(tmp_path / "wide.npz", width=40)
    with pytest.raises(DataError, match=pattern):
        shaped.open_for_model(npz, (28, 28, 1), for_run=for_run)
    data = shaped.open_for_model(npz, (28, 28, 1), resize="stretch", for_run=for_run)
    assert data.dataset.shape == (28, 28, 1) and data.fitted
    assert data.notes[-1].endswith("resized from 28x40 to 28x28 (stretch)")
