"""NumPy archives in Keras's layout: x_train, y_train, x_test, y_test and optional class_names."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import Dataset, Split
from cnnkit.errors import DataError

_PAIRS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test"), "val": ("x_val", "y_val")}


def load_npz(path: Path, source: str) -> Dataset:
    """Read and validate an .npz; images may be (N, H, W) or (N, H, W, C), uint8 or floats in [0, 1]."""
    try:
        archive = np.load(path, allow_pickle=False)  # pickles would run code from the file
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path}: not a readable .npz archive ({error}); save it with np.savez"
        ) from None
    with archive:
        keys = set(archive.files)
        if not {"x_train", "y_train"} <= keys:
            raise DataError(
                f"{path}: missing key(s) {sorted({'x_train', 'y_train'} - keys)}; found "
                f"{sorted(keys)}; expected x_train, y_train and optionally x_test, y_test, "
                f"class_names (Keras's layout)"
            )
        splits = {}
        for split, (x_key, y_key) in _PAIRS.items():
            if (x_key in keys) != (y_key in keys):
                present, absent = (x_key, y_key) if x_key in keys else (y_key, x_key)
                raise DataError(f"{path}: has {present} but no {absent}; give both or neither")
            if x_key in keys:
                splits[split] = _split(path, archive[x_key], archive[y_key], x_key, y_key)
        names = archive["class_names"].tolist() if "class_names" in keys else None
    top = max(int(s.labels.max()) for s in splits.values()) + 1
    if names is None:
        names = [str(i) for i in range(top)]
    names = [str(n) for n in names]
    for split, data in splits.items():
        bad = (data.labels < 0) | (data.labels >= len(names))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: y_{split}[{first}] = {int(data.labels[first])} is out of range for "
                f"{len(names)} classes (labels must be 0..{len(names) - 1}); fix the labels "
                f"or the class_names"
            )
    shapes = {s.images.shape[1:] for s in splits.values()}
    if len(shapes) > 1:
        raise DataError(
            f"{path}: the splits' images differ in shape {sorted(shapes)}; they must match"
        )
    return Dataset(name=path.stem, splits=splits, class_names=names, source=source)


def _split(path: Path, x: np.ndarray, y: np.ndarray, x_key: str, y_key: str) -> Split:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(
            f"{path}: {x_key} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) with C 1 or 3"
        )
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y  # Keras's CIFAR has (N, 1)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path}: {y_key} has shape {y.shape} and dtype {y.dtype}; expected integer (N,)"
        )
    if len(x) != len(y):
        raise DataError(
            f"{path}: {x_key} has {len(x)} images but {y_key} has {len(y)} labels; "
            f"they must have the same length"
        )
    if len(x) == 0:
        raise DataError(f"{path}: {x_key} is empty")
    return Split(as_uint8(path, x, x_key), y.astype(np.int64))


def as_uint8(path: Path | str, x: np.ndarray, key: str) -> np.ndarray:
    """uint8 as it is; floats in [0, 1] scaled by 255; whole numbers 0..255 of any dtype as they
    are; anything else a DataError naming `path`, `key` and the range found."""
    if x.dtype == np.uint8:
        return x
    low, high = float(x.min()), float(x.max())
    if np.issubdtype(x.dtype, np.floating) and low >= 0 and high <= 1:
        return np.rint(x * 255).astype(np.uint8)
    if low >= 0 and high <= 255 and np.array_equal(x, np.rint(x)):
        return x.astype(np.uint8)
    raise DataError(
        f"{path}: {key} has dtype {x.dtype} with values {low:g}..{high:g}; expected uint8, "
        f"or floats in [0, 1]; rescale it to 0..255 and save as uint8"
    )
