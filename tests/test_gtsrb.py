"""GTSRB's official layout, made small in tmp_path: PPM images, GT-*.csv labels and regions.

Each image is a sign of one colour inside a border of another, so a test can tell whether the
region of interest was cropped. The course's pickles are refused, never unpickled.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit.data import open_source
from cnnkit.errors import ConfigError, DataError
from data_helpers import isolated_env, make_folder  # noqa: F401

HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
BORDER = (0, 0, 255)
SIGNS = {0: (255, 0, 0), 1: (0, 255, 0), 14: (255, 255, 0)}  # ClassId -> the sign's colour


def _sign(path: Path, class_id: int, width: int, height: int, mode: str = "RGB") -> str:
    """Write one PPM (or PGM for mode L) with a 5 px border; its CSV row (ROI inclusive)."""
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = BORDER
    pixels[5 : height - 5, 5 : width - 5] = SIGNS[class_id]
    Image.fromarray(pixels).convert(mode).save(path, format="PPM")
    return f"{path.name};{width};{height};5;5;{width - 6};{height - 6};{class_id}\n"


def make_gtsrb(root: Path, *, per_class: int = 3, test_labels: bool = True) -> Path:
    """root/GTSRB/Final_Training/Images/000NN/ and root/GTSRB/Final_Test/Images/, as unpacked."""
    train = root / "GTSRB" / "Final_Training" / "Images"
    for class_id in SIGNS:
        folder = train / f"{class_id:05d}"
        folder.mkdir(parents=True)
        rows = [
            _sign(folder / f"00000_{i:05d}.ppm", class_id, 20 + 4 * i, 22 + 4 * i)
            for i in range(per_class)
        ]
        (folder / f"GT-{class_id:05d}.csv").write_text(HEADER + "".join(rows))
    test = root / "GTSRB" / "Final_Test" / "Images"
    test.mkdir(parents=True)
    rows = [_sign(test / f"{i:05d}.ppm", class_id, 24, 26) for i, class_id in enumerate(SIGNS)]
    unlabelled = [";".join(row.split(";")[:-1]) + "\n" for row in rows]
    (test / "GT-final_test.test.csv").write_text(
        HEADER.rsplit(";", 1)[0] + "\n" + "".join(unlabelled)
    )
    if test_labels:
        (test / "GT-final_test.csv").write_text(HEADER + "".join(rows))
    return root / "GTSRB"


def test_the_official_layout_is_detected_with_both_splits(tmp_path):
    root = make_gtsrb(tmp_path)
    dataset = open_source(str(root), progress=False)
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 9, "test": 3}
    assert dataset.class_names == ["0", "1", "14"]  # GTSRB's ClassIds, in order
    assert dataset.splits["train"].labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert dataset.splits["test"].labels.tolist() == [0, 1, 2]
    assert dataset.shape == (32, 32, 3)  # GTSRB's usual size unless one is given; colour
    assert (
        "fitted to 32x32 (letterbox), GTSRB's usual size; pass --input (size= in Python) for another"
        in dataset.notes
    )
    assert any(note.startswith("read as GTSRB's layout (training ") for note in dataset.notes)
    assert any("whole images, border included" in note for note in dataset.notes)


def test_the_region_of_interest_is_cropped_on_request(tmp_path):
    root = make_gtsrb(tmp_path)
    whole = open_source(str(root), size=(8, 8), channels=3, resize="stretch", progress=False)
    assert whole.splits["train"].images[0, 0, 0].tolist() == list(BORDER)
    for source, options in ((str(root), {"roi": True}), (f"{root}:roi", {})):
        cropped = open_source(
            source, size=(8, 8), channels=3, resize="stretch", progress=False, **options
        )
        assert cropped.source == source
        for split in cropped.splits.values():
            for image, label in zip(split.images, split.labels, strict=True):
                colour = SIGNS[[0, 1, 14][label]]
                assert (image == colour).all()  # nothing of the border is left
        assert any("cropped to its region of interest" in note for note in cropped.notes)


def test_the_training_or_the_test_folder_alone(tmp_path):
    root = make_gtsrb(tmp_path)
    train = open_source(str(root / "Final_Training" / "Images"), progress=False)
    assert list(train.splits) == ["train"] and len(train.splits["train"]) == 9
    test = open_source(str(root / "Final_Test" / "Images"), progress=False)
    assert list(test.splits) == ["test"] and test.class_names == ["0", "1", "14"]


def test_a_test_csv_without_class_ids_is_left_out_with_a_note(tmp_path):
    root = make_gtsrb(tmp_path, test_labels=False)
    dataset = open_source(str(root), progress=False)
    assert list(dataset.splits) == ["train"]
    assert any("GT-final_test.test.csv has no ClassId column" in n for n in dataset.notes)


def test_class_names_from_the_courses_signnames_csv(tmp_path):
    root = make_gtsrb(tmp_path)
    (root / "signnames.csv").write_text(
        "ClassId,SignName\n0,Speed limit (20km/h)\n1,Speed limit (30km/h)\n14,Stop\n"
    )
    assert open_source(str(root), progress=False).class_names[2] == "Stop"


def test_a_listed_but_missing_image_is_skipped(tmp_path):
    root = make_gtsrb(tmp_path)
    (root / "Final_Training" / "Images" / "00001" / "00000_00002.ppm").unlink()
    dataset = open_source(str(root), progress=False)
    assert len(dataset.splits["train"]) == 8
    assert dataset.skipped[0]["reason"] == "listed in its CSV but missing"


def test_pgm_and_ppm_files_in_a_plain_folder_are_decoded(tmp_path):
    for name, mode in (("grey", "L"), ("colour", "RGB")):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(2):
            _sign(tmp_path / "f" / name / f"{i}.{'pgm' if mode == 'L' else 'ppm'}", 0, 20, 20, mode)
    dataset = open_source(str(tmp_path / "f"), progress=False)
    assert len(dataset.splits["train"]) == 4 and not dataset.skipped
    grey = dataset.splits["train"].images[dataset.splits["train"].labels == 1]
    assert grey[0, 10, 10].tolist() == [76] * 3  # red in the PGM as PIL's grey, made RGB


def _edit(root: Path, name: str, old: str, new: str) -> None:
    path = root / "Final_Training" / "Images" / "00001" / name
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize(
    "old, new, match",
    [
        (
            "Roi.X2;",
            "",
            r"00001/GT-00001\.csv: header 'Filename;Width;Height;Roi\.X1;Roi\.Y1;Roi\.Y2;ClassId' "
            r"lacks Roi\.X2; expected GTSRB's Filename;Width;Height;Roi\.X1;Roi\.Y1;Roi\.X2;Roi\.Y2;"
            r"ClassId \(semicolon-separated\)",
        ),
        (
            ";5;5;",
            ";five;5;",
            r"GT-00001\.csv line 2: Roi\.X1 is 'five', expected a whole number >= 0; fix the row",
        ),
        (
            "00000_00000.ppm",
            "../00000/00000_00000.ppm",
            r"GT-00001\.csv line 2: Filename '\.\./00000/00000_00000\.ppm' is not a plain file name",
        ),
    ],
)
def test_a_malformed_csv_is_one_line(tmp_path, old, new, match):
    root = make_gtsrb(tmp_path)
    _edit(root, "GT-00001.csv", old, new)
    with pytest.raises(DataError, match=match) as caught:
        open_source(str(root), progress=False)
    assert "\n" not in str(caught.value)


def test_a_test_class_unknown_to_training_is_refused(tmp_path):
    root = make_gtsrb(tmp_path)
    csv = root / "Final_Test" / "Images" / "GT-final_test.csv"
    csv.write_text(csv.read_text().replace(";14\n", ";40\n"))
    with pytest.raises(
        DataError,
        match=r"GT-final_test\.csv: ClassId 40 \(00002\.ppm\) is not among the training classes "
        r"0\.\.14; check the test CSV",
    ):
        open_source(str(root), progress=False)


def test_a_region_outside_the_image_skips_that_image(tmp_path):
    root = make_gtsrb(tmp_path)
    _edit(root, "GT-00001.csv", ";5;5;", ";50;50;")
    dataset = open_source(str(root), roi=True, progress=False)
    assert len(dataset.splits["train"]) == 8
    assert re.match(
        r"region of interest \(50, 50, 15, 17\) lies outside the 20x22 image; fix its row in the CSV",
        dataset.skipped[0]["reason"],
    )


@pytest.mark.parametrize("source", ["folder", "mnist-mini"])
def test_roi_needs_gtsrbs_layout(tmp_path, source):
    if source == "folder":
        source = str(make_folder(tmp_path / "plain", {"a": 1, "b": 1}))
    with pytest.raises(ConfigError, match=r"cropping to the region of interest .* needs .*GTSRB"):
        open_source(source, roi=True, progress=False)


def test_train_cli_roi_crop_flag(tmp_path, capsys):
    root = make_gtsrb(tmp_path)
    args = ["train", "--data", str(root), "--roi-crop", "--epochs", "1", "--batch-size", "4"]
    args += ["--input", "16x16x3"]
    code = main([*args, "--val", "test", "--out", str(tmp_path / "run")])
    out = capsys.readouterr()
    assert code == 0, out.err
    manifest = (tmp_path / "run" / "cnnkit.json").read_text()
    assert f'"{root}:roi"' in manifest  # the run reopens its data cropped alike


@pytest.mark.parametrize("extra", [[], ["--resume", "runs/x"]])
def test_train_cli_roi_crop_needs_data(extra, capsys):
    assert main(["train", "--roi-crop", *extra]) == 2
    err = capsys.readouterr().err
    assert err == (
        "cnnkit: error: --roi-crop crops the images of --data DIR (GTSRB's layout); give --data DIR "
        "(with --resume the run keeps its own data: drop --roi-crop)\n"
    )


# --- the course's pickles: refused, never unpickled ---------------------------------------------
class _Trap:
    """Unpickling this touches a marker file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_is_refused_unopened_with_the_command_that_converts_it(tmp_path):
    folder = tmp_path / "traffic-signs-data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, count in (("train", 12), ("valid", 4), ("test", 4)):
        data = {
            "features": rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
            "labels": np.arange(count) % 3,
        }
        (folder / f"{stem}.p").write_bytes(pickle.dumps(data))
    marker = tmp_path / "unpickled"
    (folder / "trap.pkl").write_bytes(pickle.dumps(_Trap(marker)))
    for source in (folder / "trap.pkl", folder / "train.p", folder):
        with pytest.raises(
            DataError, match=r"a Python pickle; cnnkit never unpickles data"
        ) as caught:
            open_source(str(source), progress=False)
        assert "\n" not in str(caught.value)
    assert not marker.exists()
    command = re.search(r'python -c "(.*)" and pass --data data\.npz', str(caught.value))[1]
    subprocess.run([sys.executable, "-c", command], cwd=folder, check=True)
    dataset = open_source(str(folder / "data.npz"), progress=False)
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 12, "test": 4, "val": 4}
    assert dataset.shape == (32, 32, 3)
