"""Folders of images: root/<class>/*.png, or root/train/<class>/... beside root/val/ or root/test/.

Images are decoded once, in parallel, fitted to one shape, and cached as uint8 arrays keyed by
every file's path, size and modification time, so a second load reads one .npz and a changed,
added or removed file invalidates the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnkit.data.dataset import Dataset, Split
from cnnkit.data.download import Progress, cache_root
from cnnkit.data.images import DATA_EXTENSIONS, DATA_FORMATS, fit_array, open_image, to_array
from cnnkit.errors import DataError, ImageError

_CACHE_VERSION = 2  # bump when decoding changes, so old caches are not reused
_COLOUR_MODES = {"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
_EXTENSION_SET = frozenset(DATA_EXTENSIONS)
_CHUNK = 64  # files per task: amortises the thread pool's per-task cost over small images


def load_folder(
    root: Path,
    source: str,
    *,
    strict: bool = False,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    resize: str = "letterbox",
    progress: bool = True,
) -> Dataset:
    """Read an image folder; `size`/`channels` default to the most common size and 1 or 3."""
    layout = _layout(root)
    class_names = _classes(layout["train"], root)
    listing, skipped = _list_files(layout, class_names, root)
    return load_listing(
        root, source, class_names, listing, skipped, strict, progress,
        size=size, channels=channels, resize=resize,
    )  # fmt: skip


def load_listing(
    root: Path,
    source: str,
    class_names: list[str],
    listing: list[tuple[str, int, str, int, int]],
    skipped: list[dict[str, str]],
    strict: bool,
    progress: bool,
    *,
    boxes: list[tuple[int, int, int, int]] | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    resize: str = "letterbox",
) -> Dataset:
    """Decode `listing` [(split, label, path, bytes, mtime_ns)], or read it from the cache.

    `boxes` (one (left, top, right, bottom) per item, right and bottom exclusive) crops each
    image before it is fitted; image folders have none, GTSRB's regions of interest are boxes.
    """
    key = _cache_key(root, listing, size, channels, resize, boxes)
    cache = cache_root() / "folders" / f"{key}.npz"
    dataset = _read_cache(cache, root, source, class_names)
    if dataset is None:
        options = (size, channels, resize, boxes, progress)
        dataset = _decode(root, source, listing, class_names, skipped, *options)
        _write_cache(cache, dataset)
    bad = [s for s in dataset.skipped if not s["reason"].startswith("extension")]
    if strict and bad:  # files that are not images by name are only reported, even when strict
        first = bad[0]
        raise ImageError(
            f"{first['path']}: {first['reason']} ({len(bad)} bad image file(s) in {root}; "
            f"--strict makes them fatal: fix or remove them, or drop --strict to skip them)"
        )
    return dataset


def _visible_dirs(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _layout(root: Path) -> dict[str, Path]:
    """Split name -> folder: root/train + root/val|test, or root alone as the train split."""
    subdirs = _visible_dirs(root)
    if "train" in subdirs and ({"val", "test"} & set(subdirs)):
        return {s: root / s for s in ("train", "val", "test") if s in subdirs}
    return {"train": root}


def _classes(train_dir: Path, root: Path) -> list[str]:
    names = _visible_dirs(train_dir)
    if not names:
        loose = [
            e.name for e in os.scandir(train_dir) if e.is_file() and not e.name.startswith(".")
        ]
        what = f"{len(loose)} file(s) but no class folders" if loose else "an empty folder"
        raise DataError(
            f"{train_dir}: {what}; expected one folder per class, e.g. "
            f"{root}/cat/*.png and {root}/dog/*.png (or {root}/train/<class>/ beside {root}/val/)"
        )
    if len(names) == 1:
        raise DataError(
            f"{train_dir}: only one class folder ({names[0]!r}); a classifier needs at least two "
            f"classes, one folder each"
        )
    return names


def _list_files(layout, class_names, root):
    """[(split, label, path, size, mtime_ns)] sorted, and non-image files as skipped.

    os.scandir and plain strings, not pathlib: listing 10,000 files is then ~25 ms, which is
    most of a cached load.
    """
    listing: list[tuple[str, int, str, int, int]] = []  # (split, label, path, size, mtime_ns)
    skipped: list[dict[str, str]] = []  # {path, reason}
    for split, directory in layout.items():
        extra = set(_visible_dirs(directory)) - set(class_names)
        if extra:
            raise DataError(
                f"{directory}: class folder(s) {sorted(extra)} are not in {layout['train']} "
                f"(classes {class_names}); every split needs the same class names"
            )
        for label, name in enumerate(class_names):
            class_dir = os.path.join(directory, name)
            before = len(listing)
            if os.path.isdir(class_dir):
                _scan(class_dir, split, label, listing, skipped)
            if len(listing) == before and split == "train":
                raise DataError(
                    f"{class_dir}: class folder with no images ({', '.join(DATA_EXTENSIONS)}); add "
                    f"images or remove the folder"
                )
    return listing, skipped


def _scan(folder: str, split: str, label: int, listing: list, skipped: list) -> None:
    """Append the images under `folder` (recursively, sorted, hidden names ignored)."""
    for entry in sorted(os.scandir(folder), key=attrgetter("name")):
        name = entry.name
        if name.startswith("."):
            continue
        if entry.is_dir():
            _scan(entry.path, split, label, listing, skipped)
            continue
        dot = name.rfind(".")
        extension = name[dot:].lower() if dot > 0 else ""
        if extension not in _EXTENSION_SET:
            reason = (
                f"extension {extension or '(none)'!r} is not one of {' '.join(DATA_EXTENSIONS)}"
            )
            skipped.append({"path": entry.path, "reason": reason})
            continue
        stat = entry.stat()  # ~6 us of a ~9 us entry on our VM: the floor of a cached load
        listing.append((split, label, entry.path, stat.st_size, stat.st_mtime_ns))


def _cache_key(root, listing, size, channels, resize, boxes) -> str:
    """Hash of the options and every file's split, class, path, size and mtime (not json: 10x faster)."""
    digest = hashlib.sha256(
        json.dumps([_CACHE_VERSION, str(root.resolve()), size, channels, resize]).encode()
    )
    if boxes is not None:
        digest.update(np.array(boxes, dtype=np.int64).tobytes())
    if listing:
        splits, labels, paths, sizes, mtimes = zip(*listing, strict=True)
        digest.update("\0".join(paths).encode())
        digest.update("\0".join(splits).encode())
        digest.update(np.array([labels, sizes, mtimes], dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


def _header(path: str) -> tuple[tuple[int, int], bool] | None:
    """(h, w) and whether the image is colour, from the header alone; None when unreadable."""
    try:
        with Image.open(path, formats=DATA_FORMATS) as image:
            return (image.height, image.width), image.mode in _COLOUR_MODES
    except Exception:  # noqa: BLE001 - the full decode reports the reason
        return None


def _decode(
    root, source, listing, class_names, skipped, size, channels, resize, boxes, progress
) -> Dataset:
    paths = [item[2] for item in listing]
    items = list(zip(paths, boxes or [None] * len(paths), strict=True))
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        if size is None or channels is None:
            size, channels = _default_shape(pool, root, paths, boxes, size, channels)
        target = (int(size[0]), int(size[1]))

        def work(chunk: list[tuple[str, Any]]) -> list[tuple[np.ndarray | str, Any]]:
            out: list[tuple[np.ndarray | str, Any]] = []
            for path, box in chunk:
                try:
                    image = _crop(open_image(path, DATA_FORMATS), box, path)
                    pixels = fit_array(to_array(image, channels), target, resize)
                    out.append((pixels, (image.height, image.width, image.mode in _COLOUR_MODES)))
                except ImageError as error:
                    out.append((str(error).split(": ", 1)[1], None))
            return out

        chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
        bar = (
            Progress(f"decoding {root}", len(paths), "images", 1)
            if progress and len(paths) > 2000
            else None
        )
        results: list[tuple[np.ndarray | str, Any]] = []
        for done in pool.map(work, chunks):
            results += done
            if bar:
                bar.update(len(results))
        if bar:
            bar.close()
    splits, skipped = _assemble(listing, results, target, channels, skipped, class_names)
    skipped.sort(key=lambda s: s["path"])
    decoded = sum(len(split) for split in splits.values())
    files = [{"path": str(root), "sha256": None, "verified": False}]
    files[0]["note"] = f"{decoded} images decoded"
    stats = [stat for _, stat in results if stat is not None]
    notes = variety_notes(stats, (*target, channels), resize)
    return Dataset(root.name, splits, class_names, source, files, skipped, notes=notes)


def _default_shape(pool, root, paths, boxes, size, channels):
    """The most common (h, w) (of the crops, with boxes) and 3 channels if any image is colour."""
    headers = list(pool.map(_header, paths))
    readable = [h for h in headers if h is not None]
    if not readable:
        raise DataError(f"{root}: none of the {len(paths)} image files can be read")
    if size is None:
        sizes = [(b[3] - b[1], b[2] - b[0]) for b in boxes] if boxes else [h[0] for h in readable]
        size = Counter(sizes).most_common(1)[0][0]
    if channels is None:
        channels = 3 if any(h[1] for h in readable) else 1
    return size, channels


def _crop(image: Image.Image, box: tuple[int, int, int, int] | None, path: str) -> Image.Image:
    """`image` cropped to `box` (left, top, right, bottom; right and bottom exclusive)."""
    if box is None:
        return image
    left, top = max(0, box[0]), max(0, box[1])
    right, bottom = min(image.width, box[2]), min(image.height, box[3])
    if right <= left or bottom <= top:
        raise ImageError(
            f"{path}: region of interest {tuple(box)} lies outside the "
            f"{image.width}x{image.height} image; fix its row in the CSV"
        )
    return image.crop((left, top, right, bottom))


def variety_notes(
    stats: list[tuple[int, int, bool]], shape: tuple[int, int, int], resize: str
) -> list[str]:
    """Notes when the images (h, w, colour) differ a lot: mixed grey and colour, sizes > 2x apart."""
    notes = []
    height, width, channels = shape
    colour = sum(1 for stat in stats if stat[2])
    if 0 < colour < len(stats):
        made = "RGB (grey replicated)" if channels == 3 else "grayscale ((R+G+B)/3)"
        notes.append(
            f"mixed modes: {len(stats) - colour:,} of {len(stats):,} images are grayscale and "
            f"{colour:,} colour; all were made {made}"
        )
    heights, widths = [s[0] for s in stats], [s[1] for s in stats]
    if stats and (max(heights) > 2 * min(heights) or max(widths) > 2 * min(widths)):
        by_area = sorted(stats, key=lambda s: s[0] * s[1])
        small, large = by_area[0], by_area[-1]
        notes.append(
            f"image sizes differ by more than 2x, from {small[1]}x{small[0]} to "
            f"{large[1]}x{large[0]} (width x height); all were fitted to {width}x{height} "
            f"({resize}), so small images are enlarged and large ones lose detail; "
            f"pass --input to choose the size"
        )
    return notes


def _assemble(listing, results, target, channels, skipped, class_names):
    good: dict[str, list[int]] = {}
    for i, ((split, _label, path, _, _), (result, _)) in enumerate(
        zip(listing, results, strict=True)
    ):
        if isinstance(result, str):
            skipped.append({"path": path, "reason": result})
        else:
            good.setdefault(split, []).append(i)
    splits = {}
    for split in dict.fromkeys(item[0] for item in listing):
        idx = good.get(split, [])
        images = np.empty((len(idx), *target, channels), dtype=np.uint8)
        for row, i in enumerate(idx):
            images[row] = results[i][0]
        labels = np.array([listing[i][1] for i in idx], dtype=np.int64)
        splits[split] = Split(images, labels)
    first = next(iter(splits))  # "train", or "test" for a test set read alone
    counts = np.bincount(splits[first].labels, minlength=len(class_names))
    if (counts == 0).any() and first == "train":
        name = class_names[int(np.flatnonzero(counts == 0)[0])]
        raise DataError(
            f"class {name!r}: every image in its train folder was unreadable; "
            f"{len(skipped)} file(s) skipped, first: {skipped[0]['path']}: {skipped[0]['reason']}"
        )
    return splits, skipped


def _read_cache(cache: Path, root: Path, source: str, class_names: list[str]) -> Dataset | None:
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as archive:
            meta: dict[str, Any] = json.loads(str(archive["meta"]))
            splits = {
                s: Split(archive[f"images_{s}"], archive[f"labels_{s}"]) for s in meta["splits"]
            }
    except (OSError, ValueError, KeyError):
        cache.unlink(missing_ok=True)  # unreadable: decode again rather than fail
        return None
    files, skipped = meta["files"], meta["skipped"]
    return Dataset(
        root.name, splits, class_names, source, files, skipped, notes=meta.get("notes", [])
    )


def _write_cache(cache: Path, dataset: Dataset) -> None:
    """Atomic: a temporary file beside the cache, renamed into place once complete."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=".", suffix=".npz.part", dir=cache.parent)
    except OSError:
        return  # a read-only home only costs the cache, not the load
    meta = {"splits": list(dataset.splits), "files": dataset.files, "skipped": dataset.skipped}
    meta["notes"] = dataset.notes
    arrays = {f"images_{s}": v.images for s, v in dataset.splits.items()}
    arrays |= {f"labels_{s}": v.labels for s, v in dataset.splits.items()}
    try:
        with os.fdopen(handle, "wb") as out:
            # Uncompressed: loads at disk speed. numpy's stub matches **arrays against its
            # `allow_pickle: bool` keyword, which no key here can be.
            np.savez(out, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
        os.replace(temp, cache)
    finally:
        Path(temp).unlink(missing_ok=True)
