"""The registry of standard data sets: where to get them, how to check and parse them.

SVHN is left out: its files are MATLAB .mat, which need scipy, and scipy is not a cnnkit
dependency. Convert it once to an .npz with x_train, y_train, x_test, y_test and pass that.

Checksums: MNIST's and Fashion-MNIST's SHA-256 are of the decompressed files, so raw, gzipped and
recompressed copies all verify. For KMNIST, CIFAR-10 and CIFAR-100 cnnkit knows no SHA-256 of the
content (no genuine copy was at hand to compute one; a checksum is never written down unseen).
Their publishers' MD5 of the gzipped download confirms a byte-identical .gz; any other copy (raw,
or recompressed by a distributor) is accepted on its structure alone: magic numbers, sizes,
counts, shapes and label range, which `cnnkit data info` reports as "content not verified".
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.data.dataset import Dataset, Split
from cnnkit.data.download import (
    RemoteFile,
    fetch_missing,
    find_local,
    read_verified,
    refusal,
    search_dirs,
)
from cnnkit.data.idx import parse_idx
from cnnkit.errors import DataError


@dataclass(frozen=True)
class Entry:
    """One standard data set."""

    name: str
    title: str
    parser: str  # "idx" or "cifar"
    files: dict[str, RemoteFile]  # role ("train-images", "cifar-archive", ...) -> file
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per-channel, [0, 1] units, train split: MNIST's measured (a test
    # pins it), the others the values commonly published with each data set
    std: tuple[float, ...]
    shape: tuple[int, int, int]
    counts: tuple[int, int]  # official (train, test) sizes
    licence: str


def _idx_files(base: str, md5: dict[str, str] | None = None, sha256: dict[str, str] | None = None):
    names = {
        "train-images": "train-images-idx3-ubyte",
        "train-labels": "train-labels-idx1-ubyte",
        "test-images": "t10k-images-idx3-ubyte",
        "test-labels": "t10k-labels-idx1-ubyte",
    }
    return {
        role: RemoteFile(
            name,
            tuple(f"{b}{name}.gz" for b in base.split()),
            sha256=(sha256 or {}).get(role),
            md5_gz=(md5 or {}).get(role),
        )
        for role, name in names.items()
    }


_CIFAR100_FINE = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
]

REGISTRY: dict[str, Entry] = {
    "mnist": Entry(
        "mnist",
        "MNIST handwritten digits (LeCun, Cortes and Burges)",
        "idx",
        # yann.lecun.com now refuses most downloads; PyTorch's S3 mirror serves the same files.
        _idx_files(
            "https://ossci-datasets.s3.amazonaws.com/mnist/ http://yann.lecun.com/exdb/mnist/",
            sha256={
                "train-images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "train-labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "test-images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "test-labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            },
        ),
        tuple("0123456789"),
        (0.1307,),  # computed over the 60,000 training images; pinned by a test
        (0.3081,),
        (28, 28, 1),
        (60000, 10000),
        "CC BY-SA 3.0",
    ),
    "fashion-mnist": Entry(
        "fashion-mnist",
        "Fashion-MNIST (Zalando Research)",
        "idx",
        # Content SHA-256 computed here from Debian's dataset-fashion-mnist (0.0~git20200523),
        # whose gzips were recompressed (other MD5s than the publisher's); the same four values
        # appear in independent projects that derived them from gzips matching the publisher's MD5.
        _idx_files(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            sha256={
                "train-images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "train-labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "test-images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "test-labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            },
        ),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
        + ("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (0.2860,),
        (0.3530,),
        (28, 28, 1),
        (60000, 10000),
        "MIT",
    ),
    "kmnist": Entry(
        "kmnist",
        "Kuzushiji-MNIST (ROIS-CODH)",
        "idx",
        _idx_files(
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            md5={
                "train-images": "bdb82020997e1d708af4cf47b453dcf7",
                "train-labels": "e144d726b3acfaa3e44228e80efcd344",
                "test-images": "5c965bf0a639b31b8f53240b1b52f4d7",
                "test-labels": "7320c461ea6c1c855c0b718fb2a4b134",
            },
        ),
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        (0.1918,),
        (0.3483,),
        (28, 28, 1),
        (60000, 10000),
        "CC BY-SA 4.0",
    ),
    "cifar10": Entry(
        "cifar10",
        "CIFAR-10 (Krizhevsky, 2009)",
        "cifar",
        {
            "archive": RemoteFile(
                "cifar-10-binary.tar",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                md5_gz="c32a1d4ab5d03f1284b67883e8d87530",
            )
        },
        ("airplane", "automobile", "bird", "cat", "deer")
        + ("dog", "frog", "horse", "ship", "truck"),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        (32, 32, 3),
        (50000, 10000),
        "no licence stated by the authors",
    ),
    "cifar100": Entry(
        "cifar100",
        "CIFAR-100, fine labels (Krizhevsky, 2009)",
        "cifar",
        {
            "archive": RemoteFile(
                "cifar-100-binary.tar",
                ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",),
                md5_gz="03b5dce01913d631647c71ecec9e9cb8",
            )
        },
        tuple(_CIFAR100_FINE),
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        (32, 32, 3),
        (50000, 10000),
        "no licence stated by the authors",
    ),
}

# Known names that cannot be loaded, and why: `open_source` says so instead of "unknown".
UNAVAILABLE = {
    "svhn": "SVHN's files are MATLAB .mat, which need scipy, and scipy is not a cnnkit dependency; "
    "convert it once to an .npz with x_train, y_train, x_test, y_test and pass that path",
}

_CIFAR_MEMBERS = {  # split -> archive members, label bytes per record
    "cifar10": (
        {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
        1,
    ),
    "cifar100": ({"train": ["train.bin"], "test": ["test.bin"]}, 2),
}


def load_registry(
    name: str, splits: tuple[str, ...], *, data_dir=None, progress: bool = True
) -> Dataset:
    """Read `splits` of registry data set `name`, downloading whatever is missing.

    Every file's decompressed content is checked against its SHA-256 where one is known, and
    every file's structure always (magic numbers, counts, shapes, label range).
    """
    entry = REGISTRY[name]
    dirs = search_dirs(name, data_dir)
    roles = [r for r in entry.files if entry.parser == "cifar" or r.split("-")[0] in splits]
    local = {role: find_local(entry.files[role], dirs) for role in roles}
    missing = [entry.files[role] for role, path in local.items() if path is None]
    fetched = {}
    if missing:
        dest = Path(data_dir) if data_dir is not None else _writable(dirs[-2:])
        fetched = fetch_missing(name, missing, dest, progress=progress)
    found = {role: path or fetched[entry.files[role].name] for role, path in local.items()}
    contents, records = {}, []
    for role in roles:
        contents[role], record = read_verified(found[role], entry.files[role])
        records.append(record)
    if entry.parser == "idx":
        result = {split: _idx_split(entry, split, contents, found) for split in splits}
    else:
        try:
            result = parse_cifar(bytes(contents["archive"]), name, splits)
        except DataError as error:
            raise refusal(found["archive"], str(error).removeprefix(f"{name}: ")) from None
        for split in splits:
            _check_count(entry, split, len(result[split]), found["archive"])
            _check_labels(entry, result[split].labels, found["archive"])
    notes = [f"{entry.title}; licence: {entry.licence}", verification_note(entry, records)]
    if entry.parser != "idx":  # SVHN is the 32x32 colour set people look for beside CIFAR's
        notes += [
            f"{other} is left out of the registry: {why}" for other, why in UNAVAILABLE.items()
        ]
    return Dataset(
        name=name,
        splits=result,
        class_names=list(entry.class_names),
        source=name,
        files=records,
        known_stats=(list(entry.mean), list(entry.std)),
        notes=notes,
    )


def _idx_split(entry: Entry, split: str, contents: dict, found: dict[str, Path]) -> Split:
    """One split's images and labels from their IDX files, structure checked."""
    arrays = {}
    for kind, ndim in (("images", 3), ("labels", 1)):
        role, path = f"{split}-{kind}", found[f"{split}-{kind}"]
        try:
            arrays[kind] = parse_idx(contents[role], str(path), ndim)
        except DataError as error:
            raise refusal(path, str(error).removeprefix(f"{path}: ")) from None
    images, labels = arrays["images"], arrays["labels"]
    if images.shape[1:] != entry.shape[:2]:
        height, width = entry.shape[:2]
        raise refusal(
            found[f"{split}-images"],
            f"images of {images.shape[1]}x{images.shape[2]}, expected {height}x{width} for "
            f"{entry.name}; this is not {entry.name}'s {split} images file",
        )
    _check_count(entry, split, len(images), found[f"{split}-images"])
    _check_count(entry, split, len(labels), found[f"{split}-labels"])
    _check_labels(entry, labels, found[f"{split}-labels"])
    return Split(images[..., None], labels.astype(np.int64))


