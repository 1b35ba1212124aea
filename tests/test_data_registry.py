"""Registry copies: the decompressed content is verified, never the bytes of a gzip.

Real MNIST stands in for every IDX data set: recompressed at another gzip level it must verify
(MNIST) or be accepted on its structure (KMNIST, whose content SHA-256 cnnkit does not know); a
tampered copy and a structurally broken one are refused in one line.
"""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.data import open_source
from cnnkit.data.download import RemoteFile, check_content
from cnnkit.errors import DataError
from data_helpers import isolated_env, need_mnist  # noqa: F401

TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _place(folder, *, level: int = 9, change=None) -> None:
    """Real MNIST's test files gzipped at `level` into `folder`; `change(name, bytearray)` edits."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in TEST_FILES:
        content = bytearray((need_mnist() / "mnist" / name).read_bytes())
        if change:
            change(name, content)
        (folder / f"{name}.gz").write_bytes(gzip.compress(bytes(content), compresslevel=level))


@pytest.mark.slow
def test_recompressed_mnist_verifies_against_its_content(tmp_path):
    _place(tmp_path, level=9)  # other bytes than the publisher's gzip, same content
    dataset = open_source("mnist:test", data_dir=tmp_path, progress=False)
    assert [f["verified"] for f in dataset.files] == [True, True]
    assert {f["check"] for f in dataset.files} == {"SHA-256 of the decompressed content"}
    assert "verified: SHA-256 of the decompressed content of all 2 file(s)" in dataset.notes


def test_a_copy_with_no_known_content_checksum_is_accepted_unverified(tmp_path, capsys):
    # kmnist's gzip MD5s cannot match a recompressed copy; its structure is what is checked.
    _place(tmp_path / "kmnist", level=6)
    dataset = open_source("kmnist:test", data_dir=tmp_path, progress=False)
    assert len(dataset.splits["test"]) == 10000 and dataset.shape == (28, 28, 1)
    assert [f["verified"] for f in dataset.files] == [False, False]
    assert dataset.files[0]["note"].startswith("content not verified: no SHA-256 of the content")
    assert "not byte-identical to the publisher's" in dataset.files[0]["note"]
    assert main(["data", "info", "kmnist:test", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "not verified (content not verified" in out
    assert "note     content not verified for t10k-images-idx3-ubyte.gz, t10k-labels" in out
    assert "structure checked (IDX headers, counts, 28x28 images, label range)" in out


def test_a_byte_identical_gzip_verifies_by_the_publishers_md5():
    content = bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])
    packed = bytearray(gzip.compress(content))
    md5 = hashlib.md5(packed, usedforsecurity=False).hexdigest()
    _, record, problem = check_content(packed, RemoteFile("labels", (), md5_gz=md5))
    assert problem is None and record["verified"]
    assert record["check"] == "the publisher's MD5 of the gzipped file"
    _, record, problem = check_content(bytearray(content), RemoteFile("labels", (), md5_gz=md5))
    assert problem is None and not record["verified"]  # a raw copy: structure only
    assert record["note"] == (
        "content not verified: no SHA-256 of the content is known; structure checked"
    )


def _one_label_changed(name: str, content: bytearray) -> None:
    if "labels" in name:
        content[100] = (content[100] + 1) % 10  # a valid IDX file, not MNIST's


@pytest.mark.slow
def test_a_tampered_mnist_copy_is_refused(tmp_path):
    _place(tmp_path, level=9, change=_one_label_changed)
    with pytest.raises(DataError) as caught:
        open_source("mnist:test", data_dir=tmp_path, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path}/t10k-labels-idx1-ubyte.gz: checksum mismatch: expected")
    assert "(SHA-256 of the decompressed content); the file is corrupt or not the original" in (
        message
    )
    assert message.endswith("left it in place; delete or replace it with a good copy")


def _label_ten(name, content):
    if "labels" in name:
        content[-1] = 10


def _wrong_magic(name, content):
    if "images" in name:
        content[3] = 2


def _fewer_records(name, content):
    if "labels" in name:
        del content[-1]
        content[4:8] = (9999).to_bytes(4, "big")  # a consistent header for 9,999 labels


def _wrong_shape(name, content):
    if "images" in name:
        content[8:16] = (32).to_bytes(4, "big") + (24).to_bytes(
            4, "big"
        )  # 768 bytes a picture, not 784


@pytest.mark.parametrize(
    "change, match",
    [
        (
            _label_ten,
            r"t10k-labels-idx1-ubyte\.gz: label 10 is out of range for kmnist's 10 classes "
            r"\(0\.\.9\); the file is corrupt or not kmnist's; left it in place",
        ),
        (
            _wrong_magic,
            r"t10k-images-idx3-ubyte\.gz: wrong IDX magic number 0x00000802, expected 0x00000803",
        ),
        (
            _fewer_records,
            r"t10k-labels-idx1-ubyte\.gz: 9,999 records, expected 10,000 for kmnist's test "
            r"split; this is not kmnist's test file, or it is truncated",
        ),
        (
            _wrong_shape,
            r"t10k-images-idx3-ubyte\.gz: wrong size 7,840,016 bytes; its header declares shape "
            r"\(10000, 32, 24\)",
        ),
    ],
)
def test_a_structurally_broken_copy_is_refused_in_one_line(tmp_path, change, match):
    _place(tmp_path / "kmnist", level=1, change=change)
    with pytest.raises(DataError, match=match) as caught:
        open_source("kmnist:test", data_dir=tmp_path, progress=False)
    assert "\n" not in str(caught.value)


def test_images_of_another_size_are_refused(tmp_path):
    def square_32(name, content):
        if "images" in name:
            pixels = np.frombuffer(bytes(content[16:]), np.uint8).reshape(-1, 28, 28)[:, :24, :24]
            content[8:] = (24).to_bytes(4, "big") * 2 + pixels.tobytes()

    _place(tmp_path / "kmnist", level=1, change=square_32)
    with pytest.raises(
        DataError,
        match=r"t10k-images-idx3-ubyte\.gz: images of 24x24, expected 28x28 for kmnist; this is "
        r"not kmnist's test images file; left it in place",
    ):
        open_source("kmnist:test", data_dir=tmp_path, progress=False)


@pytest.mark.parametrize(
    "name, content_checksums",
    [("mnist", True), ("fashion-mnist", True), ("kmnist", False), ("cifar10", False)],
)
def test_which_sets_have_a_content_checksum(name, content_checksums):
    """What the README says: MNIST and Fashion-MNIST by content, the others by structure."""
    from cnnkit.data.registry import REGISTRY

    files = REGISTRY[name].files.values()
    assert all(bool(f.sha256) == content_checksums for f in files)


def test_mnist_content_under_fashion_mnist_names_is_refused(tmp_path):
    _place(tmp_path / "fashion-mnist", level=6)
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte\.gz: checksum mismatch: expected 5b41"
    ):
        open_source("fashion-mnist:test", data_dir=tmp_path, progress=False)
