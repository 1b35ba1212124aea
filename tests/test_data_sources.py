"""open_source over every kind of source: registry IDX files, mnist-mini, .npz and image folders."""

from __future__ import annotations

import gzip
import shutil
from dataclasses import replace

import numpy as np
import pytest

from cnnkit.data import channel_stats, open_source, split_validation
from cnnkit.data.idx import parse_idx
from cnnkit.data.registry import REGISTRY
from cnnkit.errors import ConfigError, DataError, ImageError
from data_helpers import (  # noqa: F401
    MNIST_FILES,
    bomb_png,
    digit_like,
    isolated_env,
    make_folder,
    need_mnist,
    png_bytes,
    truncated_jpeg,
)


# --- registry: real MNIST from IDX files, no network ------------------------------------------
def test_mnist_from_real_idx_files(monkeypatch):
    monkeypatch.setenv("CNNKIT_DATA", str(need_mnist()))
    dataset = open_source("mnist", progress=False)
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 60000, "test": 10000}
    assert dataset.shape == (28, 28, 1) and dataset.class_names == list("0123456789")
    train = dataset.splits["train"]
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert [f["verified"] for f in dataset.files] == [True] * 4
    # The registry's known statistics are the real ones, to 4 decimals.
    mean, std = channel_stats(train.images)
    assert dataset.known_stats == ([0.1307], [0.3081])
    assert round(mean[0], 4) == 0.1307 and round(std[0], 4) == 0.3081


def test_one_split_reads_only_its_files(tmp_path):
    shared = need_mnist()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(shared / "mnist" / name, tmp_path / name)
    dataset = open_source("mnist:test", data_dir=tmp_path, progress=False)
    assert list(dataset.splits) == ["test"] and len(dataset.splits["test"]) == 10000


def test_gzipped_copies_verify_against_the_decompressed_checksum(tmp_path):
    shared = need_mnist()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(tmp_path / f"{name}.gz", "wb", compresslevel=1) as out:
            out.write((shared / "mnist" / name).read_bytes())
    dataset = open_source("mnist:test", data_dir=tmp_path, progress=False)
    assert all(f["verified"] and f["path"].endswith(".gz") for f in dataset.files)
    assert int(dataset.splits["test"].labels[0]) == 7  # MNIST's first test digit is a 7


def test_user_file_with_a_bad_checksum_is_reported_and_left(tmp_path):
    shared = need_mnist()
    shutil.copy(shared / "mnist" / "t10k-images-idx3-ubyte", tmp_path)
    labels = bytearray((shared / "mnist" / "t10k-labels-idx1-ubyte").read_bytes())
    labels[100] = (labels[100] + 1) % 10  # still a valid IDX file, but not MNIST's
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(labels)
    with pytest.raises(
        DataError,
        match=r"t10k-labels-idx1-ubyte: checksum mismatch: expected ff7bcfd4.*left it in place",
    ):
        open_source("mnist:test", data_dir=tmp_path, progress=False)
    assert (tmp_path / "t10k-labels-idx1-ubyte").exists()


def test_cached_file_with_a_bad_checksum_is_deleted(tmp_path):
    cache = tmp_path / "cache" / "mnist"
    cache.mkdir(parents=True)
    shutil.copy(need_mnist() / "mnist" / "t10k-images-idx3-ubyte", cache)
    (cache / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 3]))
    with pytest.raises(DataError, match=r"checksum mismatch: .* deleted it; run again to download"):
        open_source("mnist:test", progress=False)
    assert not (cache / "t10k-labels-idx1-ubyte").exists()


@pytest.mark.parametrize(
    "data, ndim, match",
    [
        (
            bytes([0, 0, 8, 3, 0, 0, 0, 1]),
            1,
            r"labels: wrong IDX magic number 0x00000803, expected 0x00000801",
        ),
        (
            bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2]),
            1,
            r"labels: wrong size 10 bytes; its header declares shape \(3,\), which needs 11",
        ),
        (bytes([0, 0, 8]), 1, r"labels: 3 bytes is too short for an IDX file"),
    ],
)
def test_bad_idx_files(data, ndim, match):
    with pytest.raises(DataError, match=match):
        parse_idx(data, "labels", ndim)