def _check_count(entry: Entry, split: str, count: int, path: Path) -> None:
    expected = entry.counts[0 if split == "train" else 1]
    if count != expected:
        raise refusal(
            path,
            f"{count:,} records, expected {expected:,} for {entry.name}'s {split} split; "
            f"this is not {entry.name}'s {split} file, or it is truncated",
        )


def _check_labels(entry: Entry, labels: np.ndarray, path: Path) -> None:
    top = int(labels.max(initial=0))
    if top >= len(entry.class_names):
        raise refusal(
            path,
            f"label {top} is out of range for {entry.name}'s {len(entry.class_names)} classes "
            f"(0..{len(entry.class_names) - 1}); the file is corrupt or not {entry.name}'s",
        )


def verification_note(entry: Entry, records: list[dict]) -> str:
    """One line on what was verified: a checksum per file, or the structure only."""
    verified = [r for r in records if r["verified"]]
    height, width, _ = entry.shape
    structure = (
        f"IDX headers, counts, {height}x{width} images, label range"
        if entry.parser == "idx"
        else "archive members, record sizes, counts, label range"
    )
    if len(verified) == len(records):
        checks = sorted({r["check"] for r in verified})
        return f"verified: {' / '.join(checks)} of all {len(records)} file(s)"
    unverified = ", ".join(Path(r["path"]).name for r in records if not r["verified"])
    return (
        f"content not verified for {unverified}: no SHA-256 of {entry.name}'s content is known "
        f"to cnnkit; structure checked ({structure})"
    )


