"""GTSRB's official layout (the German Traffic Sign Recognition Benchmark) read as a data source.

The training archive (GTSRB/Final_Training/Images) holds one folder per class, 00000 to 00042,
each with its PPM images and GT-000NN.csv; the test archive (GTSRB/Final_Test/Images) holds the
PPM images and one CSV, GT-final_test.csv (the labelled one comes in GTSRB_Final_Test_GT.zip).
Every CSV is semicolon-separated with a header line:

    Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId

The region of interest is the sign inside a border of about 10% (at least 5 px). Roi.X2 and Roi.Y2
name the last pixel of the sign, so `roi=True` crops to (X1, Y1, X2 + 1, Y2 + 1). Decoding,
caching and fitting are the folder loader's (`load_listing`).

The course's pickled copies (train.p, valid.p, test.p) are refused, never unpickled: unpickling
runs whatever code the file holds. `pickle_refusal` says how to turn them into an .npz once.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cnnkit.data.dataset import Dataset
from cnnkit.data.folder import load_listing
from cnnkit.errors import DataError

COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId")
PICKLE_SUFFIXES = (".p", ".pickle", ".pkl")
# GTSRB's images run from 15x15 to 250x250 px, so no single size is "the images' own"; without a
# size they are fitted to 32x32, the size of the course's pickled copy and its LeNet lab.
DEFAULT_SIZE = (32, 32)
_CLASS_DIR = re.compile(r"\d{5}")
# Where the official archives unpack, relative to the folder given with --data.
_TRAIN_DIRS = (".", "Final_Training/Images", "GTSRB/Final_Training/Images", "train")
_TEST_DIRS = (".", "Final_Test/Images", "GTSRB/Final_Test/Images", "test")


@dataclass(frozen=True)
class Row:
    """One CSV row: the image, its region of interest and its class."""

    path: str
    box: tuple[int, int, int, int]  # left, top, right, bottom; right and bottom exclusive
    class_id: int


@dataclass(frozen=True)
class Layout:
    """GTSRB's folders under the folder given: training (class folders) and test (one CSV)."""

    train: Path | None
    test: Path | None
    test_csv: Path | None  # GT-final_test.csv, with ClassId


def find_gtsrb(root: Path) -> Layout | None:
    """GTSRB's training and test folders at or under `root`; None when it is not that layout."""
    train = next((root / d for d in _TRAIN_DIRS if _class_csvs(root / d)), None)
    test, test_csv = None, None
    for name in _TEST_DIRS:
        found = _test_csv(root / name)
        if found is not None and (root / name) != train:
            test, test_csv = root / name, found
            break
    if train is None and test is None:
        return None
    return Layout(train, test, test_csv)


def _class_csvs(folder: Path) -> list[Path]:
    """GT-NNNNN.csv of every class folder NNNNN in `folder` (empty when it is not GTSRB's)."""
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir() and _CLASS_DIR.fullmatch(entry.name):
            csv_path = Path(entry.path) / f"GT-{entry.name}.csv"
            if csv_path.is_file():
                found.append(csv_path)
    return found


def _test_csv(folder: Path) -> Path | None:
    """The one GT-*.csv of a flat test folder, or None."""
    if not folder.is_dir() or _class_csvs(folder):
        return None
    csvs = sorted(folder.glob("GT-*.csv"))
    labelled = [p for p in csvs if "ClassId" in _header(p)]
    return (labelled or csvs)[0] if csvs else None


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return handle.readline().strip().split(";")


