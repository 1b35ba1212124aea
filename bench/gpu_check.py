"""The CUDA paths, checked and timed in one call on a lent GPU (CI has none; each path has a CPU test).

    bash bench/gpu.sh                              # on the device machine; prints one table last
    CNNKIT_CHECK_DEVICE=cpu bash bench/gpu.sh      # the same path at tiny sizes, as a smoke test

Checks: the model's forward on CUDA against the CPU; the DeviceLoader's resumable order on the
device; bitwise CPU determinism; issue 13's figures from bench/gpu_speed.py (the colour preset's
images/s and MFU, eager and compiled; MNIST time to 99.0% and 99.5%, cnnkit and the plain
baseline of bench/gpu_baseline.py, 5 seeds each); fit() on CUDA in fp32 and bf16; cnnkit.load on
CUDA against the CPU; Grad-CAM on CUDA against the CPU; Ctrl-C then resume on CUDA.
Rows also go to $OUT/gpu_rows.jsonl as they come, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from gpu_speed import FULL, SMOKE, Budget, colour_throughput, cpu_bitwise, race

from cnnkit.data import DeviceLoader, open_source, parse_augment
from cnnkit.network import build
from cnnkit.predict import load
from cnnkit.train import TrainConfig, TrainingInterrupted, fit, resume

ROWS: list[tuple[str, str, str]] = []
# CNNKIT_CHECK_DEVICE=cpu smoke-tests this script here, without a GPU.
CUDA = torch.device(os.environ.get("CNNKIT_CHECK_DEVICE", "cuda"))


def sync() -> None:
    if CUDA.type == "cuda":
        torch.cuda.synchronize()


def row(check: str, result: str, ok: bool | None = None) -> None:
    status = "" if ok is None else ("ok" if ok else "FAIL")
    ROWS.append((check, result, status))
    print(f"{check}: {result} {status}", flush=True)
    with open(Path(os.environ.get("OUT", tempfile.gettempdir())) / "gpu_rows.jsonl", "a") as file:
        file.write(json.dumps({"check": check, "result": result, "status": status}) + "\n")


def forward_matches() -> None:
    model = build("digits", seed=0).eval()
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to(CUDA)(x.to(CUDA)).cpu()
    error = float((gpu - cpu).norm() / cpu.norm())
    row("forward digits cuda vs cpu (fp32, rel. error)", f"{error:.2e}", error < 1e-3)


def loader_matches() -> None:
    split = open_source("mnist-mini").splits["train"]
    kwargs = dict(
        batch_size=256,
        mean=[0.1307],
        std=[0.3081],
        augment=parse_augment("translate=2,cutout=4"),
        seed=3,
    )
    gpu = DeviceLoader(split, device=CUDA.type, **kwargs)
    # What resume needs: starting mid-epoch gives bitwise the tail of the whole epoch. (The order
    # itself differs between CPU and CUDA for one seed: seen on an H200, 2026-11-26.)
    whole, tail = list(gpu.epoch(1)), list(gpu.epoch(1, start_batch=10))
    same = all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(whole[10:], tail, strict=True)
    )
    row(
        "DeviceLoader on the device: epoch from batch 10 == tail of the epoch",
        f"bitwise {same}",
        same,
    )
    sync()
    start = time.perf_counter()
    for _ in range(5):
        for _x, _y in gpu.epoch(0):
            pass
    sync()
    per_batch = (time.perf_counter() - start) / (5 * len(gpu)) * 1000
    row("DeviceLoader cuda, batch 256 translate+cutout", f"{per_batch:.3f} ms/batch")


def train(folder: Path) -> Path:
    full = (Path(os.environ.get("CNNKIT_DATA", "/nonexistent")) / "mnist").is_dir()
    data = "mnist" if full and CUDA.type == "cuda" else "mnist-mini"
    # The smoke test skips bf16: autocast to bf16 on the CPU measured 25x slower than fp32.
    for precision in ("fp32", "bf16") if CUDA.type == "cuda" else ("fp32",):
        out = folder / f"fit-{precision}"
        result = fit(
            TrainConfig(
                data=data,
                val="test",
                target_acc=0.99,
                epochs=2,
                device=CUDA.type,
                precision=precision,
                out=str(out),
                quiet=True,
            )
        )
        reached = next((r for r in result.metrics if r["val_acc"] and r["val_acc"] >= 0.99), None)
        when = (
            f"99% at {reached['elapsed_s']:.1f} s (epoch {reached['epoch']:.2f})"
            if reached
            else "99% not reached"
        )
        row(
            f"fit digits on {data}, cuda {precision}",
            f"{when}; final {result.final_val_acc:.4f}",
            reached is not None if CUDA.type == "cuda" else None,  # smoke: mnist-mini, no claim
        )
    return folder / "fit-fp32"


def resume_matches(folder: Path) -> None:
    config = dict(
        data="mnist-mini",
        epochs=2,
        device=CUDA.type,
        precision="fp32",
        quiet=True,
        checkpoint_every=50,
        seed=1,
    )
    whole = fit(TrainConfig(out=str(folder / "whole"), **config))

    sent = []

    def interrupt(progress) -> None:  # on_step is throttled, so it may skip exact steps
        if progress.step >= 120 and not sent:
            sent.append(progress.step)
            os.kill(os.getpid(), signal.SIGINT)

    from cnnkit.train import Hooks

    try:
        fit(TrainConfig(out=str(folder / "cut"), **config), hooks=Hooks(on_step=interrupt))
        row("Ctrl-C on cuda", "training was not interrupted", False)
        return
    except TrainingInterrupted as error:
        stopped = error.step
    resumed = resume(folder / "cut")
    again = fit(TrainConfig(out=str(folder / "again"), **config))

    def worst(x, y) -> float:
        a, b = x.model.state_dict(), y.model.state_dict()
        return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)

    # On CUDA, non-deterministic kernels make two identical runs differ already (an H200 gave
    # 3.98 max abs weight difference after 2 epochs); resume must not differ more than that.
    cut, noise = worst(whole, resumed), worst(whole, again)
    row(
        f"resume after Ctrl-C at step {stopped} vs uninterrupted (max abs weight diff)",
        f"{cut:.2e}; two uninterrupted runs: {noise:.2e}",
        cut <= max(2 * noise, 1e-6),
    )


def classifier_matches(run: Path) -> None:
    test = open_source("mnist-mini").splits["test"]
    cpu, gpu = load(run, device="cpu"), load(run, device=CUDA.type)
    a = cpu.evaluate(test.images, test.labels)["accuracy"]
    b = gpu.evaluate(test.images, test.labels)["accuracy"]
    row(
        "cnnkit.load evaluate mnist-mini test, cpu vs cuda",
        f"{a:.4f} vs {b:.4f}",
        abs(a - b) < 2e-3,
    )
    pc, pg = (
        cpu.predict(list(test.images[:32]), top_k=1),
        gpu.predict(list(test.images[:32]), top_k=1),
    )
    same = sum(x["top"][0]["class"] == y["top"][0]["class"] for x, y in zip(pc, pg, strict=True))
    row("predict top-1 agreement cpu vs cuda (32 digits)", f"{same}/32", same == 32)
    from cnnkit.inspect.gradcam import gradcam

    x = cpu.preprocess([test.images[0]])
    cam_cpu = gradcam(cpu.model, x).cam
    cam_gpu = gradcam(gpu.model, x.to(CUDA)).cam
    diff = float(np.abs(np.asarray(cam_cpu) - np.asarray(cam_gpu)).max())
    row("Grad-CAM cpu vs cuda (max abs diff)", f"{diff:.2e}", diff < 1e-3)


def enough(budget: Budget, seconds: float, check: str) -> bool:
    if budget.left() >= seconds:
        return True
    row(check, "skipped: out of budget", None)
    return False


def main() -> int:
    name = torch.cuda.get_device_name() if CUDA.type == "cuda" else "cpu (smoke test)"
    row("device", f"{name} / torch {torch.__version__}")
    folder = Path(tempfile.mkdtemp(prefix="cnnkit-gpu-"))
    sizes = SMOKE if CUDA.type == "cpu" else FULL
    # The smoke test's budget is larger: 2 shared CPU cores are slower than an H200.
    default = "330" if CUDA.type == "cuda" else "1800"
    budget = Budget(float(os.environ.get("CNNKIT_GPU_BUDGET_S", default)))
    for check in (
        forward_matches,
        loader_matches,
        lambda: cpu_bitwise(row),
        lambda: colour_throughput(CUDA, sizes, row, budget),
        lambda: race(CUDA, sizes, row, budget),
        lambda: classifier_matches(train(folder)) if enough(budget, 30, "fit, load") else None,
        lambda: resume_matches(folder) if enough(budget, 20, "resume") else None,
    ):
        try:
            check()
        except Exception as error:  # keep going: one broken path must not hide the others
            row(
                getattr(check, "__name__", "check"), f"{type(error).__name__}: {error}"[:300], False
            )
    print("\n| check | result | status |\n|---|---|---|")
    for check, result, status in ROWS:
        print(f"| {check} | {result} | {status} |")
    return 0 if all(status != "FAIL" for _, _, status in ROWS) else 1


if __name__ == "__main__":
    sys.exit(main())
