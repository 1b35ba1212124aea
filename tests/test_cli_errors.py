"""Bad input found by a new-user audit: each is one line on stderr, exit 2, and nothing left behind."""

from __future__ import annotations

import pytest

from cnnkit.cli import main
from cnnkit.errors import SpecError
from cnnkit.spec import parse


def one_line_error(capsys, argv: list[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("grid.jpg", "give a file name ending in .png"),
        ("", "give a file name ending in .png"),
        ("missing/grid.png", "does not exist; create it first"),
        ("/proc/grid.png", "cannot write it"),
    ],
)
def test_data_show_refuses_bad_out_paths(capsys, tmp_path, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    assert message in one_line_error(capsys, ["data", "show", "mnist-mini", "--out", out])
    assert not any(path.name.endswith(".part") for path in tmp_path.iterdir())


def test_data_show_refuses_a_folder_and_a_file_as_folder(capsys, tmp_path):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "file").write_text("x")
    assert "is a folder" in one_line_error(
        capsys, ["data", "show", "--out", str(tmp_path / "folder.png")]
    )
    assert "is a file, not a folder" in one_line_error(
        capsys, ["data", "show", "--out", str(tmp_path / "file" / "grid.png")]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.png"]


@pytest.mark.slow
def test_data_show_says_when_the_count_is_capped(capsys, tmp_path):
    assert (
        main(
            [
                "data",
                "show",
                "mnist-mini",
                "--split",
                "test",
                "--count",
                "5000",
                "--out",
                str(tmp_path / "g.png"),
            ]
        )
        == 0
    )
    assert "(the split has only 2000)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["explain", "conv", "--input", "5x5", "--seed", "-1"],
        ["data", "show", "--seed", "-1", "--out", "x.png"],
    ],
)
def test_negative_seeds_are_usage_errors(capsys, argv):
    assert "-1 is negative; use 0 or more" in one_line_error(capsys, argv)


def test_data_info_refuses_a_huge_size(capsys):
    assert "at most 4096 pixels a side" in one_line_error(
        capsys, ["data", "info", "mnist-mini", "--size", "5000x5000"]
    )


def test_spec_files_that_are_folders_or_not_text(capsys, tmp_path):
    (tmp_path / "net.yaml").mkdir()
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert "is a folder" in one_line_error(capsys, ["plan", str(tmp_path / "net.yaml")])
    assert "is not UTF-8 text" in one_line_error(capsys, ["plan", str(binary)])


@pytest.mark.parametrize("options", ["same p1", "p1 same", "valid same", "p2 p1"])
def test_padding_given_twice_is_refused(options):
    with pytest.raises(SpecError, match=r"padding given twice"):
        parse(f"28x28x1 > conv 6@5x5 {options}")


def test_demo_keeps_a_run_that_is_not_its_own(capsys, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "cnnkit.json").write_text("{}")
    assert "already holds a run" in one_line_error(capsys, ["demo", "--out", str(mine)])
    assert (mine / "cnnkit.json").read_text() == "{}"


def test_a_refused_training_leaves_no_empty_run_folder(capsys, tmp_path):
    out = tmp_path / "run"
    one_line_error(
        capsys, ["train", "--data", "mnist-mini", "--batch-size", "100000", "--out", str(out)]
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--resume", ""], "--resume is empty"),
        (["train", "--model", " ", "--out", "x"], "--model is empty"),
        (["serve", "nowhere", "--device", "cuda"], "CUDA is not available here; use --device cpu"),
        (["serve", "nowhere", "--device", "tpu"], "is not a device; use auto, cpu, cuda"),
        (["serve", "nowhere", "--device", "meta"], "only cpu and cuda are supported"),
    ],
)
def test_empty_values_and_unusable_devices(capsys, argv, message):
    assert message in one_line_error(capsys, argv)


@pytest.mark.parametrize("bias", ["nan", "inf", "-inf"])
def test_explain_refuses_a_non_finite_bias(capsys, bias):
    assert "is not a finite number" in one_line_error(
        capsys, ["explain", "conv", "--input", "3x3", f"--bias={bias}"]
    )
