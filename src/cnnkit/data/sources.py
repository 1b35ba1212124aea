"""open_source: one entry point from a --data SOURCE string to a Dataset in memory."""

from __future__ import annotations

import difflib
import hashlib
import os
from importlib import resources
from pathlib import Path

from cnnkit.data.dataset import SPLIT_NAMES, Dataset, Split
from cnnkit.data.images import check_shape, fit_images
from cnnkit.errors import DataError

DEFAULT_SOURCE = "mnist-mini"
MINI_STATS = ([0.1307], [0.3081])  # MNIST's; the subset is stratified, its own stats agree to 1e-2


def mini_path() -> Path:
    """The embedded mnist-mini archive shipped inside the package."""
    return Path(str(resources.files("cnnkit") / "datasets" / "mnist-mini.npz"))


def open_source(
    source: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    strict: bool = False,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    resize: str = "letterbox",
    progress: bool = True,
) -> Dataset:
    """Read a data source: a registry name ('mnist', 'mnist:test'), 'mnist-mini' (the default),
    an image folder or an .npz path. `size` (H, W) and `channels` fit every image to the model.
    """
    from cnnkit.data.registry import REGISTRY, UNAVAILABLE

    source = DEFAULT_SOURCE if source is None else str(source)
    if size is not None or channels is not None:
        check_shape((*(size or (1, 1)), channels or 1), resize)
    path = Path(source).expanduser()
    if path.exists():
        dataset = _open_path(path, source, strict, size, channels, resize, progress)
    elif os.sep in source or "/" in source or path.suffix.lower() == ".npz":
        parent = next((p for p in path.parents if p.exists()), None)
        raise DataError(
            f"--data {source!r}: no such file or folder (nearest existing parent: {parent}); "
            f"check the path, or give a data set name such as mnist"
        )
    else:
        name, _, split = source.partition(":")
        splits = _splits(source, split)
        if name == DEFAULT_SOURCE:
            dataset = _open_mini(source, splits)
        elif name in REGISTRY:
            from cnnkit.data.registry import load_registry

            dataset = load_registry(name, splits, data_dir=data_dir, progress=progress)
            dataset.source = source
        elif name in UNAVAILABLE:
            raise DataError(f"--data {name}: not available: {UNAVAILABLE[name]}")
        else:
            known = [*REGISTRY, DEFAULT_SOURCE]
            close = difflib.get_close_matches(name, known + list(UNAVAILABLE), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DataError(
                f"--data {source!r}: not a data set name, folder or .npz file; {hint}"
                f"known names: {', '.join(known)}"
            )
    if size is not None or channels is not None:
        height, width, have = dataset.shape
        shape = (*(size or (height, width)), channels or have)
        for split in dataset.splits.values():
            split.images = fit_images(split.images, shape, resize)
    return dataset


def _splits(source: str, split: str) -> tuple[str, ...]:
    if not split:
        return ("train", "test")
    if split not in ("train", "test"):
        raise DataError(
            f"--data {source!r}: unknown split {split!r}; use {source.split(':')[0]}:train "
            f"or {source.split(':')[0]}:test (or no suffix for both)"
        )
    return (split,)


def _open_path(path, source, strict, size, channels, resize, progress) -> Dataset:
    if path.is_dir():
        from cnnkit.data.folder import load_folder

        return load_folder(
            path,
            source,
            strict=strict,
            size=size,
            channels=channels,
            resize=resize,
            progress=progress,
        )
    if path.suffix.lower() == ".npz":
        from cnnkit.data.npz import load_npz

        return load_npz(path, source)
    raise DataError(
        f"--data {source!r}: a file of type {path.suffix or '(none)'!r}; expected a folder of "
        f"class folders, an .npz archive, or a data set name such as mnist"
    )


def _open_mini(source: str, splits: tuple[str, ...]) -> Dataset:
    from cnnkit.data.npz import load_npz

    path = mini_path()
    dataset = load_npz(path, source)
    dataset.name = DEFAULT_SOURCE
    dataset.splits = {name: split for name, split in dataset.splits.items() if name in splits}
    dataset.known_stats = MINI_STATS
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    dataset.files = [
        {
            "path": str(path),
            "sha256": digest,
            "verified": True,
            "note": "embedded in the cnnkit package (see datasets/README.md)",
        }
    ]
    return dataset


__all__ = ["SPLIT_NAMES", "Dataset", "Split", "open_source"]