def read_csv(path: Path) -> list[Row]:
    """The rows of one GT-*.csv; a malformed header or value is one DataError naming the line."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=";")
        header = next(reader, [])
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DataError(
                f"{path}: header {';'.join(header)[:80]!r} lacks {', '.join(missing)}; expected "
                f"GTSRB's {';'.join(COLUMNS)} (semicolon-separated)"
            )
        at = {name: header.index(name) for name in COLUMNS}
        rows = []
        for line, fields in enumerate(reader, start=2):
            if not fields or not "".join(fields).strip():
                continue
            rows.append(_row(path, line, fields, at))
    return rows


def _row(path: Path, line: int, fields: list[str], at: dict[str, int]) -> Row:
    text = {name: fields[i].strip() if i < len(fields) else "" for name, i in at.items()}
    for name in COLUMNS[1:]:
        if not (text[name].isascii() and text[name].isdigit()):
            raise DataError(
                f"{path} line {line}: {name} is {text[name][:20]!r}, expected a whole number "
                f">= 0; fix the row or restore the CSV from GTSRB's archive"
            )
    filename = text["Filename"]
    if not filename or Path(filename).name != filename:
        raise DataError(
            f"{path} line {line}: Filename {filename[:40]!r} is not a plain file name beside "
            f"the CSV; fix the row"
        )
    x1, y1, x2, y2 = (int(text[name]) for name in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
    return Row(str(path.parent / filename), (x1, y1, x2 + 1, y2 + 1), int(text["ClassId"]))


def load_gtsrb(
    layout: Layout,
    root: Path,
    source: str,
    *,
    roi: bool = False,
    strict: bool = False,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    resize: str = "letterbox",
    progress: bool = True,
) -> Dataset:
    """Read GTSRB's training and/or test folder; `roi` crops each image to its sign."""
    rows, notes = _rows(layout, roi)
    ids = sorted({r.class_id for r in next(iter(rows.values()))})
    label = {class_id: index for index, class_id in enumerate(ids)}
    listing, boxes, skipped = [], [], []
    for split, split_rows in rows.items():
        for row in split_rows:
            if row.class_id not in label:
                raise DataError(
                    f"{layout.test_csv}: ClassId {row.class_id} ({Path(row.path).name}) is not "
                    f"among the training classes {ids[0]}..{ids[-1]}; check the test CSV"
                )
            try:
                stat = os.stat(row.path)
            except OSError:
                skipped.append({"path": row.path, "reason": "listed in its CSV but missing"})
                continue
            listing.append((split, label[row.class_id], row.path, stat.st_size, stat.st_mtime_ns))
            boxes.append(row.box)
    names = _class_names(root, ids)
    if size is None:
        size = DEFAULT_SIZE
        notes.append(
            f"fitted to {size[1]}x{size[0]} ({resize}), GTSRB's usual size; pass --input (size= in Python) for another"
        )
    dataset = load_listing(
        root, source, names, listing, skipped, strict, progress,
        boxes=boxes if roi else None, size=size, channels=channels, resize=resize,
    )  # fmt: skip
    dataset.notes = notes + dataset.notes
    return dataset


def _rows(layout: Layout, roi: bool) -> tuple[dict[str, list[Row]], list[str]]:
    """Split -> CSV rows, and the notes on what was read."""
    rows = {}
    if layout.train is not None:
        rows["train"] = [row for path in _class_csvs(layout.train) for row in read_csv(path)]
    notes = [_layout_note(layout, roi)]
    if layout.test_csv is not None:
        if "ClassId" in _header(layout.test_csv):
            rows["test"] = read_csv(layout.test_csv)
        else:
            notes.append(
                f"{layout.test_csv} has no ClassId column, so the test images are left out; put "
                f"GT-final_test.csv (from GTSRB_Final_Test_GT.zip) beside them"
            )
    rows = {split: split_rows for split, split_rows in rows.items() if split_rows}
    if not rows:
        where = layout.train or layout.test
        raise DataError(
            f"{where}: GTSRB's layout with no labelled image (CSVs with no rows, or a test CSV "
            f"without ClassId); add the GT-*.csv files from GTSRB's archives"
        )
    return rows, notes


def _layout_note(layout: Layout, roi: bool) -> str:
    parts = [
        f"training {layout.train}" if layout.train else "",
        f"test {layout.test}" if layout.test else "",
    ]
    crop = (
        "each image cropped to its region of interest"
        if roi
        else "whole images, border included (roi=True or --roi-crop crops to the sign)"
    )
    return f"read as GTSRB's layout ({', '.join(p for p in parts if p)}); {crop}"


def _class_names(root: Path, ids: list[int]) -> list[str]:
    """The course's signnames.csv (ClassId,SignName) beside the data if present, else the IDs."""
    for folder in (root, root.parent):
        names_csv = folder / "signnames.csv"
        if names_csv.is_file():
            with names_csv.open(newline="", encoding="utf-8-sig") as handle:
                table = {row[0]: row[1] for row in csv.reader(handle) if len(row) >= 2}
            if all(str(i) in table for i in ids):
                return [table[str(i)] for i in ids]
    return [str(i) for i in ids]


def pickle_refusal(path: Path) -> DataError:
    """One line that refuses a pickle and gives the Python that turns it into an .npz once."""
    keys = {"train": "train", "valid": "val", "val": "val", "test": "test"}
    siblings = [p for p in sorted(path.parent.glob("*.p")) if p.stem in keys] or [path]
    loads = ", ".join(
        f"x_{keys.get(p.stem, 'train')}=(d := pickle.load(open({p.name!r}, 'rb')))['features'], "
        f"y_{keys.get(p.stem, 'train')}=d['labels']"
        for p in (siblings if path in siblings else [path])
    )
    return DataError(
        f"{path}: a Python pickle; cnnkit never unpickles data (loading a pickle runs any code "
        f'in it); if you trust the file, convert it once in its folder with: python -c "import '
        f"pickle, numpy as np; np.savez('data.npz', {loads})\" and pass --data data.npz"
    )
