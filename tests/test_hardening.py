"""Issue 11's inputs that once gave a traceback, a hang or a huge allocation: each is now one error
line and exit 2 (or the project's own error, in process), within the budgets of cnnkit.budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from cnnkit import budgets, runs
from cnnkit.cli import main
from cnnkit.errors import CheckpointError, ConfigError, SpecError
from cnnkit.plan import plan
from cnnkit.spec import load_text, parse

TINY = "8x8x1 > conv 4@3x3 same > relu > flatten > fc 3"


def one_error(capsys, argv: list[str]) -> str:
    """The first stderr line of `cnnkit argv`, after checking exit 2 and no traceback. A notation
    error adds the spec and a caret under the bad part, cut to QUOTE_CHARS (two short lines)."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("cnnkit"), err
    lines = err.splitlines()
    assert len(lines) == 1 or (
        len(lines) == 3 and len(lines[1]) < 100 and not lines[2].strip("^ ")
    ), err
    assert len(lines[0]) < 400, err
    return lines[0]


# ----------------------------------------------------------------------------- notation


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("28x28x1 > flatten > fc ²", r"'²' is not a whole number of outputs"),
        ("28x28x1 > res ²", r"'²' is not a filter count"),
        ("28x28x1 > flatten > fc " + "9" * 5000, r"has over 12 digits"),
        ("28x28x1 > conv 6@5x5 s" + "9" * 40, r"has over 12 digits"),
        ("28x28x1 > relu " + "a" * 5000, r"is over 80 characters long"),
        ("28x28x1" + ">relu" * 200_000, r"has 200,000 layers, over the cap of 1,000"),
        ("28x28x1" + " > relu" * 1_001, r"has 1,001 layers, over the cap of 1,000"),
        ("x" * (budgets.MAX_SPEC_BYTES + 1), r"over the cap of 1,048,576"),
    ],
)
def test_bad_notation_is_one_error(capsys, text, message):
    started = time.perf_counter()
    with pytest.raises(SpecError, match=message):
        parse(text)
    assert one_error(capsys, ["plan", text])
    assert time.perf_counter() - started < 5  # 200,000 layers once took over 40 s


def test_a_long_spec_is_quoted_in_80_characters_around_the_error():
    text = "28x28x1" + " > relu" * 500 + " > conv 6@5x5 zz"
    with pytest.raises(SpecError) as error:
        parse(text)
    lines = str(error.value).splitlines()
    assert all(len(line) < 200 for line in lines), lines
    assert lines[1].strip().startswith("...") and "conv 6@5x5 zz" in lines[1]
    assert lines[2].index("^") == lines[1].index("zz")  # the caret stays under the bad part


# ----------------------------------------------------------------------------- spec files


def nested(depth: int) -> str:
    return '{"input": [28, 28, 1], "layers": ' + "[" * depth + "]" * depth + "}"


BOMB = "\n".join(
    [f"a0: &a0 [{', '.join(['lol'] * 9)}]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    + ["input: *a9", "layers: []"]
)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("deep.json", nested(5_000), r"not valid YAML/JSON .*nesting depth|nested"),
        ("deep100.json", nested(100), r"is nested over 64 levels deep"),
        ("bomb.yaml", BOMB, r"reuses a value \(a YAML anchor and alias"),
        ("self.yaml", "input: &a [*a]\nlayers: []", r"reuses a value"),
        ("digits.yaml", "input: [28, 28, " + "9" * 5000 + "]\nlayers: []", r"cannot be read"),
        ("digits13.json", '{"input": [28, 28, 1234567890123], "layers": []}', r"13 digits"),
        ("big.json", '{"input": [28, 28, 1], "layers": []}' + " " * (1 << 20), r"over the cap"),
        ("wide.json", json.dumps({"input": [8, 8, 1], "layers": [{"type": "relu"}] * 5000}), "5,000 layers"),
        ("long.json", json.dumps({"input": ["x" * 10_000], "layers": []}), r"got \['xxx"),
        ("fc.yaml", "input: [28, 28, 1]\nlayers: [{type: flatten}, {type: fc, out_features: ²}]", "whole number"),
    ],
)  # fmt: skip
def test_bad_spec_files_are_one_error(capsys, tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(SpecError, match=message):
        load_text(text)
    assert one_error(capsys, ["plan", str(path)])
    assert time.perf_counter() - started < 5  # a 600-byte bomb once took over 30 s


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_special_files_as_spec_files_are_refused_without_reading(capsys, tmp_path, kind):
    path = tmp_path / "spec.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    assert "is not a regular file" in one_error(capsys, ["plan", str(path)])


# ----------------------------------------------------------------------------- model size


def test_a_model_over_2_31_parameters_is_refused_before_build():
    from cnnkit.network import build

    with pytest.raises(
        SpecError, match=r"has 1,707,\d{3},\d{3},\d{3} parameters .* over the budget"
    ):
        build("28x28x1 > flatten > fc 2147483647 > fc 10")


def test_a_training_step_over_the_memory_available_is_refused_with_its_figure():
    figure = budgets.training_bytes(plan(TINY), 64)
    # 4 x 4 bytes per parameter; 2 x 4 bytes per activation and 4 per input value, per image.
    totals = plan(TINY).totals
    assert figure == 16 * totals["params"] + 64 * (8 * totals["neurons"] + 4 * 64)
    with pytest.raises(ConfigError, match=r"needs at least .* more than the 1.0 kB of memory"):
        budgets.check_training(plan(TINY), 64, available=1000)
    budgets.check_training(plan(TINY), 64, available=figure)


# ----------------------------------------------------------------------------- train options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--seed", "-1"], r"-1 is negative; use 0 or more"),
        (["--seed", "99999999999999999999999"], r"has too many digits"),
        (["--seed", "4294967296"], r"over 2\^32 - 1"),
        (["--lr", "1e308"], r"1e308 is over 1e\+09, past any learning rate that trains"),
        (["--lr", "nan"], r"'nan' is not a finite number"),
        (["--input", "4000x4000x1"], r"needs at least .* GB, more than the .* of memory available"),
        (
            ["--model", "28x28x1 > flatten > fc 2147483647 > fc 10"],
            r"the model has 1,707,249,499,375 parameters \(6.8 TB of float32 weights\), over",
        ),
    ],
)
def test_train_options_out_of_budget_are_one_error(capsys, tmp_path, options, message):
    out = tmp_path / "run"
    line = one_error(capsys, ["train", "--epochs", "1", "--out", str(out), *options])
    assert pytest.importorskip("re").search(message, line), line
    assert not out.exists()


