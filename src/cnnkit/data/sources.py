"""open_source: one entry point from a --data SOURCE string to a Dataset in memory."""

from __future__ import annotations

import difflib
import hashlib
import os
from importlib import resources
from pathlib import Path

from cnnkit.data.dataset import SPLIT_NAMES, Dataset, Split
from cnnkit.data.images import check_shape, fit_images
from cnnkit.errors import ConfigError, DataError

DEFAULT_SOURCE = "mnist-mini"
ROI_SUFFIX = ":roi"  # 'DIR:roi': GTSRB's folders, each image cropped to its region of interest
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
    roi: bool = False,
) -> Dataset:
    """Read a data source: a registry name ('mnist', 'mnist:test'), 'mnist-mini' (the default),
    an image folder, GTSRB's folders or an .npz path. `size` (H, W) and `channels` fit every
    image to the model. `roi` (or the suffix 'DIR:roi') crops GTSRB's images to their signs.
    """
    source = DEFAULT_SOURCE if source is None else str(source)
    if size is not None or channels is not None:
        check_shape((*(size or (1, 1)), channels or 1), resize)
    path = Path(source).expanduser()
    if not path.exists() and source.endswith(ROI_SUFFIX):
        # The suffix keeps the choice in the source string, so a run's manifest reopens it alike.
        path, roi = source_folder(source) or path, True
    if path.exists():
        options = {"strict": strict, "size": size, "channels": channels, "resize": resize}
        dataset = _open_path(path, source, roi=roi, progress=progress, **options)
    elif os.sep in source or "/" in source or path.suffix.lower() == ".npz":
        parent = next((p for p in path.parents if p.exists()), None)
        raise DataError(
            f"--data {source!r}: no such file or folder (nearest existing parent: {parent}); "
            f"check the path, or give a data set name such as mnist"
        )
    elif roi:
        raise ConfigError(
            f"--data {source!r}: cropping to the region of interest (--roi-crop, roi=True) "
            f"needs a folder in GTSRB's layout; drop the option for a data set name"
        )
    else:
        dataset = _open_name(source, data_dir, progress)
    if size is not None or channels is not None:
        height, width, have = dataset.shape
        shape = (*(size or (height, width)), channels or have)
        for split in dataset.splits.values():
            split.images = fit_images(split.images, shape, resize)
    return dataset


def source_folder(source: str) -> Path | None:
    """The folder that `source` names ('DIR', or 'DIR:roi' for GTSRB's crops), else None."""
    path = Path(source).expanduser()
    if not path.exists() and source.endswith(ROI_SUFFIX):
        path = Path(source[: -len(ROI_SUFFIX)]).expanduser()
    return path if path.is_dir() else None


def _open_name(source: str, data_dir: str | os.PathLike | None, progress: bool) -> Dataset:
    """'mnist-mini' or a registry name, with an optional ':train' or ':test'."""
    from cnnkit.data.registry import REGISTRY, UNAVAILABLE

    name, _, split = source.partition(":")
    splits = _splits(source, split)
    if name == DEFAULT_SOURCE:
        return _open_mini(source, splits)
    if name in REGISTRY:
        from cnnkit.data.registry import load_registry

        dataset = load_registry(name, splits, data_dir=data_dir, progress=progress)
        dataset.source = source
        return dataset
    if name in UNAVAILABLE:
        raise DataError(f"--data {name}: not available: {UNAVAILABLE[name]}")
    known = [*REGISTRY, DEFAULT_SOURCE]
    close = difflib.get_close_matches(name, known + list(UNAVAILABLE), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise DataError(
        f"--data {source!r}: not a data set name, folder or .npz file; {hint}"
        f"known names: {', '.join(known)}"
    )


def _splits(source: str, split: str) -> tuple[str, ...]:
    if not split:
        return ("train", "test")
    if split not in ("train", "test"):
        raise DataError(
            f"--data {source!r}: unknown split {split!r}; use {source.split(':')[0]}:train "
            f"or {source.split(':')[0]}:test (or no suffix for both)"
        )
    return (split,)


def _open_path(path: Path, source: str, *, roi: bool, **options) -> Dataset:
    from cnnkit.data.gtsrb import PICKLE_SUFFIXES, find_gtsrb, load_gtsrb, pickle_refusal

    if path.is_dir():
        from cnnkit.data.folder import load_folder

        layout = find_gtsrb(path)
        if layout is not None:
            return load_gtsrb(layout, path, source, roi=roi, **options)
        if roi:
            raise ConfigError(
                f"--data {source!r}: cropping to the region of interest (--roi-crop, roi=True) "
                f"needs GTSRB's layout (class folders 00000, ... with GT-00000.csv, ...); "
                f"this is a plain image folder, drop the option"
            )
        entries = list(os.scandir(path))
        pickles = sorted(e.path for e in entries if Path(e.name).suffix in PICKLE_SUFFIXES)
        if pickles and not any(e.is_dir() and not e.name.startswith(".") for e in entries):
            raise pickle_refusal(Path(pickles[0]))
        return load_folder(path, source, **options)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise pickle_refusal(path)
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
