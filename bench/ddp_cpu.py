"""Data-parallel training on this CPU, and on paper at 8 GPUs (issue 14).

    CNNKIT_DATA=../shared/data python bench/ddp_cpu.py                      # full MNIST, 1 epoch
    python bench/ddp_cpu.py --data mnist-mini --repeats 5                   # a quick check

1. Images/s of `cnnkit train --nproc 2` (2 processes x 1 thread, gloo) against one process with
   2 threads, same global batch and seed, from each run's manifest; their ratio is the scaling
   efficiency on the same 2 cores.
2. The gloo all-reduce time of each preset's gradient (`plan` params x 4 bytes) between 2 local
   processes, and the share of a 2-rank step it takes (DDP overlaps some of it with backward, so
   this is an upper bound on the time spent in all-reduce).
3. On paper, 8 GPUs over NVLink: a ring all-reduce moves 2(N-1)/N x bytes per GPU at the link's
   bandwidth (NVLink 4 on H100/H200: ~450 GB/s per direction), plus a latency per all-reduce
   (assumed, --latency-us). The single-GPU step time comes from a measured time to 99%
   (--gpu-seconds over --gpu-steps: the H200 reached 99% on MNIST with `digits` in 3.7 s fp32;
   on the CPU the same recipe reaches 99% at step 561, README, so ~6.6 ms a step, evaluations
   included: an upper bound). Step time is taken as proportional to the per-GPU batch, which
   overstates the gain of small batches on a GPU: read the figures as bounds, not forecasts.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cnnkit import plan, presets

SRC = str(Path(__file__).resolve().parents[1] / "src")


def train_images_per_s(data: str, epochs: int, batch: int, nproc: int, threads: int) -> float:
    """images/s from the manifest of one `cnnkit train` run with `nproc` ranks x `threads`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "cnnkit", "train", "--data", data, "--epochs", str(epochs),
                   "--batch-size", str(batch), "--val", "none", "--out", str(out), "--quiet"]  # fmt: skip
        if nproc > 1:
            command += ["--nproc", str(nproc)]
        env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, env=env, check=True, capture_output=True)
        return json.loads((out / "cnnkit.json").read_text())["metrics"]["images_per_s"]


def _allreduce_rank(rank: int, port: int, sizes: list[int], repeats: int, result: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    seconds = {}
    for size in sizes:
        tensor = torch.ones(size)
        times = []
        for repeat in range(repeats + 2):  # the first two warm the connection up
            dist.barrier()
            started = time.perf_counter()
            dist.all_reduce(tensor)
            if repeat >= 2:
                times.append(time.perf_counter() - started)
        seconds[size] = statistics.median(times)
    if rank == 0:
        Path(result).write_text(json.dumps(seconds))
    dist.destroy_process_group()


def gloo_allreduce_seconds(sizes: list[int], repeats: int) -> dict[int, float]:
    """Median seconds of one all-reduce of `size` float32 values between 2 local processes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        result = str(Path(tmp) / "seconds.json")
        mp.spawn(_allreduce_rank, args=(port, sizes, repeats, result), nprocs=2)
        return {int(k): v for k, v in json.loads(Path(result).read_text()).items()}


def ring_seconds(nbytes: float, gpus: int, bandwidth: float, latency: float) -> float:
    """A ring all-reduce: each GPU sends and receives 2(N-1)/N of the bytes, plus a latency."""
    return 2 * (gpus - 1) / gpus * nbytes / bandwidth + latency


def on_paper(params: dict[str, int], args: argparse.Namespace) -> None:
    """Scaling efficiency at `--gpus` GPUs and the batch that keeps communication under 10%."""
    step64 = args.gpu_seconds / args.gpu_steps  # one GPU, digits, batch 64 (see the docstring)
    print(f"\non paper: {args.gpus} GPUs, ring all-reduce at {args.bandwidth_gbs:g} GB/s, "
          f"{args.latency_us:g} us latency; 1-GPU step {step64 * 1e3:.2f} ms at batch 64")  # fmt: skip
    print(f"{'preset':16} {'grad bytes':>12} {'all-reduce':>11} {'eff. @64':>9} {'batch <10%':>11}")
    for name, count in params.items():
        nbytes = count * 4
        comm = ring_seconds(nbytes, args.gpus, args.bandwidth_gbs * 1e9, args.latency_us * 1e-6)
        # Global batch 64 over N GPUs: each computes 64/N images, then all-reduces.
        efficiency = (step64 / args.gpus) / (step64 / args.gpus + comm)
        # comm <= 10% of (compute + comm)  <=>  compute >= 9 comm; compute = step64 * b / 64.
        per_gpu = max(1, -(-9 * comm * 64 // step64))
        print(f"{name:16} {nbytes:>12,} {comm * 1e6:>9.1f}us {efficiency:>8.0%} "
              f"{int(per_gpu * args.gpus):>11,}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50, help="all-reduces timed per size")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument(
        "--bandwidth-gbs", type=float, default=450.0, help="NVLink 4, per direction"
    )
    parser.add_argument("--latency-us", type=float, default=15.0, help="assumed, per all-reduce")
    parser.add_argument("--gpu-seconds", type=float, default=3.7, help="H200: digits to 99%%")
    parser.add_argument("--gpu-steps", type=int, default=561, help="steps digits takes to 99%%")
    args = parser.parse_args()

    one = train_images_per_s(args.data, args.epochs, args.batch_size, nproc=1, threads=2)
    two = train_images_per_s(args.data, args.epochs, args.batch_size, nproc=2, threads=1)
    print(f"{args.data}, batch {args.batch_size}: 1 process x 2 threads {one:,.0f} images/s, "
          f"2 processes x 1 thread {two:,.0f} images/s; efficiency {two / one:.0%}")  # fmt: skip

    params = {name: plan(presets.resolve(name)).totals["params"] for name in presets.PRESETS}
    seconds = gloo_allreduce_seconds(sorted(set(params.values())), args.repeats)
    step = args.batch_size / two  # seconds of one 2-rank step
    print(f"\ngloo all-reduce, 2 local processes (median of {args.repeats}):")
    for name, count in params.items():
        share = seconds[count] / step if name == presets.DEFAULT_PRESET else None
        extra = f"  {share:.0%} of a 2-rank step of {name}" if share is not None else ""
        print(f"  {name:16} {count * 4:>10,} bytes  {seconds[count] * 1e3:7.3f} ms{extra}")
    on_paper(params, args)


if __name__ == "__main__":
    main()