def test_one_image_per_class_says_why_no_split_can_work(capsys, tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("L", (8, 8), 9).save(tmp_path / "data" / name / "0.png")
    line = one_error(
        capsys,
        ["train", "--data", str(tmp_path / "data"), "--model", TINY, "--out", str(tmp_path / "r")],
    )
    assert "each class has 1 image" in line and "use --val none" in line


# ----------------------------------------------------------------------------- manifests


@pytest.fixture
def run(tmp_path: Path) -> Path:
    from cnnkit.network import build

    path = runs.prepare_run_dir(tmp_path / "run")
    manifest = runs.make_manifest(parse(TINY), ["a", "b", "c"], [0.5], [0.25])
    runs.save_model(path, build(TINY, seed=0), manifest)
    return path


def edit(run: Path, change) -> None:
    path = run / runs.MANIFEST
    document = json.loads(path.read_text())
    text = change(document)
    path.write_text(text if isinstance(text, str) else json.dumps(document))


def deep_manifest(document: dict) -> str:
    return json.dumps(document)[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(weights="model.safetensors"), r"weights must be \{file, sha256, bytes\}"),
        (deep_manifest, r"cannot be read \(nests too deep\)"),
        (lambda d: json.dumps(d)[:-1] + ', "n": ' + "9" * 5000 + "}", r"cannot be read \(Exceeds"),
        (lambda d: d["train_config"].update(lr=10**30), r"holds a whole number of 31 digits, over the 18-digit cap"),
        (lambda d: d["preprocessing"].update(resize="../../x"), r"resize '../../x' is not one of"),
        (lambda d: d["preprocessing"].update(mean=[1e308], std=[1e-300]), r"preprocessing mean \[1e\+308\]"),
        (lambda d: d["preprocessing"].update(std=[1e-300]), r"preprocessing std \[1e-300\] must be"),
        (lambda d: d["preprocessing"].update(mean=[float("nan")]), r"preprocessing mean \[nan\]"),
        (lambda d: d.update(class_names=["a\nb", "b", "c"]), r"class name 'a\\nb' must be 1 to 200"),
        (lambda d: d.update(class_names=["x" * 201, "b", "c"]), r"class name 'xxx"),
        (lambda d: d.update(spec="28x28x1"), r"spec must be a mapping"),
        (lambda d: d.update(other={"from": "runs/a"}) and None, None),  # unknown keys are allowed
    ],
)  # fmt: skip
def test_edited_manifests_are_refused_field_by_field(run, change, message):
    edit(run, change)
    if message is None:
        runs.read_manifest(run)
        return
    with pytest.raises(CheckpointError, match=message) as error:
        runs.read_manifest(run)
    assert len(str(error.value)) < 400


def test_a_manifest_spec_too_large_to_build_is_refused_before_building(run):
    def huge(document):
        document["spec"]["layers"][-1]["out_features"] = 2_000_000_000

    edit(run, huge)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"cannot be built: the model has .* over the budget"):
        runs.load_model(run)
    assert time.perf_counter() - started < 5


@pytest.mark.slow
def test_a_manifest_spec_of_200000_layers_is_refused_fast(run):
    edit(run, lambda d: d["spec"].update(layers=[{"type": "relu"}] * 200_000))
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"holds over 200,000 values"):
        runs.load_model(run)
    assert time.perf_counter() - started < 5


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_special_files_as_weights_or_manifest_are_refused(run, kind):
    for name in (runs.WEIGHTS, runs.MANIFEST):  # each in turn, the other one intact
        target = run / name
        saved = target.read_bytes()
        target.unlink()
        os.mkfifo(target) if kind == "fifo" else target.symlink_to("/dev/zero")
        with pytest.raises(CheckpointError, match=r"is not a regular file"):
            runs.load_model(run)
        target.unlink()
        target.write_bytes(saved)


@pytest.mark.parametrize("argv", [["report"], ["evaluate", "--data", "mnist-mini", "--plots"]])
def test_report_and_evaluate_refuse_a_class_name_with_a_newline(capsys, run, tmp_path, argv):
    edit(run, lambda d: d.update(class_names=["a\nb", "b", "c"]))
    argv = [*argv[:1], str(run), *argv[1:]] + (
        [str(tmp_path / "plots")] if "--plots" in argv else []
    )
    assert "class name 'a\\nb' must be" in one_error(capsys, argv)


# ----------------------------------------------------------------------------- as a user runs it


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan", "28x28x1 > flatten > fc ²"], "is not a whole number of outputs"),
        (["train", "--seed", "-1"], "-1 is negative"),
        (["plan", "28x28x1" + ">relu" * 20_000], "over the cap of 1,000"),
    ],
)
def test_representative_cases_in_a_real_process(argv, message):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "cnnkit", *argv], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