def _writable(candidates: list[Path]) -> Path:
    """$CNNKIT_DATA/<name> if it can be written, else the cache (a shared data dir may be read-only)."""
    for directory in candidates:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return directory
    return candidates[-1]


def parse_cifar(archive: bytes, name: str, splits: tuple[str, ...]) -> dict[str, Split]:
    """CIFAR binary records (label byte(s), then 3072 bytes of R, G, B planes) from the .tar."""
    members, label_bytes = _CIFAR_MEMBERS[name]
    record = label_bytes + 3072
    try:
        tar = tarfile.open(fileobj=io.BytesIO(archive))  # noqa: SIM115 - in memory, nothing to close
    except tarfile.TarError as error:
        raise DataError(f"{name}: the archive is not a valid .tar ({error})") from None
    by_base = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
    result = {}
    for split in splits:
        parts = []
        for member in members[split]:
            if member not in by_base:
                raise DataError(f"{name}: the archive lacks {member}")
            data = tar.extractfile(by_base[member]).read()  # type: ignore[union-attr]
            if len(data) % record:
                raise DataError(
                    f"{name}: {member} is {len(data):,} bytes, not a whole number of "
                    f"{record}-byte records; the archive is corrupt"
                )
            parts.append(np.frombuffer(data, np.uint8).reshape(-1, record))
        rows = np.concatenate(parts)
        images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # -> NHWC
        labels = rows[:, label_bytes - 1].astype(np.int64)  # CIFAR-100: the fine label is last
        result[split] = Split(np.ascontiguousarray(images), labels)
    return result
