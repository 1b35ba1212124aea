"""Decoding a folder of 10,000 small PNGs: first load, then from the cache.

    .venv/bin/python bench/data_folder.py

Issue targets on 2 cores: at least 1,500 images/s the first time, 100,000 images/s from the cache.
The folder is written once from mnist-mini's 10,000 training images (real digits, 28x28 PNG, one
folder per class) into a temporary directory; the cache goes to a fresh $CNNKIT_CACHE.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from cnnkit.data import open_source


def write_folder(root: Path) -> int:
    train = open_source("mnist-mini:train", progress=False).splits["train"]
    for index, (image, label) in enumerate(zip(train.images, train.labels, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(folder / f"{index:05d}.png")
    return len(train)


def main() -> int:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp) / "digits"
        count = write_folder(root)
        cold, warm = [], []
        for round_ in range(int(os.environ.get("ROUNDS", "3"))):
            os.environ["CNNKIT_CACHE"] = str(Path(temp) / f"cache{round_}")  # empty: a first load
            started = time.perf_counter()
            dataset = open_source(str(root), progress=False)
            cold.append(time.perf_counter() - started)
            assert len(dataset.splits["train"]) == count and not dataset.skipped
            for _ in range(5):
                started = time.perf_counter()
                open_source(str(root), progress=False)
                warm.append(time.perf_counter() - started)
    first, cached = count / statistics.median(cold), count / statistics.median(warm)
    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}, {count:,} PNGs 28x28")
    print(
        f"first load:  {first:9,.0f} images/s (median of {len(cold)}; {statistics.median(cold):.2f} s)"
    )
    print(
        f"from cache:  {cached:9,.0f} images/s (median of {len(warm)}; {statistics.median(warm) * 1e3:.0f} ms)"
    )
    return 0 if first >= 1500 and cached >= 100_000 else 1


if __name__ == "__main__":
    sys.exit(main())
