"""ONNX Runtime against torch eager: latency, throughput, start-up and install size (issue 12).

For lenet5 and digits (weights from seed 0: speed does not depend on their values), at the same
thread count on both sides, on the same float32 (N, C, H, W) input:
  - batch-1 p50 latency of one forward pass, and images/s at batch 64;
  - start-up: the whole `cnnkit predict model.onnx digit.png` process against
    `cnnkit predict RUN digit.png` (median of --startup-runs);
  - install size: the files of onnxruntime + numpy + Pillow (and what they require) against
    those of torch + numpy + Pillow (and what they require), summed from the installed
    distributions' RECORDs in this environment; or, with --venv DIR, `du` of DIR's site-packages.
Goal: ONNX Runtime at least as fast as torch eager at batch 1; record the ratio whatever it is.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/onnx_bench.py [--threads 1] [--iterations 500]
Quick check that it works: --iterations 3 --batch-iterations 1 --startup-runs 1
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cnnkit import runs
from cnnkit.export import export_onnx
from cnnkit.network import build
from cnnkit.onnx_runtime import load_onnx
from cnnkit.predict import load
from cnnkit.presets import resolve

CNNKIT = str(Path(sys.executable).with_name("cnnkit"))
MODELS = ("lenet5", "digits")


def save_run(folder: Path, name: str) -> Path:
    spec = resolve(name)
    manifest = runs.make_manifest(spec, [str(d) for d in range(10)], [0.13], [0.31])
    run = runs.prepare_run_dir(folder / name)
    runs.save_model(run, build(spec, seed=0), manifest)
    return run


def seconds_per_call(call, x, iterations: int) -> list[float]:
    for _ in range(max(3, iterations // 10)):  # warm-up: allocator, kernels, thread pool
        call(x)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - start)
    return times


def speed(run: Path, onnx_path: Path, args: argparse.Namespace) -> dict[str, float]:
    torch.set_num_threads(args.threads)
    model = load(run).model
    onnx_model = load_onnx(onnx_path, threads=args.threads)
    height, width, channels = onnx_model.input_shape
    figures = {}
    for batch, iterations in ((1, args.iterations), (64, args.batch_iterations)):
        x = np.random.default_rng(0).standard_normal((batch, channels, height, width), np.float32)
        x_torch = torch.from_numpy(x)

        def eager(t: torch.Tensor) -> None:
            with torch.inference_mode():
                model(t)

        sides = {"torch": seconds_per_call(eager, x_torch, iterations)}
        sides["ort"] = seconds_per_call(onnx_model.outputs, x, iterations)
        for side, times in sides.items():
            if batch == 1:
                figures[f"{side} p50 ms"] = statistics.median(times) * 1000
            else:
                figures[f"{side} img/s b64"] = batch * len(times) / sum(times)
    return figures


def startup(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def installed_bytes(roots: list[str]) -> tuple[int, list[str]]:
    """Bytes of the files of `roots` and every distribution they require, transitively."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement that is not installed: not in this venv either
        seen[name] = dist
        todo += [r for r in dist.requires or [] if "extra ==" not in r]
    total = 0
    for dist in seen.values():
        for file in dist.files or []:
            path = Path(dist.locate_file(file))
            if path.is_file():
                total += path.stat().st_size
    return total, sorted(seen)


def venv_bytes(venv: Path) -> int:
    out = subprocess.run(
        ["du", "-sk", *map(str, venv.glob("lib/python*/site-packages"))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sum(int(line.split()[0]) for line in out.splitlines()) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for both sides")
    parser.add_argument("--iterations", type=int, default=500, help="batch-1 calls timed")
    parser.add_argument("--batch-iterations", type=int, default=50, help="batch-64 calls timed")
    parser.add_argument("--startup-runs", type=int, default=5, help="processes timed per side")
    parser.add_argument("--venv", type=Path, help="also du this torch-free venv's site-packages")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {args.threads}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="cnnkit-onnx-bench-") as folder:
        folder = Path(folder)
        digit = folder / "digit.png"
        from PIL import Image

        Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), np.uint8)).save(digit)
        for name in MODELS:
            run = save_run(folder, name)
            onnx_path = export_onnx(run).path
            figures = speed(run, onnx_path, args)
            ratio = figures["torch p50 ms"] / figures["ort p50 ms"]
            shown = ", ".join(f"{key} {value:.3g}" for key, value in figures.items())
            print(f"{name}: {shown}; ORT batch-1 speed-up over torch eager x{ratio:.2f}")
            if name == "digits":
                onnx_start = startup(
                    [CNNKIT, "predict", str(onnx_path), str(digit)], args.startup_runs
                )
                torch_start = startup([CNNKIT, "predict", str(run), str(digit)], args.startup_runs)
                print(
                    f"start-up to the first prediction (median of {args.startup_runs}): "
                    f"ONNX {onnx_start:.2f} s, torch {torch_start:.2f} s"
                )
    for label, roots in (
        ("onnxruntime", ["onnxruntime", "numpy", "pillow"]),
        ("torch", ["torch", "numpy", "pillow"]),
    ):
        total, names = installed_bytes(roots)
        print(f"install size, {label} side: {total / 2**20:.0f} MiB ({', '.join(names)})")
    if args.venv:
        print(
            f"install size, du of {args.venv} site-packages: {venv_bytes(args.venv) / 2**20:.0f} MiB"
        )


if __name__ == "__main__":
    main()
