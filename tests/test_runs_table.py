"""`cnnkit runs`: the table of runs (golden), its origins, and --compare's chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cnnkit import runs
from cnnkit.cli import main
from cnnkit.inspect.plots import compare_figure, curve, x_key
from cnnkit.network import build
from cnnkit.render_use import render_runs
from cnnkit.runs_table import list_runs
from cnnkit.spec import parse
from conftest import assert_golden

SPEC = "8x8x1 > conv 2@3x3 > relu > flatten > fc 2"


def save_run(path: Path, config: dict, metrics: dict, origin=None, records=()) -> Path:
    spec = parse(SPEC)
    manifest = runs.make_manifest(
        spec, ["a", "b"], [0.5], [0.25], train_config=config, metrics=metrics
    )
    if origin is not None:
        manifest["from"] = origin
    runs.save_model(runs.prepare_run_dir(path), build(spec, seed=0), manifest)
    for record in records:
        runs.append_metrics(path, record)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    curves = [
        {"epoch": e, "step": 10 * e, "train_loss": 1 / e, "val_acc": 1 - 0.1 / e} for e in (1, 2, 3)
    ]
    save_run(
        root / "mnist",
        {"model": "digits", "data": "mnist"},
        {"best_val_acc": 0.9912, "train_s": 12.34, "images_per_s": 3720.4},
        records=curves,
    )
    save_run(
        root / "photos",
        {"model": "auto", "data": "photos/"},
        {"best_val_acc": 0.95, "train_s": 185.0, "images_per_s": 284.0},
        origin="runs/mnist",
        records=[{"step": s, "train_loss": 2 / s, "train_acc": 0.5 + s / 100} for s in (5, 10)],
    )
    long = "8x8x1 > conv 2@3x3 > relu > conv 2@3x3 > relu > flatten > fc 2"
    save_run(
        root / "nested" / "noval",
        {"model": long, "data": "shapes.npz"},
        {"best_val_acc": None, "train_s": 1.5, "images_per_s": None},
        origin={"run": "runs/photos", "frozen": True},
    )
    (root / "broken").mkdir()
    (root / "broken" / "cnnkit.json").write_text("{ not json")
    return root


def test_golden_runs_table(folder: Path):
    rows = list_runs(folder)
    assert [row.name for row in rows] == ["broken", "mnist", "nested/noval", "photos"]
    text = render_runs(rows, "runs").replace(str(folder), "RUNS")
    assert_golden("runs_table.txt", text + "\n")


def test_cli_runs_lists_and_json_has_the_origins(folder: Path, capsys):
    assert main(["runs", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "from" in out.splitlines()[0] and "runs/mnist" in out
    assert main(["runs", str(folder), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["photos"]["origin"] == "runs/mnist" and rows["mnist"]["origin"] is None
    assert rows["nested/noval"]["origin"] == "runs/photos"
    assert rows["mnist"]["best_acc"] == 0.9912


def test_runs_of_a_missing_folder_is_one_line(tmp_path: Path, capsys):
    assert main(["runs", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnkit: error: ") and err.count("\n") == 1
    assert "nothing: no such folder; give the folder that holds your runs" in err


def test_an_empty_folder_says_how_to_make_a_run(tmp_path: Path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"no runs in {tmp_path} (train one with")


def test_compare_writes_one_chart(folder: Path, tmp_path: Path, capsys):
    out = tmp_path / "charts" / "both.png"
    argv = ["runs", str(folder), "--compare", "mnist", "photos", "--out", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} (2 runs: mnist, photos)")
    assert Image.open(out).size[0] > 800  # two charts side by side


def test_compare_refuses_a_folder_that_is_not_a_run(folder: Path, tmp_path: Path, capsys):
    assert main(["runs", str(folder), "--compare", "mnist", str(tmp_path)]) == 2
    assert "is not a cnnkit run (no cnnkit.json)" in capsys.readouterr().err


def test_compare_plots_val_else_train_against_a_shared_axis():
    by_epoch = [{"epoch": 1, "val_loss": 0.5, "train_loss": 0.9}]
    by_step = [{"epoch": 1, "step": 3, "train_loss": 0.7}, {"epoch": 1, "step": 6}]
    assert x_key([by_epoch]) == "epoch" and x_key([by_epoch, by_step]) == "step"
    assert curve(by_step, "step", "train_loss") == ([3.0], [0.7])
    assert curve([{"epoch": 2, "val_acc": 0.75}], "epoch", "val_acc", error=True) == ([2.0], [0.25])
    assert compare_figure({"a": by_epoch, "b": by_step}).size[0] > 400
