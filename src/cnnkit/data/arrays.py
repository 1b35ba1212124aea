"""Arrays in memory as a data source: `cnnkit.fit((x, y))` without writing a file.

    dataset = arrays_dataset((x, y), test=(x_test, y_test), class_names=["cat", "dog"])
    describe(dataset)        # "<arrays 1000x28x28x1>": what a run's manifest records as its data

Images are (N, H, W) or (N, H, W, C) with C 1 or 3, NHWC as NumPy and Keras hold them (not
torch's NCHW). Pixel values follow the .npz rule (`cnnkit.data.npz.as_uint8`), one home for
both: uint8 as it is, floats in [0, 1] scaled by 255, whole numbers 0..255 of any dtype (a
float32 copy of uint8 images) as they are; anything else is refused rather than guessed.
Labels are integers 0..K-1, (N,) or (N, 1). A run trained from arrays cannot reopen them:
`evaluate` and `report` then ask for --data, and `--resume` is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.data.dataset import Dataset, Split
from cnnkit.data.npz import as_uint8
from cnnkit.errors import DataError
from cnnkit.train_config import ARRAYS_PREFIX

WHERE = "cnnkit.fit"  # the name errors start with: arrays come from a Python call


def is_arrays(data: Any) -> bool:
    """True for a (x, y) pair of arrays (or array-likes), as `cnnkit.fit` takes them."""
    return isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], str)


def arrays_split(x: Any, y: Any, name: str = "x") -> Split:
    """One split from images `x` and labels `y`; DataError naming the shapes when they do not fit."""
    x, y = np.asarray(x), np.asarray(y)
    label = "y" if name == "x" else f"{name}'s y"
    if x.ndim == 3:
        x = x[..., None]  # (N, H, W) -> (N, H, W, 1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(
            f"{WHERE}: images {name} have shape {x.shape}; expected (N, H, W) or (N, H, W, C) "
            f"with C 1 or 3 (channels last; for torch's (N, C, H, W) pass x.transpose(0, 2, 3, 1))"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)  # Keras's (N, 1)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{WHERE}: labels {label} have shape {y.shape} and dtype {y.dtype}; expected "
            f"integer class indices of shape ({len(x)},)"
        )
    if len(x) != len(y):
        raise DataError(
            f"{WHERE}: {len(x)} images {name} {x.shape} but {len(y)} labels {label} {y.shape}; "
            f"give one label per image"
        )
    if len(x) == 0:
        raise DataError(f"{WHERE}: images {name} {x.shape} hold no images")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{WHERE}: images {name} have dtype {x.dtype}; expected uint8 or floats")
    return Split(as_uint8(WHERE, x, f"images {name}"), y.astype(np.int64))


def arrays_dataset(train: Any, test: Any = None, class_names: list[str] | None = None) -> Dataset:
    """A Dataset of `train` = (x, y) and optionally `test` = (x_test, y_test) in memory.

    `class_names` default to "0", "1", ... up to the largest label.
    """
    if not is_arrays(train):
        raise DataError(
            f"{WHERE}: data given as {type(train).__name__}; expected a pair (x, y) of arrays, "
            f"a data set name, a folder or an .npz path"
        )
    splits = {"train": arrays_split(*train)}
    if test is not None:
        if not is_arrays(test):
            raise DataError(f"{WHERE}: test= must be a pair (x_test, y_test) of arrays")
        x_test, y_test = test
        splits["test"] = arrays_split(x_test, y_test, name="x_test")
        if splits["test"].images.shape[1:] != splits["train"].images.shape[1:]:
            raise DataError(
                f"{WHERE}: images x {splits['train'].images.shape} and x_test "
                f"{splits['test'].images.shape} differ in image shape; they must match"
            )
    top = max(int(split.labels.max()) for split in splits.values()) + 1
    names = [str(name) for name in class_names] if class_names is not None else None
    names = names or [str(i) for i in range(top)]
    for split_name, split in splits.items():
        low = int(split.labels.min())
        if low < 0 or top > len(names):
            raise DataError(
                f"{WHERE}: {split_name} labels run {low}..{int(split.labels.max())}, but "
                f"{len(names)} class names allow only 0..{len(names) - 1}; fix the labels or "
                f"class_names"
            )
    dataset = Dataset(name="arrays", splits=splits, class_names=names, source="")
    dataset.source = describe(dataset)
    return dataset


def describe(dataset: Dataset) -> str:
    """ "<arrays 1000x28x28x1>": the train split's shape, as a run records data it cannot keep."""
    shape = "x".join(str(n) for n in dataset.splits["train"].images.shape)
    return f"{ARRAYS_PREFIX} {shape}>"
