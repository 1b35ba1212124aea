"""train --from/--freeze: what is kept, adapted, re-initialised and frozen, and every refusal.

Tiny specs on mnist-mini keep each run to a few seconds. The channel adaptation is checked
against an independent reference: a gray image through the source's first conv must give what
the same image, replicated to RGB, gives through the adapted conv.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cnnkit import runs, transfer
from cnnkit.cli import main
from cnnkit.data import open_source
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.train import TrainConfig, fit

FLAT = "28x28x1 > conv 4@3x3 same > maxpool 2 > bn > relu > flatten > fc 10"
DEEP_FLAT = "28x28x1 > conv 4@3x3 same > maxpool 2 > relu > flatten > fc 16 > relu > fc 10"
GAP = "28x28x1 > conv 4@3x3 same > bn > relu > conv 8@3x3 same > relu > gap > fc 10"
QUICK = {"epochs": 1, "batch_size": 100, "device": "cpu", "quiet": True, "threads": 1}


def train_run(path: Path, model: str, **options) -> Path:
    fit(TrainConfig(model=model, out=str(path), **{**QUICK, **options}))
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(tmp_path_factory.mktemp("transfer") / "source", FLAT)


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .npz of digits 0, 1, 2 renamed a, b, c: other classes than the source's."""
    train = open_source("mnist-mini:train", progress=False).splits["train"]
    keep = np.flatnonzero(train.labels < 3)[:300]
    path = tmp_path_factory.mktemp("npz") / "abc.npz"
    np.savez(
        path,
        x_train=train.images[keep][..., 0],
        y_train=train.labels[keep],
        class_names=np.array(["a", "b", "c"]),
    )
    return path


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / runs.WEIGHTS))


@pytest.mark.slow
def test_same_classes_keep_every_layer_and_the_manifest_names_the_source(
    source: Path, tmp_path: Path
) -> None:
    target = fit(
        TrainConfig(model="digits", from_run=str(source), out=str(tmp_path / "ft"), **QUICK)
    )
    lineage = target.manifest["from"]
    assert lineage["run"] == str(source)
    assert lineage["weights_sha256"] == runs.read_manifest(source)["weights"]["sha256"]
    assert lineage["transferred"] == ["conv1", "bn1", "fc1"]
    assert lineage["reinitialised"] == [] and lineage["frozen"] == []
    assert any(note.startswith(f"weights from {source}: 3 layer(s) kept") for note in target.notes)


def test_new_classes_get_a_new_head_and_freeze_keeps_the_features(
    source: Path, three_classes: Path, tmp_path: Path
) -> None:
    run = tmp_path / "frozen"
    result = fit(
        TrainConfig(
            data=str(three_classes), from_run=str(source), freeze=True, out=str(run), **QUICK
        )
    )
    lineage = result.manifest["from"]
    assert lineage["reinitialised"] == ["fc1"] and lineage["reason"] == "new classes"
    assert lineage["frozen"] == ["conv1", "bn1"]
    assert result.manifest["class_names"] == ["a", "b", "c"]
    before, after = weights(source), weights(run)
    # Frozen: no gradient moved the conv, and BN in eval mode kept the source's statistics.
    for key in ("conv1.weight", "conv1.bias", "bn1.weight", "bn1.running_mean", "bn1.running_var"):
        assert torch.equal(before[key], after[key]), key
    assert after["fc1.weight"].shape == (3, before["fc1.weight"].shape[1])
    note = next(n for n in result.notes if n.startswith("weights from"))
    assert "fc1 re-initialised for its new classes" in note and "frozen" in note


def test_without_freeze_the_features_train_on(
    source: Path, three_classes: Path, tmp_path: Path
) -> None:
    run = train_run(tmp_path / "free", "digits", data=str(three_classes), from_run=str(source))
    assert not torch.equal(weights(source)["conv1.weight"], weights(run)["conv1.weight"])


def test_gray_to_rgb_replicates_the_first_filters_by_reference(source: Path) -> None:
    """A gray image through the source conv == the same image as RGB through the adapted one."""
    from cnnkit.network import build

    spec, _ = transfer.target_spec(
        transfer.open_run(source), "28x28x3", [str(i) for i in range(10)]
    )
    model = build(spec, seed=1)
    lineage = transfer.transfer_weights(
        model, transfer.open_run(source), [str(i) for i in range(10)]
    )
    assert lineage["adapted"] == ["conv1"]
    gray = torch.rand(2, 1, 28, 28)
    old = weights(source)
    expected = F.conv2d(gray, old["conv1.weight"], old["conv1.bias"], padding=1)
    got = model.conv1(gray.repeat(1, 3, 1, 1))
    assert torch.allclose(got, expected, atol=1e-5)
    back = transfer._adapt_channels(model.conv1.weight.detach(), 1)  # RGB -> gray: the sum
    assert torch.allclose(back, old["conv1.weight"], atol=1e-6)


@pytest.mark.slow
def test_a_gap_model_moves_to_another_size_and_keeps_its_head(tmp_path: Path) -> None:
    gap = train_run(tmp_path / "gap", GAP)
    result = fit(
        TrainConfig(from_run=str(gap), input="32x32x1", out=str(tmp_path / "big"), **QUICK)
    )
    assert result.manifest["input_shape"] == [32, 32, 1]
    assert result.manifest["from"]["transferred"] == ["conv1", "bn1", "conv2", "fc1"]


@pytest.mark.slow
def test_an_fc_after_flatten_cannot_move_to_another_size(tmp_path: Path) -> None:
    deep = train_run(tmp_path / "deep", DEEP_FLAT)
    message = (
        f"--from {deep}: its fc1.weight (16x784) cannot fill 16x1024 on the new input; layers "
        f"after flatten depend on the input size: drop --input to train on the run's 28x28x1, "
        f"or start from a run whose model ends in global average pooling"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        fit(TrainConfig(from_run=str(deep), input="32x32x1", out=str(tmp_path / "x"), **QUICK))
    assert not (tmp_path / "x").exists()  # refused before anything was left behind


# ----------------------------------------------------------------------------- the command


@pytest.mark.slow
def test_model_given_a_run_means_from(source: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "via-model"
    args = ["train", "--model", str(source), "--out", str(out), "--epochs", "1", "--quiet"]
    assert main([*args, "--device", "cpu", "--threads", "1"]) == 0
    assert runs.read_manifest(out)["from"]["run"] == str(source)
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--freeze"], r"--freeze keeps the layers of --from RUN fixed; give --from RUN too"),
        (["--model", "{folder}"], r"--model '{folder}' is a folder without cnnkit.json, not a run"),
        (["--from", "{folder}"], r"--from {folder}: not a cnnkit run \(no cnnkit.json\)"),
        (["--from", "{source}", "--model", "lenet5"], r"--from {source} brings its own network"),
    ],
)
def test_bad_transfer_options_are_one_line_and_exit_2(
    extra: list[str], message: str, source: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    fill = {"folder": str(folder), "source": str(source)}
    args = [part.format(**fill) for part in extra]
    assert main(["train", *args, "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.search(message.format(**fill), err), err


def test_from_an_unreadable_run_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a cnnkit run"):
        transfer.open_run(tmp_path)
