"""The GPU paths on the CPU (CI has no GPU): the colour preset, MFU, the CUDA recipe, on-device
metrics and evaluation, the batch that fits, and the one-line errors of issue 13."""

from __future__ import annotations

import ast
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit import cuda_recipe, devices, mfu, presets
from cnnkit.cli import main
from cnnkit.cuda_recipe import (
    BatchTooLargeError,
    DeviceMetrics,
    check_batch_fits,
    largest_fitting_batch,
)
from cnnkit.data import DeviceLoader, open_source
from cnnkit.errors import ConfigError
from cnnkit.network import build
from cnnkit.plan import plan
from cnnkit.train import TrainConfig, fit
from conftest import REPO

# ----------------------------------------------------------------------------- the colour preset


def test_cifar_fast_is_a_preset_with_airbench94s_widths():
    network = plan(presets.get("cifar-fast"))
    convs = [layer for layer in network.layers if layer.kind == "conv"]
    assert [c.output_shape[2] for c in convs] == [24, 64, 64, 256, 256, 256, 256]
    assert network.output_shape == (1, 1, 10)
    # Independent count: the 2x2 stem on 32x32x3 gives 31x31x24; each 3x3 conv is H*W*K*9*C.
    stem = 31 * 31 * 24 * 4 * 3
    groups = 31 * 31 * 64 * 9 * 24 + 15 * 15 * 64 * 9 * 64
    groups += 15 * 15 * 256 * 9 * 64 + 7 * 7 * 256 * 9 * 256
    groups += 7 * 7 * 256 * 9 * 256 + 3 * 3 * 256 * 9 * 256
    assert network.totals["macs"] == stem + groups + 256 * 10


@pytest.mark.slow
def test_cifar_fast_trains_on_the_cpu_on_uint8_colour_images():
    torch.manual_seed(0)
    model = build("cifar-fast", seed=0).train()
    images = torch.randint(0, 256, (32, 32, 32, 3), dtype=torch.uint8)  # (B, H, W, C)
    x = (images.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25  # (B, C, H, W)
    y = torch.randint(0, 10, (32,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(6):  # the same batch: the loss must fall as the network fits it
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_cifar_fast_runs_through_fit_on_an_npz(tmp_path):
    rng = np.random.default_rng(0)
    archive = tmp_path / "colour.npz"
    np.savez(
        archive,
        x_train=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, 10, 64),
        x_test=rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(32) % 10,
    )
    config = TrainConfig.for_model(
        "cifar-fast", data=str(archive), val="test", batch_size=16, device="cpu",
        out=str(tmp_path / "run"), quiet=True,
    )  # fmt: skip
    result = fit(config)
    assert result.summary["steps"] == 4
    assert math.isfinite(result.metrics[-1]["train_loss"])


# ----------------------------------------------------------------------------- MFU


def test_mfu_imports_no_torch():
    tree = ast.parse((REPO / "src" / "cnnkit" / "mfu.py").read_text(encoding="utf-8"))
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    for module in modules:
        assert module.split(".")[0] in sys.stdlib_module_names or module == "cnnkit.errors"


def test_mfu_of_a_known_case():
    # cifar-fast: 118,147,360 MACs forward; 250,000 images/s on a 989 TFLOP/s peak.
    flops_per_image = 118_147_360 * 2 * 3  # 708,884,160
    assert mfu.training_flops_per_image(118_147_360) == flops_per_image
    expected = flops_per_image * 250_000 / 989e12  # 0.17919...
    assert mfu.mfu(118_147_360, 250_000, 989.0) == pytest.approx(expected, rel=1e-12)
    assert 0.179 < expected < 0.1793


@pytest.mark.parametrize(
    ("name", "label", "bf16"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.4),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.5),
        ("NVIDIA H100 NVL", "H100 NVL", 835.5),
        ("NVIDIA H200", "H200 SXM", 989.4),
        ("NVIDIA GH200 480GB", "GH200", 989.4),
        ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
        ("NVIDIA A100 80GB PCIe", "A100", 312.0),
        ("NVIDIA A10", "A10", 125.0),
        ("NVIDIA L4", "L4", 121.0),
        ("NVIDIA L40S", "L40S", 362.05),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090", 165.2),
    ],
)
def test_peak_is_looked_up_from_the_cuda_device_name(name, label, bf16):
    row = mfu.find_peak(name)
    assert row is not None and row.label == label
    assert mfu.peak_for(name, "bf16") == bf16


