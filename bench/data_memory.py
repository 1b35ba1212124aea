"""Data beyond RAM: DeviceLoader images/s from RAM and from a memory-mapped .npy on disk, and the
peak RSS while a folder of small PNGs is decoded into the cache (issue 14, item 7).

    .venv/bin/python bench/data_memory.py                      # 60,000 28x28x1, 20,000 96x96x3,
                                                               # a folder of 50,000 32x32 PNGs
    .venv/bin/python bench/data_memory.py --images 2000 --folder 5000 --batches 5   # a quick check

Throughput: synthetic uint8 images written as .npy under --tmp, batches of 512 with
translate=2,flip (the host read, then pad, flip and normalise on the device). "disk, cold" first
evicts the file from the page cache (posix_fadvise DONTNEED on that file only), so each read goes
to the storage; "disk, warm" reads the same file from the page cache.
Peak RSS: the decode runs in a fresh process with its own cache folder; its peak resident set is
compared with the decoded bytes (the old path held every image twice: a list, then one array).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPES = {"28x28x1": (28, 28, 1), "96x96x3": (96, 96, 3)}
BATCH = 512

# VmHWM (kB), not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report the
# parent's peak (seen: 645 MB before the child had decoded anything).
_DECODE = """
import re, sys
import cnnkit.data.folder, cnnkit.data.images, numpy, PIL.Image
hwm = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1])
before = hwm()
from cnnkit.data import open_source
dataset = open_source(sys.argv[1], progress=False)
print(before, hwm(), sum(s.images.nbytes for s in dataset.splits.values()))
"""


def evict(path: Path) -> None:
    """Drop `path`'s pages from the page cache, so the next read comes from the storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def images_per_s(split, memory: str, batches: int) -> float:
    import torch

    from cnnkit.data import Augment, DeviceLoader

    channels = split.images.shape[-1]
    loader = DeviceLoader(
        split,
        batch_size=BATCH,
        mean=[0.5] * channels,
        std=[0.25] * channels,
        augment=Augment(translate=2, flip=True),
        data_memory=memory,
    )
    torch.set_num_threads(1)
    started, count = time.perf_counter(), 0
    for index, (x, _) in enumerate(loader.epoch(0)):
        count += len(x)
        if index + 1 == batches:
            break
    return count / (time.perf_counter() - started)


def throughput(tmp: Path, counts: dict[str, int], batches: int) -> None:
    from cnnkit.data import Split

    rng = np.random.default_rng(0)
    for name, shape in SHAPES.items():
        path = tmp / f"images-{name}.npy"
        images = rng.integers(0, 256, (counts[name], *shape), dtype=np.uint8)
        np.save(path, images)
        del images
        labels = np.zeros(counts[name], dtype=np.int64)
        mapped = Split(np.load(path, mmap_mode="r"), labels)
        ram = images_per_s(mapped, "ram", batches)
        evict(path)
        cold = images_per_s(mapped, "disk", batches)
        warm = images_per_s(mapped, "disk", batches)
        size = mapped.images.nbytes / 2**20
        print(
            f"{name:>8} x {counts[name]:,} ({size:,.0f} MiB): RAM {ram:,.0f} images/s, "
            f"disk cold {cold:,.0f}, disk warm {warm:,.0f} (batch {BATCH}, {batches} batches)"
        )
        path.unlink()


def make_folder(root: Path, count: int, size: int) -> None:
    """`count` random size x size RGB PNGs in 10 class folders."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for label in range(10):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"class{i % 10}" / f"{i:06d}.png")


def decode_rss(tmp: Path, count: int, size: int) -> None:
    root = tmp / f"folder-{count}"
    started = time.perf_counter()
    make_folder(root, count, size)
    print(f"made {count:,} {size}x{size} PNGs in {time.perf_counter() - started:.0f} s")
    env = {**os.environ, "CNNKIT_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _DECODE, str(root)], env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(out.stderr)
    before, peak, decoded = (int(v) for v in out.stdout.split())
    print(
        f"decode {count:,} PNGs into the cache: peak RSS {peak / 1024:,.0f} MB, "
        f"{(peak - before) / 1024:,.0f} MB above the imports, for {decoded / 2**20:,.0f} MiB "
        f"of decoded images"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, help="images per throughput set (both shapes)")
    parser.add_argument("--batches", type=int, default=40, help="batches timed per set")
    parser.add_argument("--folder", type=int, default=50_000, help="PNGs to decode (0: skip)")
    parser.add_argument("--size", type=int, default=32, help="side of each PNG")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="where the files go")
    args = parser.parse_args()
    counts = {"28x28x1": 60_000, "96x96x3": 20_000}
    if args.images:
        counts = dict.fromkeys(counts, args.images)
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="cnnkit-data-memory-") as tmp:
        print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}, files in {tmp}")
        throughput(Path(tmp), counts, args.batches)
        if args.folder:
            decode_rss(Path(tmp), args.folder, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