@pytest.mark.parametrize(
    "source, error, match",
    [
        (
            "minst",
            DataError,
            r"--data 'minst': not a data set name, folder or \.npz file; did you mean 'mnist'\?",
        ),
        ("fashion_mnist", DataError, r"did you mean 'fashion-mnist'\?"),
        (
            "svhn",
            DataError,
            r"--data svhn: not available: SVHN's files are MATLAB \.mat, which need scipy",
        ),
        (
            "mnist:valid",
            DataError,
            r"--data 'mnist:valid': unknown split 'valid'; use mnist:train or mnist:test",
        ),
        ("no/such/folder", DataError, r"--data 'no/such/folder': no such file or folder"),
        ("missing.npz", DataError, r"--data 'missing.npz': no such file or folder"),
    ],
)
def test_bad_source_names(source, error, match):
    with pytest.raises(error, match=match):
        open_source(source, progress=False)


# --- mnist-mini: the embedded default ---------------------------------------------------------
def test_mnist_mini_is_the_default_and_stratified():
    dataset = open_source(progress=False)
    assert dataset.name == "mnist-mini"
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 10000, "test": 2000}
    assert np.bincount(dataset.splits["train"].labels).tolist() == [1000] * 10
    assert np.bincount(dataset.splits["test"].labels).tolist() == [200] * 10
    assert dataset.files[0]["path"].endswith("mnist-mini.npz")


def test_mnist_mini_images_are_real_mnist_images():
    shared = need_mnist()
    mini = open_source("mnist-mini:test", progress=False).splits["test"]
    full = parse_idx((shared / "mnist" / "t10k-images-idx3-ubyte").read_bytes(), "t10k", 3)
    rows = {full[i].tobytes() for i in range(len(full))}
    assert all(mini.images[i, ..., 0].tobytes() in rows for i in range(0, 2000, 97))


def test_size_and_channels_fit_every_split():
    dataset = open_source("mnist-mini", size=(32, 32), channels=3, progress=False)
    assert dataset.shape == (32, 32, 3)
    assert dataset.splits["test"].images.shape == (2000, 32, 32, 3)


# --- .npz archives ----------------------------------------------------------------------------
def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_npz_keras_layout(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    y = np.array([[0], [1], [2], [0], [1], [2]])  # Keras's CIFAR labels are (N, 1)
    path = _npz(
        tmp_path / "toy.npz",
        x_train=x,
        y_train=y,
        x_test=x[:3],
        y_test=y[:3],
        class_names=np.array(["a", "b", "c"]),
    )
    dataset = open_source(str(path), progress=False)
    assert dataset.class_names == ["a", "b", "c"] and dataset.shape == (8, 8, 3)
    assert dataset.splits["train"].labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_npz_floats_in_unit_range_become_uint8(tmp_path):
    x = np.full((2, 4, 4), 0.5, np.float32)
    path = _npz(tmp_path / "f.npz", x_train=x, y_train=np.array([0, 1]))
    assert open_source(str(path), progress=False).splits["train"].images.max() == 128


@pytest.mark.parametrize(
    "arrays, match",
    [
        (
            {"x_train": np.zeros((2, 4, 4), np.uint8)},
            r"missing key\(s\) \['y_train'\]; found \['x_train'\]; expected x_train, y_train",
        ),
        (
            {"x_train": np.zeros((2, 4, 4), np.uint8), "y_train": np.array([0, 1, 1])},
            r"x_train has 2 images but y_train has 3 labels",
        ),
        (
            {
                "x_train": np.zeros((2, 4, 4), np.uint8),
                "y_train": np.array([0, 5]),
                "class_names": np.array(["a", "b"]),
            },
            r"y_train\[1\] = 5 is out of range for 2 classes \(labels must be 0\.\.1\)",
        ),
        (
            {"x_train": np.zeros((2, 4, 4), np.uint8), "y_train": np.array([0, -1])},
            r"y_train\[1\] = -1 is out of range",
        ),
        (
            {
                "x_train": np.zeros((2, 4, 4), np.uint8),
                "y_train": np.array([0, 1]),
                "x_test": np.zeros((1, 4, 4), np.uint8),
            },
            r"has x_test but no y_test; give both or neither",
        ),
        (
            {"x_train": np.full((2, 4, 4), 300.0), "y_train": np.array([0, 1])},
            r"x_train has dtype float64 with values 300\.\.300; expected uint8",
        ),
        (
            {"x_train": np.zeros((2, 4), np.uint8), "y_train": np.array([0, 1])},
            r"x_train has shape \(2, 4\); expected \(N, H, W\) or \(N, H, W, C\)",
        ),
    ],
)
def test_bad_npz(tmp_path, arrays, match):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        open_source(str(path), progress=False)


def test_npz_that_is_not_an_archive(tmp_path):
    (tmp_path / "fake.npz").write_text("hello")
    with pytest.raises(DataError, match=r"fake\.npz: not a readable \.npz archive"):
        open_source(str(tmp_path / "fake.npz"), progress=False)


# --- validation split ---------------------------------------------------------------------------
def test_val_split_is_stratified_seeded_and_disjoint():
    dataset = open_source(progress=False)
    train, val = split_validation(dataset, 0.1, seed=3)
    assert len(val) == 1000 and len(train) == 9000
    assert np.bincount(val.labels).tolist() == [100] * 10
    again_train, again_val = split_validation(dataset, "0.1", seed=3)
    assert np.array_equal(val.images, again_val.images)
    other = split_validation(dataset, 0.1, seed=4)[1]
    assert not np.array_equal(val.labels, other.labels) or not np.array_equal(
        val.images, other.images
    )


def test_val_test_and_none():
    dataset = open_source(progress=False)
    assert split_validation(dataset, "test", 0)[1] is dataset.splits["test"]
    assert split_validation(dataset, None, 0)[1] is None


@pytest.mark.parametrize(
    "source, val, error, match",
    [
        (
            "mnist-mini",
            "val",
            DataError,
            r"--val val asks for a 'val' split, but the source has only train, test",
        ),
        (
            "mnist-mini",
            "half",
            ConfigError,
            r"--val 'half' is not understood; use a fraction such as 0\.1",
        ),
        ("mnist-mini", 1.5, ConfigError, r"--val-split 1\.5 must be a fraction between 0 and 1"),
        ("mnist-mini:test", 0.1, DataError, r"mnist-mini:test: has no train split \(only test\)"),
    ],
)
def test_bad_validation_choices(source, val, error, match):
    with pytest.raises(error, match=match):
        split_validation(open_source(source, progress=False), val, 0)


# --- image folders -----------------------------------------------------------------------------
def test_folder_of_class_folders(tmp_path):
    root = make_folder(tmp_path / "pets", {"cat": 3, "dog": 2})
    dataset = open_source(str(root), progress=False)
    assert dataset.class_names == ["cat", "dog"] and dataset.shape == (12, 12, 1)
    train = dataset.splits["train"]
    assert train.labels.tolist() == [0, 0, 0, 1, 1]
    assert train.images[3, 0, 0, 0] == 100  # dog/000.png encodes 100 in its first pixel


def test_folder_with_train_and_val(tmp_path):
    make_folder(tmp_path / "d" / "train", {"a": 2, "b": 2})
    make_folder(tmp_path / "d" / "val", {"a": 1, "b": 1})
    dataset = open_source(str(tmp_path / "d"), progress=False)
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 4, "val": 2}
    assert len(split_validation(dataset, "val", 0)[1]) == 2