@pytest.mark.parametrize("name", ["NVIDIA A10G", "Tesla T4", "NVIDIA L40", "AMD Instinct MI300X"])
def test_unknown_gpus_have_no_peak(name):
    assert mfu.find_peak(name) is None


def test_mfu_line_with_a_known_gpu_and_with_peak_tflops():
    line = mfu.mfu_line(118_147_360, 250_000, "NVIDIA H200", "bf16")
    assert line.startswith("MFU: 17.9% (177.2 of 989.4 TFLOP/s, H200 SXM dense bf16;")
    line = mfu.mfu_line(118_147_360, 250_000, "Some GPU", "bf16", peak_tflops=500)
    assert line.startswith("MFU: 35.4% (177.2 of 500 TFLOP/s, --peak-tflops;")


def test_unknown_gpu_without_peak_tflops_omits_mfu_with_a_note():
    line = mfu.mfu_line(1000, 5000.0, "Mystery GPU 9000", "bf16")
    assert line == (
        "MFU: omitted, no known bf16 peak for 'Mystery GPU 9000'; "
        "pass --peak-tflops N (its dense bf16 TFLOP/s)"
    )


def test_bad_peak_is_one_line():
    with pytest.raises(
        ConfigError, match=r"--peak-tflops must be a positive number such as 989, got 0"
    ):
        mfu.mfu(1000, 10.0, 0)
    with pytest.raises(ConfigError, match=r"precision 'fp16' has no peak in the table"):
        mfu.peak_for("NVIDIA H200", "fp16")


def test_train_cli_refuses_a_bad_peak_tflops(capsys):
    assert main(["train", "--peak-tflops", "-5"]) == 2
    err = capsys.readouterr().err
    assert "--peak-tflops must be a positive number such as 989, got -5.0" in err
    assert len(err.strip().splitlines()) == 1


def test_summary_has_no_mfu_line_on_the_cpu():
    class Result:
        summary = {"device": "cpu", "images_per_s": 100.0, "precision": "fp32"}
        manifest = {"plan_totals": {"macs": 1000}}

    assert cuda_recipe.summary_mfu_line(Result()) is None


# ----------------------------------------------------------------------------- the recipe


def fake_gpu(monkeypatch, capability=(9, 0), name="NVIDIA H200"):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


def test_the_cpu_config_is_left_untouched():
    config = TrainConfig.for_model("digits", device="cpu")
    assert cuda_recipe.cuda_recipe(config, torch.device("cpu")) is config


def test_cuda_recipe_sizes_the_batch_and_picks_bf16(monkeypatch):
    fake_gpu(monkeypatch)
    config = cuda_recipe.cuda_recipe(TrainConfig.for_model("digits"), torch.device("cuda"))
    assert (config.batch_size, config.lr, config.precision) == (512, 0.6, "bf16")
    assert config.channels_last
    # What the user gave is kept.
    mine = TrainConfig.for_model("digits", batch_size=128, precision="fp32")
    config = cuda_recipe.cuda_recipe(mine, torch.device("cuda"))
    assert (config.batch_size, config.lr, config.precision) == (128, 0.6, "fp32")


def test_auto_precision_is_fp32_on_a_gpu_without_bf16(monkeypatch):
    fake_gpu(monkeypatch, capability=(7, 5), name="Tesla T4")
    config = cuda_recipe.cuda_recipe(TrainConfig.for_model("digits"), torch.device("cuda"))
    assert config.precision == "fp32"


