"""Training: determinism, exact resume after SIGKILL and Ctrl-C, NaN stops, and every user error.

Tiny specs on mnist-mini (the embedded 10k digits) keep the fast tests to seconds; the dropout
layer makes the resume tests depend on the torch RNG state being restored, not only the loader's.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnkit import runs
from cnnkit.cli import main
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.train import Hooks, TrainConfig, fit, learning_rate, resume

TINY = "28x28x1 > conv 4@3x3 same > maxpool 2 > bn > relu > dropout 0.2 > flatten > fc 10"
# Slow enough (~3 ms a step, 281 steps) that a poller sees a checkpoint before the run ends.
RESUMABLE = "28x28x1 > conv 16@3x3 same > maxpool 2 > bn > relu > dropout 0.2 > flatten > fc 10"
RESUME_ARGS = [
    "--model", RESUMABLE, "--epochs", "1", "--batch-size", "32", "--eval-every", "0.25",
    "--checkpoint-every", "20", "--device", "cpu", "--quiet",
]  # fmt: skip


def tiny(tmp_path: Path, name: str = "run", **options) -> TrainConfig:
    options = {
        "model": TINY,
        "epochs": 1,
        "batch_size": 100,
        "device": "cpu",
        "quiet": True,
        **options,
    }
    return TrainConfig(out=str(tmp_path / name), **options)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / runs.WEIGHTS))


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), f"{key} differs"


def history(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in runs.read_metrics(run)]


# ----------------------------------------------------------------------------- schedule


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        ("constant", 0, 1.0),
        ("constant", 99, 1.0),
        ("cosine", 0, 1.0),
        ("cosine", 50, 0.5),
        ("step", 49, 1.0),
        ("step", 50, 0.1),
        ("step", 75, 0.01),
        ("onecycle", 0, 1 / 21),  # warmup 0.2 of 100 steps: rises over 20
        ("onecycle", 20, 1.0),
        ("onecycle", 60, 0.5),
        ("onecycle", 99, 1 / 80),
    ],
)
def test_learning_rate_is_a_function_of_the_step(schedule: str, step: int, expected: float) -> None:
    config = TrainConfig(lr=1.0, schedule=schedule, warmup=0.2)
    assert learning_rate(config, step, 100) == pytest.approx(expected)


# ----------------------------------------------------------------------------- fit


@pytest.mark.slow
def test_same_seed_gives_bitwise_identical_weights(tmp_path: Path) -> None:
    first = fit(tiny(tmp_path, "a", seed=3))
    second = fit(tiny(tmp_path, "b", seed=3))
    assert_same_weights(first.run, second.run)
    assert history(first.run) == history(second.run)
    other = fit(tiny(tmp_path, "c", seed=4))
    assert not torch.equal(weights(first.run)["conv1.weight"], weights(other.run)["conv1.weight"])


@pytest.mark.slow
def test_fit_writes_a_usable_run(tmp_path: Path) -> None:
    result = fit(tiny(tmp_path, val="test", eval_every=0.5))
    assert result.final_val_acc > 0.8  # measured 0.90 after 90 steps
    records = runs.read_metrics(result.run)
    assert [r["step"] for r in records] == [50, 100]  # all 10,000 training images, batch 100
    assert set(records[0]) == {
        "epoch", "step", "elapsed_s", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
    }  # fmt: skip
    manifest = runs.read_manifest(result.run)
    assert manifest["preprocessing"]["mean"] == [0.1307]  # the registry's value for MNIST digits
    assert manifest["train_config"]["model"] == TINY
    assert manifest["metrics"]["final_val_acc"] == result.final_val_acc
    model, _ = runs.load_model(result.run)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_target_accuracy_stops_early(tmp_path: Path) -> None:
    result = fit(tiny(tmp_path, val="test", epochs=3, target_acc=0.5))
    assert result.summary["stopped"] == "target"
    assert result.summary["steps"] < 3 * 90
    assert result.metrics[-1]["val_acc"] >= 0.5


@pytest.mark.slow
def test_lenet5_is_fitted_to_28x28_digits(tmp_path: Path) -> None:
    notes: list[str] = []
    out = str(tmp_path / "l")  # batch 500 keeps the test short; the recipe's own is 128
    config = TrainConfig.for_model("lenet5", out=out, epochs=1, batch_size=500, quiet=True)
    fit(config, Hooks(on_start=lambda start: notes.extend(start.notes)))
    assert notes == [
        "data 'mnist-mini' fitted to the model's input: zero-padded from 28x28 to 32x32"
    ]
    manifest = runs.read_manifest(tmp_path / "l")
    assert manifest["input_shape"] == [32, 32, 1]
    assert manifest["preprocessing"]["mean"][0] == pytest.approx(
        0.1307 * 28 * 28 / 32 / 32, abs=2e-3
    )


def test_the_loss_becoming_nan_stops_with_the_step_and_keeps_a_good_checkpoint(
    tmp_path: Path,
) -> None:
    config = tiny(tmp_path, lr=1e6, optimizer="sgd", checkpoint_every=1)
    with pytest.raises(
        ConfigError,
        match=r"^step (\d+): the (loss|weights) became (nan|inf); lower --lr \(now 1e\+06\)",
    ) as error:
        fit(config)
    step = int(error.value.args[0].split(":")[0].split()[1])
    saved = json.loads((Path(config.out) / "state" / "state.json").read_text())
    assert saved["step"] < step
    model, _ = runs.load_model(config.out)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())


@pytest.mark.slow
def test_resuming_a_finished_run_is_refused(tmp_path: Path) -> None:
    result = fit(tiny(tmp_path))
    with pytest.raises(
        CheckpointError, match="already finished at step 90 of 90; nothing to resume"
    ):
        resume(result.run)


# ----------------------------------------------------------------------------- resume


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnkit", "train", *args]


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _start_and_stop(out: Path, sig: int) -> subprocess.CompletedProcess | int:
    """Start a training subprocess, wait for a checkpoint beyond step 0, send `sig`."""
    process = subprocess.Popen(
        _cli(*RESUME_ARGS, "--out", str(out)),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    state = out / "state" / "state.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if json.loads(state.read_text())["step"] > 0:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.002)
    assert process.poll() is None, (
        f"the run ended before it could be stopped: {process.stderr.read()}"
    )
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run(_cli(*RESUME_ARGS, "--out", str(out)), env=_env(), check=True, timeout=300)
    return out


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise_exact(uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    killed = _start_and_stop(out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    stopped_at = json.loads((out / "state" / "state.json").read_text())["step"]
    assert 0 < stopped_at < 281, stopped_at  # mid-epoch: 9,000 images / 32 = 281 steps an epoch
    subprocess.run(_cli("--resume", str(out), "--quiet"), env=_env(), check=True, timeout=300)
    assert_same_weights(uninterrupted, out)
    assert history(uninterrupted) == history(out)
    assert [r["step"] for r in history(out)] == [70, 140, 210, 280, 281]


@pytest.mark.slow
def test_ctrl_c_saves_exits_130_and_resumes_exactly(uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    stopped = _start_and_stop(out, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert f"continue with: cnnkit train --resume {out}" in stopped.stderr
    saved = json.loads((out / "state" / "state.json").read_text())
    assert not saved["finished"]
    subprocess.run(_cli("--resume", str(out), "--quiet"), env=_env(), check=True, timeout=300)
    assert_same_weights(uninterrupted, out)
    assert history(uninterrupted) == history(out)


# ----------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_train_json_prints_the_metrics_records(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    args = ["train", "--model", TINY, "--epochs", "1", "--batch-size", "100", "--eval-every", "0.5"]
    assert main([*args, "--out", str(out), "--json", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["step"] for r in records] == [45, 90]
    assert records == runs.read_metrics(out)
    assert "saved to" in captured.err


@pytest.mark.slow
def test_train_prints_the_plan_then_evaluations_then_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["train", "--model", TINY, "--epochs", "1", "--batch-size", "100", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert (
        out.index("spec: 28x28x1")
        < out.index("epoch 1.00/1  step 90")
        < out.index("finished after 90")
    )
    assert f"saved to {tmp_path / 'run'}" in out


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit(tiny(tmp_path_factory.mktemp("existing"))).run


def _bad_input_cases() -> list[tuple[list[str], str]]:
    return [
        (["--model", "28x28x4 > conv 4@3x3 > flatten > fc 10"],
         r"the model takes 28x28x4 images but 'mnist-mini' has 1 channel\(s\); cnnkit converts only "
         r"between 1 and 3 channels; pass --input 28x28x1"),
        (["--model", "20x30x1 > conv 4@3x3 > flatten > fc 10"],
         r"the model takes 20x30x1 images but 'mnist-mini' holds 28x28x1, another aspect ratio; pass "
         r"--input 28x28x1 to train the model on the data's own shape, or --resize letterbox\|stretch\|crop"),
        (["--model", "28x28x1 > conv 4@3x3 > flatten > fc 5"],
         r"the model outputs 5 scores but 'mnist-mini' has 10 classes; end the spec with 'fc 10'"),
        (["--model", "lenet6"], r"unknown preset 'lenet6'; did you mean 'lenet5'\?"),
        (["--optimizer", "adagrad"], r"--optimizer 'adagrad' is not known; use one of sgd, adam, adamw"),
        (["--schedule", "linear"], r"--schedule 'linear' is not known; use one of onecycle, cosine, step, constant"),
        (["--epochs", "0"], r"--epochs must be a whole number >= 1, got 0"),
        (["--epochs", "-2"], r"--epochs must be a whole number >= 1, got -2"),
        (["--batch-size", "0"], r"--batch-size must be a whole number >= 1, got 0"),
        (["--batch-size", "-64"], r"--batch-size must be a whole number >= 1, got -64"),
        (["--lr", "0"], r"--lr must be a positive number such as 0.1, got 0.0"),
        (["--lr", "-0.1"], r"--lr must be a positive number such as 0.1, got -0.1"),
        (["--val", "train"], r"--val 'train' is not known; use test, val or none"),
        (["--target-acc", "99"], r"--target-acc must be an accuracy in \(0, 1\] such as 0.99, got 99.0"),
        (["--augment", "rotate=10"], r"--augment 'rotate=10': unknown augmentation 'rotate'"),
    ]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), _bad_input_cases())
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["train", *args, "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.match(f"cnnkit: error: {message}", err), err


def test_unwritable_output_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert main(["train", "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"cnnkit: error: cannot create {blocker / 'run'} (Not a directory); "
        f"choose an --out folder you can write to\n"
    )


def test_resume_of_a_folder_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"cnnkit: error: {tmp_path} is not a cnnkit run (no cnnkit.json); "
        f"train one with 'cnnkit train --out {tmp_path}'\n"
    )


@pytest.mark.slow
def test_resume_takes_no_other_options(existing_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--resume", str(existing_run), "--lr", "0.1"]) == 2
    assert capsys.readouterr().err.startswith(
        "cnnkit: error: --resume continues with the run's own options; remove --lr"
    )


def test_out_on_an_existing_run_needs_overwrite(
    existing_run: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["train", "--model", TINY, "--out", str(existing_run)]) == 2
    assert capsys.readouterr().err == (
        f"cnnkit: error: {existing_run} already holds a run; pass --overwrite to replace it "
        f"or --resume to continue it\n"
    )


def test_nan_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    args = ["train", "--model", TINY, "--lr", "1e6", "--batch-size", "100", "--device", "cpu"]
    assert main([*args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(
        rf"cnnkit: error: step \d+: the (loss|weights) became (nan|inf); lower --lr \(now 1e\+06\); "
        rf"the last good checkpoint \(step \d+\) is kept in {re.escape(str(out))}\n",
        err,
    ), err
    runs.load_model(out)  # the kept checkpoint loads


# ----------------------------------------------------------------------------- the demo


@pytest.mark.slow
def test_demo_reaches_97_percent_and_predicts_its_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    accuracy = float(text.split("test accuracy ")[1].split("%")[0])
    assert accuracy >= 97.0, text
    samples = sorted((out / "samples").glob("digit_*_label*.png"))
    assert len(samples) == 8
    for sample in samples:
        assert str(sample) in text
    assert math.isclose(
        runs.read_manifest(out)["metrics"]["final_val_acc"] * 100, accuracy, abs_tol=0.01
    )