def test_folder_mixed_sizes_and_modes_fit_the_most_common(tmp_path):
    root = make_folder(tmp_path / "m", {"a": 2, "b": 1}, size=12)
    rgba = np.zeros((30, 20, 4), np.uint8)
    (root / "b" / "big.png").write_bytes(png_bytes(rgba))
    dataset = open_source(str(root), progress=False)
    assert dataset.shape == (12, 12, 3)  # colour because one image is colour
    assert open_source(str(root), size=(16, 16), channels=1, progress=False).shape == (16, 16, 1)


def test_folder_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "c", {"a": 2, "b": 2})
    first = open_source(str(root), progress=False)
    caches = list((tmp_path / "cache" / "folders").glob("*.json"))
    assert len(caches) == 1

    import cnnkit.data.folder as folder

    monkeypatch.setattr(folder, "open_image", lambda path: pytest.fail("decoded despite the cache"))
    second = open_source(str(root), progress=False)
    assert np.array_equal(first.splits["train"].images, second.splits["train"].images)
    monkeypatch.undo()
    monkeypatch.setenv("CNNKIT_CACHE", str(tmp_path / "cache"))

    (root / "a" / "000.png").write_bytes(
        png_bytes(np.full((12, 12), 77, np.uint8))
    )  # a changed file
    third = open_source(str(root), progress=False)
    assert third.splits["train"].images[0, 0, 0, 0] == 77


