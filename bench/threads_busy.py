"""Training images/s on a busy CPU: torch's all-cores default against `--threads` and its default.

    python bench/threads_busy.py [--busy 1] [--epochs 2] [--threads 1,2,auto]

`--busy` processes spin on the CPU (plain Python loops) while the `digits` preset trains
`--epochs` epochs of mnist-mini (140 steps of 64 each) once per thread count in `--threads`;
"auto" is `cnnkit.threads.default_threads()` measured with the spinners already running (the
load average lags by about a minute, so the script waits for it to rise first). The figure is
the run's own images/s (training and evaluating, start-up excluded).

Measured (2026-12-01, the 2-core dev machine already loaded by other jobs, load average 12.97
with the spinner; `--busy 1 --epochs 1 --settle 5`): 1 thread 142 images/s (140 steps in
63.1 s), 2 threads 16 images/s (545.0 s), auto = 1 thread 163 images/s (54.9 s). One run each:
the other jobs' load moved during the runs, so read the ratio, not the figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time

from cnnkit.threads import cores, default_threads
from cnnkit.train import TrainConfig, fit


def spin() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=1, help="CPU-bound processes beside training")
    parser.add_argument("--epochs", type=int, default=2, help="mnist-mini: 140 steps an epoch")
    parser.add_argument("--threads", default="1,2,auto", help="counts to try, 'auto' = default")
    parser.add_argument("--data", default="mnist-mini", help="MNIST digits (10,000 embedded)")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds for the load to rise")
    args = parser.parse_args()
    os.environ.pop("OMP_NUM_THREADS", None)  # the default rule, not the environment's
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for process in spinners:
        process.start()
    try:
        time.sleep(args.settle)
        print(f"cores {cores()}, busy {args.busy}, load {os.getloadavg()[0]:.2f}, "
              f"default_threads() = {default_threads()}")  # fmt: skip
        for text in args.threads.split(","):
            count = default_threads() if text == "auto" else int(text)
            with tempfile.TemporaryDirectory() as out:
                config = TrainConfig(
                    data=args.data, epochs=args.epochs, device="cpu", quiet=True, threads=count,
                    out=out, overwrite=True,
                )  # fmt: skip
                result = fit(config)
            summary = result.summary
            print(
                f"threads {text:>4} ({count}): {summary['images_per_s']:>8,.0f} images/s, "
                f"{summary['steps']} steps in {summary['train_s']:.1f} s",
                flush=True,
            )
    finally:
        for process in spinners:
            process.terminate()


if __name__ == "__main__":
    main()
