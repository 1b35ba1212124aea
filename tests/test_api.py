"""The notebook API: help(cnnkit), cnnkit.fit on arrays, evaluate/predict wrappers, --threads."""

from __future__ import annotations

import os
import pydoc
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit import threads
from cnnkit.cli import main
from cnnkit.data import open_source
from cnnkit.data.arrays import arrays_dataset
from cnnkit.errors import CheckpointError, ConfigError, DataError
from conftest import REPO

TINY = "28x28x1 > conv 4@3x3 same > maxpool 2 > bn > relu > flatten > fc 10"
QUICK = {"epochs": 1, "batch_size": 50, "device": "cpu", "quiet": True, "threads": 1}
API = ("plan", "build", "fit", "load", "evaluate", "predict")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """300 training digits as a notebook holds them: uint8 (N, H, W), labels (N,)."""
    train = open_source("mnist-mini:train", progress=False).splits["train"]
    return train.images[:300, ..., 0], train.labels[:300]


@pytest.fixture(scope="module")
def arrays_run(digits, tmp_path_factory: pytest.TempPathFactory) -> cnnkit.train.FitResult:
    out = tmp_path_factory.mktemp("api") / "arrays"
    return cnnkit.fit(digits, model=TINY, out=str(out), **QUICK)


# ----------------------------------------------------------------------------- discoverable


def test_help_lists_the_api_each_with_a_docstring_and_an_example() -> None:
    text = pydoc.render_doc(cnnkit, renderer=pydoc.plaintext)
    for name in API:
        assert re.search(rf"^    {name}\(", text, re.MULTILINE), name
        doc = getattr(cnnkit, name).__doc__
        assert doc and ">>>" in doc, f"cnnkit.{name} needs a docstring with an example"
    assert set(API) <= set(cnnkit.__all__)


def test_import_cnnkit_stays_light() -> None:
    code = "import sys, cnnkit; print('torch' in sys.modules, 'numpy' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", "False"], out.stderr


# ----------------------------------------------------------------------------- fit on arrays


@pytest.mark.slow
def test_fit_on_arrays_returns_a_one_line_result(arrays_run) -> None:
    text = repr(arrays_run)
    assert "\n" not in text
    assert re.fullmatch(
        r"FitResult\(run='.+arrays', model='28x28x1 > .+', best_val_acc=0\.\d{4}, "
        r"final_val_acc=0\.\d{4}, steps=5, seconds=[\d.]+\)",
        text,
    ), text
    assert arrays_run.manifest["train_config"]["data"] == "<arrays 300x28x28x1>"


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x[..., None],  # NHWC uint8
        lambda x: x.astype(np.float32) / 255,  # floats in [0, 1]
        lambda x: x.astype(np.float64),  # whole numbers 0..255 as floats
    ],
)
def test_every_accepted_layout_gives_the_same_pixels(digits, convert) -> None:
    x, y = digits
    expected = arrays_dataset((x, y)).splits["train"].images
    got = arrays_dataset((convert(x), y)).splits["train"].images
    assert got.shape == (300, 28, 28, 1) and np.array_equal(got, expected)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x, y: (x[0], y), r"images x have shape \(28, 28\); expected \(N, H, W\) or"),
        (lambda x, y: (x[:, None], y), r"images x have shape \(300, 1, 28, 28\); expected"),
        (lambda x, y: (x, y[:10]), r"300 images x \(300, 28, 28, 1\) but 10 labels y \(10,\)"),
        (lambda x, y: (x, y.astype(float)), r"labels y have shape \(300,\) and dtype float64"),
        (
            lambda x, y: (x.astype(float) * 2.5 - 1, y),
            r"images x has dtype float64 with values -1..636.5",
        ),
        (lambda x, y: ("mnist", y), r"data given as tuple; expected a pair \(x, y\) of arrays"),
    ],
)
def test_bad_arrays_are_one_line_naming_the_shapes(digits, make, message) -> None:
    x, y = digits
    with pytest.raises(DataError, match=r"cnnkit.fit: .*" + message):
        cnnkit.fit(make(x, y))


def test_labels_beyond_the_class_names_are_refused(digits) -> None:
    with pytest.raises(
        DataError, match=r"train labels run 0..9, but 3 class names allow only 0..2"
    ):
        cnnkit.fit(digits, class_names=["a", "b", "c"])


def test_an_arrays_run_cannot_reopen_its_data(arrays_run, digits) -> None:
    with pytest.raises(DataError, match=r"trained from arrays in memory \(<arrays 300x28x28x1>\)"):
        cnnkit.evaluate(arrays_run.run)
    with pytest.raises(CheckpointError, match="cannot resume"):
        cnnkit.train.resume(arrays_run.run)
    report = cnnkit.evaluate(arrays_run.run, digits)
    assert 0.5 < report["accuracy"] <= 1


def test_evaluate_and_predict_wrap_the_run(arrays_run, digits) -> None:
    report = cnnkit.evaluate(arrays_run.run, "mnist-mini:test", threads=1)
    assert report["split"] == "test" and 0.5 < report["accuracy"] <= 1
    x, y = digits
    rows = cnnkit.predict(arrays_run.run, [x[0], x[1]], top_k=2)
    assert [len(row["top"]) for row in rows] == [2, 2]
    classifier = cnnkit.load(arrays_run.run)
    assert cnnkit.predict(classifier, x[0])[0]["top"] == classifier.predict(x[0])[0]["top"]


def test_classifier_fit_was_renamed_prepare(arrays_run, digits) -> None:
    classifier = cnnkit.load(arrays_run.run)
    assert classifier.prepare(digits[0][0]).shape == (28, 28, 1)
    with pytest.raises(AttributeError, match="renamed Classifier.prepare"):
        classifier.fit(digits[0][0])


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize(
    ("cores", "load", "env", "expected"),
    [
        (2, 0, "", 2),  # idle: every core
        (2, 1, "", 1),  # one core busy
        (2, 6, "", 1),  # busier than the machine: still one
        (16, 3, "", 13),
        (2, 6, "3", 3),  # OMP_NUM_THREADS wins
        (4, None, "", 4),  # no /proc: every core
    ],
)
def test_default_threads_leave_the_busy_cores(monkeypatch, cores, load, env, expected) -> None:
    monkeypatch.setattr(threads, "cores", lambda: cores)
    monkeypatch.setattr(threads, "others_running", lambda: load)
    monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert threads.default_threads() == expected


def test_bad_threads_are_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(
        ConfigError, match=r"--threads must be a whole number >= 1 such as 2, got 0"
    ):
        cnnkit.fit("mnist-mini", threads=0, out=str(tmp_path / "x"))
    for command in (["train"], ["evaluate", "runs/x"], ["predict", "runs/x", "a.png"]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--threads", "0"])
        assert exit_.value.code == 2
        assert "argument --threads: 0 must be at least 1" in capsys.readouterr().err


def test_fit_puts_the_thread_count_back(tmp_path: Path, digits) -> None:
    import torch

    before = torch.get_num_threads()
    result = cnnkit.fit(digits, model=TINY, out=str(tmp_path / "t"), **{**QUICK, "threads": 2})
    assert result.summary["threads"] == 2
    assert torch.get_num_threads() == before


def test_the_functions_keep_their_names_when_their_modules_are_imported() -> None:
    from cnnkit.plan import Plan  # noqa: F401
    from cnnkit.predict import Classifier  # noqa: F401

    assert cnnkit.predict.__module__ == "cnnkit.api" and cnnkit.plan.__module__ == "cnnkit.plan"
    assert callable(cnnkit.predict) and callable(cnnkit.plan)