def test_bad_files_are_skipped_and_reported(tmp_path):
    root = make_folder(tmp_path / "b", {"a": 2, "b": 2})
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "a" / "cut.jpg").write_bytes(truncated_jpeg())
    (root / "b" / "text.png").write_text("not an image")
    (root / "b" / "bomb.png").write_bytes(bomb_png())
    (root / "b" / "readme.txt").write_text("notes")
    dataset = open_source(str(root), progress=False)
    assert len(dataset.splits["train"]) == 4
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in dataset.skipped}
    assert reasons.keys() == {"zero.png", "cut.jpg", "text.png", "bomb.png", "readme.txt"}
    assert reasons["zero.png"].startswith("empty file")
    assert reasons["cut.jpg"].startswith("truncated or corrupt")
    assert reasons["bomb.png"].startswith("refused as a possible decompression bomb")
    assert reasons["readme.txt"].startswith("extension '.txt' is not one of")
    with pytest.raises(
        ImageError,
        match=r"a/cut\.jpg: truncated or corrupt .*\(4 bad image file\(s\) in .*--strict makes them fatal",
    ):
        open_source(str(root), strict=True, progress=False)  # the readme is reported, not fatal


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda root: root.mkdir(), r"an empty folder; expected one folder per class"),
        (
            lambda root: make_folder(root, {"only": 2}),
            r"only one class folder \('only'\); a classifier needs at least two",
        ),
        (
            lambda root: (make_folder(root, {"a": 2}), (root / "b").mkdir()),
            r"b: class folder with no images",
        ),
        (
            lambda root: (
                root.mkdir(),
                (root / "x.png").write_bytes(png_bytes(np.zeros((2, 2), np.uint8))),
            ),
            r"1 file\(s\) but no class folders",
        ),
    ],
)
def test_bad_folders(tmp_path, build, match):
    root = tmp_path / "f"
    build(root)
    with pytest.raises(DataError, match=match):
        open_source(str(root), progress=False)


def test_class_whose_images_are_all_bad(tmp_path):
    root = make_folder(tmp_path / "g", {"a": 2})
    (root / "b").mkdir()
    (root / "b" / "zero.png").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"class 'b': every image in its train folder was unreadable"
    ):
        open_source(str(root), progress=False)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nothing half-written


def test_val_class_not_in_train(tmp_path):
    make_folder(tmp_path / "h" / "train", {"a": 1, "b": 1})
    make_folder(tmp_path / "h" / "val", {"a": 1, "zebra": 1})
    with pytest.raises(DataError, match=r"class folder\(s\) \['zebra'\] are not in .*train"):
        open_source(str(tmp_path / "h"), progress=False)


def test_a_plain_file_is_not_a_source(tmp_path):
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(
        DataError, match=r"a file of type '\.csv'; expected a folder of class folders, an \.npz"
    ):
        open_source(str(tmp_path / "x.csv"), progress=False)


# --- CIFAR binary archives (a synthetic archive in the official layout) -------------------------
def _cifar_tar(path, members: dict[str, bytes]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _records(labels: list[int], label_bytes: int = 1) -> bytes:
    out = bytearray()
    for label in labels:
        out += bytes([label] * label_bytes)
        pixels = np.zeros((3, 32, 32), np.uint8)
        pixels[0], pixels[1], pixels[2] = 10, 20, 30 + label  # R, G, B planes
        out += pixels.tobytes()
    return bytes(out)


def test_cifar10_binary_archive(tmp_path, monkeypatch):
    # The registry checks the official counts; this small archive stands for a 10 + 1 record one.
    monkeypatch.setitem(REGISTRY, "cifar10", replace(REGISTRY["cifar10"], counts=(10, 1)))
    members = {f"data_batch_{i}.bin": _records([i, i + 1]) for i in range(1, 6)}
    members["test_batch.bin"] = _records([9])
    _cifar_tar(tmp_path / "cifar-10-binary.tar", members)
    dataset = open_source("cifar10", data_dir=tmp_path, progress=False)
    train = dataset.splits["train"]
    assert train.images.shape == (10, 32, 32, 3) and dataset.shape == (32, 32, 3)
    assert train.labels.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert train.images[0, 5, 5].tolist() == [10, 20, 31]  # channel planes became HWC
    assert dataset.files[0]["verified"] is False  # no published checksum of the raw .tar
    assert any("svhn is left out" in note for note in dataset.notes)


def test_cifar_archive_with_a_broken_member(tmp_path):
    members = {f"data_batch_{i}.bin": _records([1]) for i in range(1, 6)}
    members["test_batch.bin"] = _records([1])[:-5]
    _cifar_tar(tmp_path / "cifar-10-binary.tar", members)
    with pytest.raises(
        DataError,
        match=r"cifar-10-binary\.tar: test_batch\.bin is 3,068 bytes, not a whole number of "
        r"3073-byte records; the archive is corrupt; left it in place",
    ):
        open_source("cifar10", data_dir=tmp_path, progress=False)
