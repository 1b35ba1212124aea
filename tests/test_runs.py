"""The run directory: round trips, refusals of damaged files, crash safety, resume state, metrics."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from cnnkit import runs
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.network import build
from cnnkit.spec import parse

SPEC = parse("8x8x1 > conv 4@3x3 same > bn > relu > maxpool 2 > flatten > fc 3")
CLASSES = ["a", "b", "c"]


def manifest() -> dict:
    return runs.make_manifest(
        SPEC, CLASSES, [0.5], [0.25], train_config={"lr": 0.1}, metrics={"val_accuracy": 0.75}
    )


def trained_like(seed: int) -> torch.nn.Module:
    """A model whose BN buffers are not their defaults, so losing them would show."""
    model = build(SPEC, seed=seed)
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(seed)))
    return model


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.fixture
def run(tmp_path: Path) -> Path:
    path = runs.prepare_run_dir(tmp_path / "run")
    runs.save_model(path, trained_like(0), manifest())
    return path


# ----------------------------------------------------------------------------- save and load


def test_save_then_load_gives_the_same_weights_buffers_and_eval_mode(run: Path):
    model, loaded_manifest = runs.load_model(run)
    assert_same_weights(model, trained_like(0))
    assert model.conv1.weight.requires_grad is True and not model.training
    assert model.bn1.num_batches_tracked.item() == 1  # BN buffers, not only parameters
    assert loaded_manifest == runs.read_manifest(run)


def test_the_manifest_holds_everything_needed_to_use_the_model_again(run: Path):
    document = json.loads((run / "cnnkit.json").read_text())
    assert document["format"] == "cnnkit-run" and document["format_version"] == 1
    assert document["spec"]["input"] == [8, 8, 1]
    assert document["notation"] == str(SPEC)
    assert document["plan_totals"]["params"] == sum(p.numel() for p in build(SPEC).parameters())
    assert document["class_names"] == CLASSES
    assert document["input_shape"] == [8, 8, 1]
    assert document["preprocessing"] == {
        "channels": 1,
        "resize": "letterbox",
        "mean": [0.5],
        "std": [0.25],
    }
    assert document["train_config"] == {"lr": 0.1}
    assert document["metrics"] == {"val_accuracy": 0.75}
    assert document["versions"]["torch"] == torch.__version__.split("+")[0]
    data = (run / "model.safetensors").read_bytes()
    assert document["weights"] == {
        "file": "model.safetensors",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    assert datetime.datetime.fromisoformat(document["created"]).tzinfo is not None
    assert sorted(p.name for p in run.iterdir()) == ["cnnkit.json", "model.safetensors"]


def test_load_accepts_the_manifest_path_too(run: Path):
    model, _ = runs.load_model(run / "cnnkit.json")
    assert_same_weights(model, trained_like(0))


def test_nothing_is_unpickled():
    source = Path(runs.__file__).read_text()
    assert not re.search(r"(?<!safetensors\.)torch\.load\(", source)
    assert "import pickle" not in source


def test_json_is_strict_nan_becomes_null():
    assert runs.dumps({"loss": float("nan"), "x": [float("inf"), 1.5]}) == (
        '{"loss": null, "x": [null, 1.5]}'
    )


# ----------------------------------------------------------------------------- refusals


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (flip_last_byte, r"model\.safetensors was modified after cnnkit saved it \(SHA-256 "),
        (
            lambda p: p.write_bytes(p.read_bytes()[:-40]),
            r"model\.safetensors is truncated \([\d,]+ of [\d,]+ bytes; an interrupted copy\?\)",
        ),
        (
            lambda p: p.write_bytes(os.urandom(3000)),
            r"model\.safetensors is not a safetensors weights file \(foreign or corrupt data\)",
        ),
        (lambda p: p.write_bytes(b"abc"), r"model\.safetensors is truncated or not a safetensors"),
        (lambda p: p.unlink(), r"model\.safetensors is missing; the run is incomplete"),
    ],
    ids=["tampered", "truncated", "foreign", "tiny", "missing"],
)
def test_damaged_weights_are_refused_naming_the_file(run: Path, damage, message):
    damage(run / "model.safetensors")
    with pytest.raises(CheckpointError, match=message):
        runs.load_model(run)


def test_other_weights_with_a_matching_hash_must_still_fit_the_spec(run: Path):
    other = runs.save_model(run.parent / "other", build("8x8x1 > flatten > fc 3"), manifest())
    (run / "model.safetensors").write_bytes(
        (run.parent / "other" / "model.safetensors").read_bytes()
    )
    document = json.loads((run / "cnnkit.json").read_text())
    document["weights"] = other["weights"]
    (run / "cnnkit.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=r"does not fit the spec in cnnkit\.json \(.*conv1"):
        runs.load_model(run)


def edit_manifest(run: Path, **changes) -> None:
    document = json.loads((run / "cnnkit.json").read_text())
    document.update(changes)
    (run / "cnnkit.json").write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 2}, r"has format_version 2, newer than this cnnkit .* upgrade cnnkit"),
        ({"format_version": "1"}, r"has format_version '1', which no cnnkit writes"),
        (
            {"format": "keras"},
            r"is not a cnnkit run manifest \(format 'keras', expected 'cnnkit-run'\)",
        ),
        ({"class_names": []}, r"class_names must be a list of names, got \[\]"),
        ({"input_shape": [8, 8]}, r"input_shape must be \[H, W, C\], got \[8, 8\]"),
        (
            {"preprocessing": {"mean": [0.5], "std": [0.0]}},
            r"preprocessing std \[0.0\] must be finite numbers from 1e-06",
        ),
        ({"class_names": ["a", "b"]}, r"the spec .* does not match input_shape \[8, 8, 1\] and 2"),
        ({"weights": {"file": "model.safetensors"}}, r"does not record the SHA-256 of model"),
        ({"weights": {"file": "../x.safetensors", "sha256": "0"}}, r"weights file must be model"),
    ],
)
def test_edited_manifests_are_refused(run: Path, changes, message):
    edit_manifest(run, **changes)
    with pytest.raises(CheckpointError, match=message):
        runs.load_model(run)


def test_manifest_missing_a_key_or_not_json_is_refused(run: Path):
    document = json.loads((run / "cnnkit.json").read_text())
    del document["spec"]
    (run / "cnnkit.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=r"cnnkit\.json lacks spec; the run is damaged"):
        runs.read_manifest(run)
    (run / "cnnkit.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"cnnkit\.json is not valid JSON \(line 1, column 2"):
        runs.read_manifest(run)


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path):
    with pytest.raises(
        CheckpointError,
        match=r"is not a cnnkit run \(no cnnkit\.json\); train one with 'cnnkit train --out ",
    ):
        runs.load_model(tmp_path)
    with pytest.raises(CheckpointError, match=r"nowhere does not exist; give the folder of a run"):
        runs.read_manifest(tmp_path / "nowhere")
    assert not runs.is_run(tmp_path)


# ----------------------------------------------------------------------------- crash safety


@pytest.mark.parametrize(
    ("failing_call", "survivor"), [(1, 0), (2, 0), (3, 1)], ids=["staging", "manifest", "final"]
)
def test_a_save_killed_at_any_rename_leaves_a_loadable_run(
    run: Path, monkeypatch, failing_call: int, survivor: int
):
    """Renames: 1 staged weights, 2 manifest (the commit point), 3 staged -> model.safetensors."""
    real_replace, calls = os.replace, []

    def crashing_replace(src, dst):
        calls.append(dst)
        if len(calls) == failing_call:
            raise OSError(28, "No space left on device (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(OSError, match="simulated"):
        runs.save_model(run, trained_like(1), manifest())
    monkeypatch.setattr(os, "replace", real_replace)

    model, _ = runs.load_model(run)
    assert_same_weights(model, trained_like(survivor))
    assert not list(run.glob(".*.tmp"))  # a failed temp file is removed

    runs.save_model(run, trained_like(2), manifest())  # the next save completes normally
    assert_same_weights(runs.load_model(run)[0], trained_like(2))
    assert sorted(p.name for p in run.iterdir()) == ["cnnkit.json", "model.safetensors"]


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path: Path, monkeypatch):
    path = tmp_path / "f.json"
    runs.atomic_write_json(path, {"v": 1})

    def failing(src, dst):
        raise OSError(5, "I/O error (simulated)")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        runs.atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


# ----------------------------------------------------------------------------- prepare_run_dir


def test_prepare_creates_nested_folders(tmp_path: Path):
    path = runs.prepare_run_dir(tmp_path / "a" / "b")
    assert path.is_dir() and list(path.iterdir()) == []


def test_an_existing_run_needs_overwrite_or_resume(run: Path):
    with pytest.raises(
        CheckpointError,
        match=r"run already holds a run; pass --overwrite to replace it or --resume to continue it$",
    ):
        runs.prepare_run_dir(run)


def test_overwrite_removes_only_the_runs_own_files(run: Path):
    runs.append_metrics(run, {"step": 1})
    runs.save_state(run, None, {"step": 1}, {})
    (run / "notes.txt").write_text("mine")
    runs.prepare_run_dir(run, overwrite=True)
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


def test_resume_needs_a_run_with_state(run: Path, tmp_path: Path):
    with pytest.raises(
        CheckpointError, match=r"holds a run but no resume state \(state/state\.json"
    ):
        runs.prepare_run_dir(run, resume=True)
    runs.save_state(run, None, {"step": 3}, {})
    assert runs.prepare_run_dir(run, resume=True) == run
    with pytest.raises(
        CheckpointError,
        match=r"empty is not a cnnkit run \(no cnnkit\.json\); train one with 'cnnkit train --out ",
    ):
        runs.prepare_run_dir(runs.prepare_run_dir(tmp_path / "empty"), resume=True)
    with pytest.raises(
        CheckpointError, match=r"nowhere does not exist, so there is nothing to resume"
    ):
        runs.prepare_run_dir(tmp_path / "nowhere", resume=True)


def test_prepare_refusals(tmp_path: Path, monkeypatch):
    with pytest.raises(ConfigError, match=r"--overwrite and --resume contradict each other"):
        runs.prepare_run_dir(tmp_path, overwrite=True, resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        CheckpointError, match=r"file is a file, not a directory; choose another --out"
    ):
        runs.prepare_run_dir(tmp_path / "file")
    with pytest.raises(CheckpointError, match=r"cannot create .*file/run \(.*\); choose an --out"):
        runs.prepare_run_dir(tmp_path / "file" / "run")
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"x")
    with pytest.raises(
        CheckpointError,
        match=r"holds files of an unfinished run \(model\.safetensors\) but no cnnkit",
    ):
        runs.prepare_run_dir(half)
    assert runs.prepare_run_dir(half, overwrite=True) == half and not list(half.iterdir())


def test_an_unwritable_folder_is_refused_before_training(tmp_path: Path, monkeypatch):
    # The tests may run as root, which chmod cannot stop, so the probe's open fails instead.
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runs, "open", denied, raising=False)
    with pytest.raises(
        CheckpointError, match=r"cannot write to .*ro \(Permission denied\); choose an --out folder"
    ):
        runs.prepare_run_dir(tmp_path / "ro")


# ----------------------------------------------------------------------------- resume state


def test_resumed_training_continues_exactly_like_an_uninterrupted_one(tmp_path: Path):
    def step(model, optimizer, seed):
        x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.arange(8) % 3).backward()
        optimizer.step()

    model = build(SPEC, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for seed in range(3):
        step(model, optimizer, seed)
    run = runs.prepare_run_dir(tmp_path / "run")
    torch.manual_seed(123)
    extra = {"step": 3, "epoch": 0, "batch": 3, "config": {"lr": 0.01}}
    runs.save_state(run, optimizer, extra, runs.capture_rng(), model=model)
    expected_rand = torch.rand(3)
    step(model, optimizer, 3)

    resumed = build(SPEC, seed=99)
    resumed_optimizer = torch.optim.Adam(resumed.parameters(), lr=0.5)
    state = runs.load_state(run, resumed_optimizer, model=resumed)
    assert {k: v for k, v in state.items() if k != "tensors"} == extra
    assert runs.read_state(run) == extra  # the JSON part alone, for deciding how to resume
    assert resumed_optimizer.param_groups[0]["lr"] == 0.01
    assert resumed_optimizer.param_groups[0]["betas"] == (0.9, 0.999)
    runs.restore_rng(state["tensors"])
    assert torch.equal(torch.rand(3), expected_rand)
    step(resumed, resumed_optimizer, 3)
    assert_same_weights(resumed, model)

    state_json = json.loads((run / "state" / "state.json").read_text())
    assert state_json["step"] == 3 and state_json["optimizer"]["class"] == "Adam"
    with safe_open(run / "state" / "state.safetensors", "pt") as file:
        keys = set(file.keys())
        assert file.get_tensor("rng.torch").dtype == torch.uint8
    assert {"optimizer.state.0.exp_avg", "optimizer.state.0.step", "model.bn1.running_mean"} <= keys


def test_resume_state_refusals(run: Path):
    model = trained_like(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    runs.save_state(run, optimizer, {"step": 1}, runs.capture_rng())
    with pytest.raises(
        CheckpointError, match=r"was saved with SGD over parameter groups of sizes \[6\], but"
    ):
        runs.load_state(run, torch.optim.Adam(model.parameters()))
    with pytest.raises(CheckpointError, match=r"state\.json holds no model weights"):
        runs.load_state(run, None, model=model)
    flip_last_byte(run / "state" / "state.safetensors")
    with pytest.raises(CheckpointError, match=r"state\.safetensors was modified after cnnkit"):
        runs.load_state(run, None)
    (run / "state" / "state.json").write_text('{"format": "cnnkit-state", "format_version": 9}')
    with pytest.raises(
        CheckpointError, match=r"state\.json has format_version 9; this cnnkit reads 1"
    ):
        runs.read_state(run)
    (run / "state" / "state.json").unlink()
    with pytest.raises(
        CheckpointError, match=r"has no resume state \(state/state\.json is missing"
    ):
        runs.load_state(run, None)
    with pytest.raises(ValueError, match=r"tensor name 'optimizer\.x' uses a reserved prefix"):
        runs.save_state(run, None, {}, {"optimizer.x": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"extra uses reserved key\(s\) optimizer, tensors"):
        runs.save_state(run, None, {"tensors": 1, "optimizer": 2}, {})


# ----------------------------------------------------------------------------- metrics log


def test_metrics_append_read_and_truncate_for_resume(run: Path):
    assert runs.read_metrics(run) == []
    for step in (10, 20, 30):
        runs.append_metrics(run, {"step": step, "loss": 1 / step})
    runs.append_metrics(run, {"step": 40, "loss": float("nan")})
    assert [r["step"] for r in runs.read_metrics(run)] == [10, 20, 30, 40]
    assert runs.read_metrics(run)[-1]["loss"] is None
    runs.truncate_metrics(run, 20)
    assert [r["step"] for r in runs.read_metrics(run)] == [10, 20]


def test_a_half_written_metrics_line_is_skipped_then_cut_off(run: Path):
    runs.append_metrics(run, {"step": 1})
    with open(run / "metrics.jsonl", "a") as file:
        file.write('{"step": 2, "lo')  # killed mid-append
    assert runs.read_metrics(run) == [{"step": 1}]
    runs.append_metrics(run, {"step": 3})
    assert runs.read_metrics(run) == [{"step": 1}, {"step": 3}]


def test_a_damaged_metrics_line_is_named(run: Path):
    (run / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(CheckpointError, match=r"metrics\.jsonl:2 is not a JSON record"):
        runs.read_metrics(run)
