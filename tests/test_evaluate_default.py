"""`cnnkit evaluate RUN` without --data: the run's own test, val or held-out images, named truly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnkit import runs
from cnnkit.cli import main
from cnnkit.data import open_source
from cnnkit.data.dataset import split_validation
from cnnkit.network import build
from cnnkit.predict import load
from cnnkit.spec import parse
from data_helpers import isolated_env, make_folder  # noqa: F401

SPEC = "8x8x3 > conv 4@3x3 same > relu > maxpool 2 > flatten > fc 3"


def save_run(path: Path, data: str, val: str | None, val_split: float = 0.25) -> Path:
    """A run saved by hand whose manifest says it trained on `data` with these choices."""
    spec = parse(SPEC)
    config = {"data": data, "val": val, "val_split": val_split, "seed": 3}
    manifest = runs.make_manifest(spec, ["a", "b", "c"], [0.5] * 3, [0.25] * 3, train_config=config)
    runs.save_model(runs.prepare_run_dir(path), build(spec, seed=0), manifest)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """12 images of 3 classes, in no split folders."""
    return make_folder(tmp_path / "photos", {"a": 4, "b": 4, "c": 4}, size=8, channels=3)


def evaluate_json(capsys, *argv: str) -> dict:
    assert main(["evaluate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_default_is_the_validation_split_the_run_held_out(tmp_path, folder, capsys):
    run = save_run(tmp_path / "run", str(folder), val=None)
    document = evaluate_json(capsys, str(run))
    assert document["data"] == str(folder) and document["split"] == "val"
    assert document["split_description"] == "held-out validation split, 25% of train, seed 3"
    # The same images training held out: the stratified split with the run's fraction and seed.
    _, val = split_validation(open_source(str(folder), progress=False), 0.25, seed=3)
    assert document["count"] == len(val) == 3
    predicted = load(run).evaluate(val.images, val.labels)
    assert document["confusion"] == predicted["confusion"]


def test_text_names_the_held_out_split(tmp_path, folder, capsys):
    run = save_run(tmp_path / "run", str(folder), val=None)
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"data:     {folder} (held-out validation split, 25% of train, seed 3, 3 images)" in out


def test_a_folder_without_splits_is_all_its_images_not_a_train_split(tmp_path, folder, capsys):
    run = save_run(tmp_path / "run", str(folder), val="none")
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"data:     {folder} (all 12 images)" in out
    assert "note: the data has no test or val split, so these are all its images" in out
    assert "train split" not in out


def test_another_source_is_evaluated_whole_and_val_is_refused_there(tmp_path, folder, capsys):
    run = save_run(tmp_path / "run", "mnist-mini", val=None)
    document = evaluate_json(capsys, str(run), "--data", str(folder))
    assert (document["split"], document["split_description"]) == ("train", "all")
    assert document["count"] == 12
    assert main(["evaluate", str(run), "--data", str(folder), "--split", "val"]) == 2
    assert "has no val split (only train)" in capsys.readouterr().err


def test_split_val_rebuilds_the_held_out_part(tmp_path, folder, capsys):
    run = save_run(tmp_path / "run", str(folder), val=None, val_split=0.5)
    document = evaluate_json(capsys, str(run), "--data", str(folder), "--split", "val")
    assert document["split_description"] == "held-out validation split, 50% of train, seed 3"
    assert document["count"] == 6


def test_macro_average_line_says_which_classes_were_left_out(tmp_path, folder, capsys):
    import shutil

    shutil.rmtree(folder / "c")  # the run knows a, b, c; the data holds a and b
    run = save_run(tmp_path / "run", "mnist-mini", val=None)
    assert main(["evaluate", str(run), "--data", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "macro avg: over the 2 classes with images (1 class without images left out)" in out
    row = next(line for line in out.splitlines() if line.startswith("c "))
    assert row.split()[2:4] == ["-", "-"]  # no recall, no F1 for a class without images


def test_a_run_whose_data_has_gone_says_so(tmp_path, capsys):
    run = save_run(tmp_path / "run", str(tmp_path / "moved"), val=None)
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        f"cnnkit: error: the run's own data '{tmp_path / 'moved'}' (from its manifest)"
    )
    assert err.endswith("; pass --data to use other data\n")


def test_held_out_accuracy_is_the_one_training_measured(tmp_path, capsys):
    """End to end: the images evaluate rebuilds are the very ones training validated on."""
    from cnnkit.train import TrainConfig, fit

    folder = make_folder(tmp_path / "shapes", {"a": 10, "b": 10, "c": 10}, size=8, channels=3)
    run = tmp_path / "run"
    config = TrainConfig(
        model=SPEC, data=str(folder), epochs=2, batch_size=8, val_split=0.3, seed=5,
        out=str(run), quiet=True,
    )  # fmt: skip
    fit(config)
    measured = runs.read_manifest(run)["metrics"]["final_val_acc"]
    document = evaluate_json(capsys, str(run))
    assert document["split_description"] == "held-out validation split, 30% of train, seed 5"
    assert document["count"] == 9 and document["accuracy"] == pytest.approx(measured, abs=1e-9)