def test_bf16_on_a_gpu_without_bf16_is_one_line(monkeypatch):
    fake_gpu(monkeypatch, capability=(7, 0), name="Tesla V100-SXM2-16GB")
    with pytest.raises(
        ConfigError,
        match=r"^--precision bf16 but Tesla V100-SXM2-16GB has no bf16 arithmetic .*; "
        r"use --precision fp32$",
    ):
        devices.resolve_precision("bf16", torch.device("cuda"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line_and_saves_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--device", "cuda", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == "cnnkit: error: --device cuda but CUDA is not available here; use --device cpu"
    )
    assert not out.exists()


def test_cuda_speedups_sets_cudnn_benchmark_and_puts_it_back():
    before = torch.backends.cudnn.benchmark
    with cuda_recipe.cuda_speedups(torch.device("cuda")):
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == before
    with cuda_recipe.cuda_speedups(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark == before


# ----------------------------------------------------------------------------- on-device metrics


def test_device_metrics_give_the_numbers_of_per_step_item():
    torch.manual_seed(0)
    metrics = DeviceMetrics("cpu")
    loss_sum, correct, count = 0.0, 0, 0
    for n in (64, 64, 37):
        logits, labels = torch.randn(n, 10), torch.randint(0, 10, (n,))
        loss = F.cross_entropy(logits, labels, label_smoothing=0.1)
        metrics.add(loss, logits, labels)
        # The CPU loop's way: one .item() per step, summed on the host.
        loss_sum += loss.item() * n
        correct += int((logits.argmax(1) == labels).sum().item())
        count += n
    sums = metrics.read()
    assert sums.count == count and sums.finite
    assert sums.loss == pytest.approx(loss_sum / count, rel=1e-12)
    assert sums.accuracy == correct / count
    assert metrics.read().count == 0  # read starts again


def test_device_metrics_flag_a_loss_that_is_not_finite():
    metrics = DeviceMetrics("cpu")
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    metrics.add(torch.tensor(1.0), logits, labels)
    metrics.add(torch.tensor(float("nan")), logits, labels)
    assert not metrics.read().finite


def test_evaluate_matches_a_plain_loop():
    split = open_source("mnist-mini").splits["test"]
    loader = DeviceLoader(
        split, batch_size=700, device="cpu", mean=[0.1307], std=[0.3081],
        shuffle=False, drop_last=False,
    )  # fmt: skip
    model = build("digits", seed=0).eval()
    result = cuda_recipe.evaluate(model, loader)
    losses, right = [], 0
    with torch.no_grad():
        for x, y in loader.epoch(0):
            logits = model(x)
            losses.append(F.cross_entropy(logits, y, reduction="none"))
            right += int((logits.argmax(1) == y).sum())
    assert result.count == len(split)
    assert result.loss == pytest.approx(float(torch.cat(losses).double().mean()), rel=1e-6)
    assert result.accuracy == right / len(split)


# ----------------------------------------------------------------------------- the batch that fits


def test_largest_fitting_batch_halves_on_out_of_memory():
    tried = []

    def step(n: int) -> None:
        tried.append(n)
        if n > 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    assert largest_fitting_batch(step, 1000) == 62
    assert tried == [1000, 500, 250, 125, 62]
    assert largest_fitting_batch(step, 64) == 64


class OutOfMemoryAbove(nn.Module):
    """A model that runs out of 'GPU memory' above `limit` images, as CUDA would."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.fc = nn.Linear(3 * 4 * 4, 10)
        self.norm = nn.BatchNorm1d(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return self.norm(self.fc(x.flatten(1)))


def test_a_batch_that_does_not_fit_names_one_that_does():
    model = OutOfMemoryAbove(limit=100)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        BatchTooLargeError,
        match=r"^--batch-size 512 does not fit in the memory of cpu; 64 fits: pass --batch-size 64$",
    ):
        check_batch_fits(model, 512, (4, 4, 3), torch.device("cpu"))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # probed on a copy
    check_batch_fits(model, 100, (4, 4, 3), torch.device("cpu"))  # fits: no error


def test_not_even_one_image_fits():
    with pytest.raises(BatchTooLargeError, match=r"^--batch-size 8: not even one image fits"):
        check_batch_fits(OutOfMemoryAbove(limit=0), 8, (4, 4, 3), torch.device("cpu"))


# ----------------------------------------------------------------------------- the loop's CUDA path


LOOP_SPEC = "28x28x1 > conv 4@3x3 same > maxpool 2 > bn > relu > flatten > fc 10"


def loop_config(tmp_path, name: str, **options) -> TrainConfig:
    options = {"model": LOOP_SPEC, "epochs": 1, "batch_size": 200, "eval_every": 0.5, **options}
    return TrainConfig(out=str(tmp_path / name), device="cpu", quiet=True, **options)


@pytest.fixture
def gpu_path(monkeypatch):
    """fit() takes its CUDA branches on the CPU; returns the names of the recipe pieces called."""
    from cnnkit import train, train_loop

    called: list[str] = []

    def spy(name, function):
        def wrapper(*args, **kwargs):
            called.append(name)
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(train_loop, "on_gpu", lambda device: True)
    monkeypatch.setattr(train, "cuda_recipe", spy("cuda_recipe", train.cuda_recipe))
    monkeypatch.setattr(train, "check_batch_fits", spy("check_batch_fits", check_batch_fits))
    monkeypatch.setattr(cuda_recipe, "evaluate", spy("evaluate", cuda_recipe.evaluate))
    read = DeviceMetrics.read
    monkeypatch.setattr(DeviceMetrics, "read", lambda self: spy("read", read)(self))
    return called


@pytest.mark.slow
def test_the_cuda_path_gives_the_cpu_paths_figures(tmp_path, request):
    cpu = fit(loop_config(tmp_path, "cpu"))
    called = request.getfixturevalue("gpu_path")
    gpu = fit(loop_config(tmp_path, "gpu"))
    assert called[:2] == ["cuda_recipe", "check_batch_fits"]
    assert called.count("evaluate") == len(gpu.metrics) >= 2
    assert called.count("read") >= 2  # at each evaluation and save, not at each step
    assert [m["step"] for m in gpu.metrics] == [m["step"] for m in cpu.metrics]
    for ours, theirs in zip(gpu.metrics, cpu.metrics, strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), key
    for key, value in cpu.model.state_dict().items():  # the steps themselves are the same ops
        assert torch.equal(gpu.model.state_dict()[key], value), key
    assert gpu.summary["step_images_per_s"] >= gpu.summary["images_per_s"] > 0
    assert cpu.summary["step_images_per_s"] >= cpu.summary["images_per_s"] > 0


@pytest.mark.slow
def test_the_cuda_recipe_shapes_a_new_runs_saved_config_and_not_a_resume(
    tmp_path, monkeypatch, gpu_path
):
    import dataclasses

    from cnnkit import runs, train
    from cnnkit.errors import CheckpointError
    from cnnkit.train import resume

    def recipe(config, device):
        gpu_path.append("cuda_recipe")
        return dataclasses.replace(config, lr=0.05)

    monkeypatch.setattr(train, "cuda_recipe", recipe)
    result = fit(loop_config(tmp_path, "run", lr=0.1))
    assert runs.read_state(result.run)["config"]["lr"] == 0.05
    assert result.manifest["train_config"]["lr"] == 0.05
    with pytest.raises(CheckpointError, match="already finished"):
        resume(result.run)
    assert gpu_path.count("cuda_recipe") == 1  # the resumed run keeps the saved config


def test_a_batch_too_large_on_the_cuda_path_is_one_line_and_saves_nothing(
    tmp_path, monkeypatch, capsys, gpu_path
):
    # The first try at 200 runs out of memory, 100 fits.
    monkeypatch.setattr(cuda_recipe, "largest_fitting_batch", lambda step, n: n // 2)
    out = tmp_path / "run"
    args = ["train", "--model", LOOP_SPEC, "--batch-size", "200", "--device", "cpu"]
    assert main([*args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "cnnkit: error: --batch-size 200 does not fit in the memory of cpu; "
        "100 fits: pass --batch-size 100"
    )
    assert not out.exists()


def test_a_loss_that_is_not_finite_on_the_cuda_path_names_its_steps(tmp_path, gpu_path):
    config = loop_config(tmp_path, "run", lr=1e6, optimizer="sgd")
    with pytest.raises(
        ConfigError,
        match=r"^(steps \d+-\d+: the loss became nan or inf|step \d+: the weights became "
        r"(nan|inf)); lower --lr \(now 1e\+06\); the last good checkpoint \(step 0\)",
    ):
        fit(config)
