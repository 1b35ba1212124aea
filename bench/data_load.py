"""Full MNIST from its IDX files into a DeviceLoader: wall time and peak RSS (issue: <= 1.5 s, < 400 MB).

    CNNKIT_DATA=../shared/data .venv/bin/python bench/data_load.py

Runs in a fresh process so the peak RSS is this load's. torch is imported first and its cost is
reported apart: it is paid once per process whatever the data, and the target is about the data.
The time covers reading 55 MB, SHA-256 of all four files, parsing, and building the loader.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def main() -> int:
    started = time.perf_counter()
    import torch

    from cnnkit.data import DeviceLoader, open_source

    imported = time.perf_counter() - started
    after_import = rss_mb()
    times = []
    for _ in range(int(os.environ.get("REPEATS", "3"))):
        started = time.perf_counter()
        dataset = open_source("mnist", progress=False)
        mean, std = dataset.known_stats
        loader = DeviceLoader(dataset.splits["train"], batch_size=512, mean=mean, std=std)
        test = DeviceLoader(
            dataset.splits["test"], batch_size=512, mean=mean, std=std, drop_last=False
        )
        times.append(time.perf_counter() - started)
        del dataset, loader, test
    peak = rss_mb()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}"
    )
    print(f"import torch + cnnkit.data: {imported:.2f} s, RSS after import {after_import:.0f} MB")
    print(
        f"load MNIST (60,000 + 10,000) into DeviceLoader: median {statistics.median(times):.2f} s, "
        f"best {min(times):.2f} s over {len(times)} runs"
    )
    print(f"peak RSS {peak:.0f} MB (data's share: {peak - after_import:.0f} MB)")
    return 0 if min(times) <= 1.5 and peak < 400 else 1


if __name__ == "__main__":
    sys.exit(main())
