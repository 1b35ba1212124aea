"""Data sets: Split and Dataset, per-channel statistics, the validation split and rank shards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.errors import ConfigError, DataError

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Split:
    """One split: in memory, or memory-mapped from a folder's cache (read when indexed)."""

    images: np.ndarray  # uint8 (N, H, W, C); an np.memmap or RowView when the split is on disk
    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """A data source read into memory, with what is needed to describe and reproduce it."""

    name: str  # "mnist", "mnist-mini", a folder's or file's name
    splits: dict[str, Split]  # keys among "train", "val", "test"
    class_names: list[str]
    source: str  # as the user gave it
    files: list[dict[str, Any]] = field(default_factory=list)  # {path, sha256, verified}
    skipped: list[dict[str, str]] = field(default_factory=list)  # {path, reason}
    known_stats: tuple[list[float], list[float]] | None = None  # registry's (mean, std) per channel
    notes: list[str] = field(default_factory=list)  # anything else `data info` should say

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(next(iter(self.splits.values())).images.shape[1:])

    def summary(self) -> dict[str, Any]:
        """Everything `cnnkit data info` shows, as plain JSON-ready data."""
        counts = {
            name: np.bincount(split.labels, minlength=len(self.class_names)).tolist()
            for name, split in self.splits.items()
        }
        return {
            "name": self.name,
            "source": self.source,
            "splits": {name: len(split) for name, split in self.splits.items()},
            "classes": [
                {"name": cls, "counts": {name: counts[name][i] for name in self.splits}}
                for i, cls in enumerate(self.class_names)
            ],
            "shape": list(self.shape),
            "channels": self.shape[2],
            "files": self.files,
            "skipped": self.skipped,
            "known_stats": list(map(list, self.known_stats)) if self.known_stats else None,
            "notes": self.notes,
        }


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, H, W, C) images, in [0, 1] units.

    Sums in float64 over chunks, so 60,000 MNIST images need a few MB, not a float copy of all.
    """
    if images.ndim != 4 or len(images) == 0:
        raise DataError(f"channel_stats needs uint8 (N, H, W, C) with N > 0, got {images.shape}")
    channels = images.shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096].reshape(-1, channels).astype(np.float64)
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    count = images.size // channels
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel would divide by zero
    return (mean / 255).tolist(), (std / 255).tolist()


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): `fraction` of every class goes to val, at least one where it can."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        take = int(round(len(members) * fraction))
        take = min(max(take, 1), len(members) - 1) if len(members) > 1 else 0
        val.append(members[:take])
        train.append(members[take:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def split_validation(
    dataset: Dataset, val: str | float | None, seed: int
) -> tuple[Split, Split | None]:
    """(train, val) for training: `val` is a fraction (stratified, seeded), 'val', 'test' or None.

    >>> train, val = split_validation(dataset, 0.1, seed=0)   # 10% of each class held out
    """
    if "train" not in dataset.splits:
        raise DataError(
            f"{dataset.source}: has no train split (only {', '.join(dataset.splits)}); "
            f"give the whole data set (e.g. 'mnist' rather than 'mnist:test') to train"
        )
    train = dataset.splits["train"]
    if val is None or val == "none":
        return train, None
    if isinstance(val, str) and val not in ("val", "test"):
        try:
            val = float(val)
        except ValueError:
            raise ConfigError(
                f"--val {val!r} is not understood; use a fraction such as 0.1, "
                f"'val' (the source's own val folder), 'test' or 'none'"
            ) from None
    if isinstance(val, str):
        if val not in dataset.splits:
            raise DataError(
                f"{dataset.source}: --val {val} asks for a '{val}' split, but the source has only "
                f"{', '.join(dataset.splits)}; use --val 0.1 to hold out 10% of train instead"
            )
        return train, dataset.splits[val]
    if not 0.0 < float(val) < 1.0:
        raise ConfigError(f"--val-split {val!r} must be a fraction between 0 and 1, e.g. 0.1")
    train_idx, val_idx = stratified_split(train.labels, float(val), seed)
    if len(val_idx) == 0:
        raise DataError(
            f"{dataset.source}: each class has 1 image, and a validation split needs at least "
            f"2 per class (one to train on, one to check); add images or use --val none"
        )
    return _take(train, train_idx), _take(train, val_idx)


class RowView:
    """Rows `index` of a memory-mapped (N, ...) array, read only when indexed.

    Fancy indexing a memory map reads every row it names into RAM; a validation split of a split
    on disk is this view instead, so it stays on disk until the loader gathers a batch.
    """

    def __init__(self, base: np.ndarray, index: np.ndarray) -> None:
        self.base, self.index = base, np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index), *base.shape[1:])
        self.dtype, self.ndim = base.dtype, base.ndim
        self.size = int(np.prod(self.shape))
        self.nbytes = self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.base[self.index[key]]  # sorted rows in, one read in file order

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.base[self.index], dtype=dtype)

    def rows(self, start: int, stop: int) -> RowView:
        return RowView(self.base, self.index[start:stop])


def _take(split: Split, index: np.ndarray) -> Split:
    """The rows `index` of `split`: copied when in memory, a RowView when memory-mapped."""
    images: np.ndarray | RowView = split.images
    if isinstance(images, RowView):
        images = RowView(images.base, images.index[index])
    elif isinstance(images, np.memmap):
        images = RowView(images, index)
    else:
        images = images[index]
    return Split(images, split.labels[index])  # type: ignore[arg-type]


def shard_bounds(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank `rank`'s contiguous shard of `count` items; sizes differ by <= 1.

    The one home of how a global batch and a validation split are divided between ranks.
    >>> [shard_bounds(10, r, 3) for r in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    """
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise ConfigError(f"world_size={world_size!r} must be a whole number >= 1, e.g. 2")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < world_size:
        raise ConfigError(
            f"rank={rank!r} must be a whole number from 0 to world_size - 1 = {world_size - 1}"
        )
    return count * rank // world_size, count * (rank + 1) // world_size


def shard_split(split: Split, rank: int, world_size: int) -> Split:
    """Rank `rank`'s contiguous range of `split`, for evaluation: each rank counts the correct
    predictions of its range, and the counts summed over ranks are those of the whole split.

    >>> shard = shard_split(val, rank, world_size)   # then all_reduce(correct), all_reduce(count)
    """
    start, stop = shard_bounds(len(split), rank, world_size)
    images = split.images
    part = images.rows(start, stop) if isinstance(images, RowView) else images[start:stop]
    return Split(part, split.labels[start:stop])
