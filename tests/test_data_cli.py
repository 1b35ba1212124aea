"""`cnnkit data info` and `cnnkit data show` through cnnkit.cli.main."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main
from data_helpers import isolated_env, make_folder, need_mnist  # noqa: F401


def test_done_when_info_mnist_json_without_network(monkeypatch, capsys):
    monkeypatch.setenv("CNNKIT_DATA", str(need_mnist()))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used"))
    assert main(["data", "info", "mnist", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"] == {"train": 60000, "test": 10000}
    assert len(info["classes"]) == 10 and info["shape"] == [28, 28, 1] and info["skipped"] == []
    assert info["classes"][0] == {"name": "0", "counts": {"train": 5923, "test": 980}}
    assert all(f["verified"] for f in info["files"])


def test_info_text_for_the_default(capsys):
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "splits   train 10,000, test 2,000" in out
    assert "shape    28x28x1 (1 channel)" in out
    assert "10 classes" in out and "skipped  none" in out
    assert "mnist-mini.npz  sha256 " in out


def test_info_reports_skipped_files(tmp_path, capsys):
    root = make_folder(tmp_path / "f", {"a": 2, "b": 2})
    (root / "a" / "empty.png").write_bytes(b"")
    assert main(["data", "info", str(root), "--size", "16x16", "--channels", "3"]) == 0
    out = capsys.readouterr().out
    assert "shape    16x16x3 (3 channels)" in out
    assert "skipped  1 file(s)" in out and "empty.png: empty file (0 bytes)" in out
    assert main(["data", "info", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"][0]["reason"].startswith("empty file")


def test_show_writes_a_labelled_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert (
        main(["data", "show", "mnist-mini", "--out", str(out), "--count", "16", "--split", "test"])
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 4 * 64
        assert len(np.unique(np.asarray(image.convert("L")))) > 2  # images and labels, not blank


@pytest.mark.parametrize(
    "argv, match",
    [
        (["data", "info", "minst"], "did you mean 'mnist'?"),
        (["data", "info", "--size", "32"], "--size '32' is not HxW with positive whole numbers"),
        (["data", "info", "no/such/dir"], "--data 'no/such/dir': no such file or folder"),
        (
            ["data", "show", "--out", "x.png", "--split", "val"],
            "--split val: mnist-mini has only train, test",
        ),
        (["data", "show", "--out", "/no/such/dir/x.png"], "the folder /no/such/dir does not exist"),
        (["data", "show", "--out", "x.png", "--count", "0"], "--count 0 must be at least 1"),
    ],
)
def test_errors_are_one_line_and_exit_2(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnkit: error: ") and match in err


def test_single_class_folder_is_refused(tmp_path, capsys):
    make_folder(tmp_path / "one", {"cat": 2})
    assert main(["data", "info", str(tmp_path / "one")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a classifier needs at least two classes" in err
