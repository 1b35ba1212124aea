"""Issue 13's figures, both sides in one process: MNIST time-to-accuracy (cnnkit and the plain
baseline of bench/gpu_baseline.py), the colour preset's images/s and MFU (eager, torch.compile,
CUDA graphs), and bitwise CPU determinism. Called by bench/gpu_check.py; see bench/gpu.sh.

`elapsed_s` is training plus evaluation, after one warm-up run of the same kind (CUDA start-up
and cudnn autotuning excluded); compile time is reported apart. Every section checks a shared
deadline (CNNKIT_GPU_BUDGET_S, 330 s by default) and is skipped once it has passed.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gpu_baseline
import numpy as np
import torch
import torch.nn.functional as F

from cnnkit import mfu, presets
from cnnkit.cuda_recipe import cuda_recipe
from cnnkit.data import DeviceLoader, parse_augment
from cnnkit.data.dataset import Split
from cnnkit.network import build
from cnnkit.plan import plan
from cnnkit.train import TrainConfig, fit

WIDE = (  # for 99.5%: the digits layout at the baseline's wide widths
    "28x28x1 > conv 64@3x3 same > maxpool 2 > bn > relu > conv 128@3x3 same > maxpool 2 > bn"
    " > relu > conv 256@3x3 same > maxpool 2 > bn > relu > flatten > fc 10"
)


@dataclass(frozen=True)
class Sizes:
    """What one call measures; SMOKE is the same path at sizes the CPU finishes in a minute."""

    seeds: int
    targets: tuple[float, float]
    data: str  # cnnkit's source for the MNIST race
    baseline_limit: int | None  # training images for the baseline (None: all 60,000)
    colour_batches: tuple[int, ...]
    colour_steps: int
    compile_modes: tuple[str, ...]  # besides eager, at the first batch
    wide_epochs: int
    variants: tuple[int, ...]  # which of race()'s cnnkit variants run


FULL = Sizes(5, (0.99, 0.995), "mnist", None, (1024, 2048), 50,
             ("default", "reduce-overhead"), 8, (0, 1, 2, 3))  # fmt: skip
SMOKE = Sizes(1, (0.8, 0.9), "mnist-mini", 4096, (32,), 3, (), 1, (0,))


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spread(values: list[float]) -> str:
    """'median 0.61 s (0.55-0.70, 5 of 5)' over the runs that reached the target."""
    if not values:
        return "not reached"
    return f"median {statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


# ----------------------------------------------------------------------------- MNIST race


def cnnkit_runs(
    device: torch.device, sizes: Sizes, target: float, options: dict[str, Any], folder: Path
) -> list[float | None]:
    """cnnkit's fit() with the CUDA recipe, once per seed: elapsed_s at the first evaluation at
    or above `target` (None when the run ended below it)."""
    times: list[float | None] = []
    for seed in range(-1, sizes.seeds):  # seed -1: the warm-up, not counted
        config = TrainConfig.for_model(
            options.get("model", "digits"),
            **{k: v for k, v in options.items() if k != "model"},
            data=sizes.data, val="test", target_acc=target, device=device.type,
            seed=max(seed, 0), out=str(folder / "race"), overwrite=True, quiet=True,
        )  # fmt: skip
        result = fit(cuda_recipe(config, device))
        hit = next((r for r in result.metrics if r["val_acc"] >= target), None)
        if seed >= 0:
            times.append(None if hit is None else hit["elapsed_s"])
    return times


def baseline_runs(
    data: gpu_baseline.Data, recipe: gpu_baseline.Recipe, sizes: Sizes
) -> dict[float, list[float | None]]:
    gpu_baseline.train(data, recipe, seed=100, targets=sizes.targets)  # warm-up
    runs = [gpu_baseline.train(data, recipe, seed, sizes.targets) for seed in range(sizes.seeds)]
    return {t: [r["reached"][t] for r in runs] for t in sizes.targets}


def race(device: torch.device, sizes: Sizes, row: Callable, budget: Budget) -> None:
    """MNIST to the two targets: cnnkit's variants, then the baseline's, in this process."""
    mnist = Path(os.environ.get("CNNKIT_DATA", "/nonexistent")) / "mnist"
    if sizes.data == "mnist" and not mnist.is_dir():
        row(
            "MNIST race", "full MNIST missing: carry .gpu-data (bash bench/gpu.sh --prepare)", False
        )
        return
    low, high = sizes.targets
    variants = [  # (name, target, options); the lr sweep is the GPU recipe's tuning
        ("digits, CUDA recipe (batch 512, lr 0.6)", low, {"epochs": 2}),
        ("digits, batch 512, lr 1.0", low, {"epochs": 2, "lr": 1.0}),
        ("digits, batch 512, lr 0.6, 1 epoch", low, {"epochs": 1}),
        (f"wide digits, translate=2, {sizes.wide_epochs} epochs", high,
         {"model": WIDE, "epochs": sizes.wide_epochs, "augment": "translate=2",
          "batch_size": 512, "lr": 0.6}),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cnnkit-race-") as folder:
        for name, target, options in [variants[i] for i in sizes.variants]:
            if budget.left() < 60:
                row(f"cnnkit {name} to {target:.1%}", "skipped: out of budget", None)
                continue
            times = cnnkit_runs(device, sizes, target, options, Path(folder))
            reached = [t for t in times if t is not None]
            row(
                f"cnnkit {name} to {target:.1%}",
                f"{spread(reached)}, {len(reached)}/{len(times)} seeds",
            )
    if budget.left() < 40:
        row("baseline", "skipped: out of budget", None)
        return
    folder = mnist if mnist.is_dir() else Path("/work/shared/data/mnist")
    data = gpu_baseline.load(folder, device, limit=sizes.baseline_limit)
    for recipe in (
        gpu_baseline.Recipe(),
        gpu_baseline.Recipe(widths=(64, 128, 256), epochs=sizes.wide_epochs),
    ):
        if sizes is SMOKE:  # 2 shared CPU cores: a quarter of the widths, small batches
            recipe.epochs, recipe.eval_every, recipe.batch_size, recipe.lr = 3, 4, 128, 0.2
            recipe.bf16 = False  # CPU bf16 autocast measured 25x slower than fp32
            recipe.widths = tuple(w // 4 for w in recipe.widths)  # type: ignore[assignment]
        for target, times in baseline_runs(data, recipe, sizes).items():
            reached = [t for t in times if t is not None]
            row(
                f"baseline widths {recipe.widths}, {recipe.epochs} epochs, to {target:.1%}",
                f"{spread(reached)}, {len(reached)}/{len(times)} seeds",
            )


# ----------------------------------------------------------------------------- colour throughput


def colour_step(model: Any, forward: Any, loader: DeviceLoader, graphs: bool) -> Callable:
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    generator = loader.generator("bench")
    count = len(loader.labels)
    # bf16 on CUDA; on the CPU (smoke test) autocast to bf16 measured 25x slower than fp32.
    autocast = torch.autocast(
        loader.device.type, dtype=torch.bfloat16, enabled=loader.device.type == "cuda"
    )

    def step() -> None:
        rows = torch.randint(0, count, (loader.batch_size,), device=loader.device)
        x, y = loader.batch(rows, generator)  # (B, 3, 32, 32) channels_last, (B,)
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            logits = forward(x)  # (B, 10)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def colour_throughput(device: torch.device, sizes: Sizes, row: Callable, budget: Budget) -> None:
    """cifar-fast on 50,000 random uint8 32x32x3 images in device memory, through cnnkit's
    DeviceLoader (translate=2, flip) and bf16 autocast: images/s and MFU per batch and mode."""
    rng = np.random.default_rng(0)
    count = 50_000 if device.type == "cuda" else 256
    split = Split(
        rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, count)
    )
    macs = plan(presets.get("cifar-fast")).totals["macs"]  # 118,147,360 forward
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    override = os.environ.get("CNNKIT_PEAK_TFLOPS")
    peak = float(override) if override else mfu.peak_for(name, "bf16")
    for batch in sizes.colour_batches:
        loader = DeviceLoader(
            split, batch_size=batch, device=device, mean=[0.49, 0.48, 0.45],
            std=[0.25, 0.24, 0.26], augment=parse_augment("translate=2,flip"), channels_last=True,
        )  # fmt: skip
        # Compiled at the first batch only: each compile costs ~a minute of the budget.
        modes = ("eager", *sizes.compile_modes) if batch == sizes.colour_batches[0] else ("eager",)
        for mode in modes:
            if budget.left() < 45:
                row(f"cifar-fast batch {batch} {mode}", "skipped: out of budget", None)
                continue
            torch.manual_seed(0)
            model = build("cifar-fast", seed=0).to(device).to(memory_format=torch.channels_last)
            forward = model
            if mode != "eager":
                forward = torch.compile(model, mode=mode, fullgraph=True, dynamic=False)
            step = colour_step(model, forward, loader, graphs=mode == "reduce-overhead")
            sync(device)
            started = time.perf_counter()
            for _ in range(3):  # compilation, graph capture and cudnn autotuning happen here
                step()
            sync(device)
            warm_s = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(sizes.colour_steps):
                step()
            sync(device)
            seconds = time.perf_counter() - started
            speed = batch * sizes.colour_steps / seconds
            share = (
                f"MFU {100 * mfu.mfu(macs, speed, peak):.1f}% of {peak:g}" if peak else "MFU n/a"
            )
            precision = "bf16" if device.type == "cuda" else "fp32"
            row(
                f"cifar-fast batch {batch} {mode} ({precision}, channels_last)",
                f"{speed:,.0f} images/s, {share}; first 3 steps (compile) {warm_s:.1f} s",
            )


# ----------------------------------------------------------------------------- CPU determinism


def cpu_bitwise(row: Callable) -> None:
    """Two CPU runs of the default recipe with one seed give bitwise the same weights, and the
    CUDA recipe leaves a CPU config untouched (the CPU figures cannot have moved)."""
    with tempfile.TemporaryDirectory(prefix="cnnkit-cpu-") as folder:
        config = dict(data="mnist-mini", epochs=1, device="cpu", quiet=True, seed=5)
        one = fit(TrainConfig(out=f"{folder}/one", **config))
        two = fit(TrainConfig(out=f"{folder}/two", **config))
    a, b = one.model.state_dict(), two.model.state_dict()
    same = all(torch.equal(a[k], b[k]) for k in a)
    plain = TrainConfig(device="cpu")
    untouched = cuda_recipe(plain, torch.device("cpu")) is plain
    row(
        "CPU: two runs, one seed, bitwise equal weights; CUDA recipe leaves CPU configs alone",
        f"bitwise {same}; untouched {untouched}",
        same and untouched,
    )
