"""Make src/cnnkit/datasets/mnist-mini.npz: a stratified real subset of MNIST shipped in the package.

    python scripts/make_mnist_mini.py ../shared/data/mnist

Reads the four IDX files (raw or gzipped, SHA-256 verified against the registry), takes 1,000
training and 200 test images of each digit with a fixed seed, and writes a compressed .npz with
Keras's keys. Run it again only if the subset's definition changes: the arrays are
deterministic (the zip's timestamps are not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cnnkit.data.registry import load_registry

PER_CLASS = {"train": 1000, "test": 200}  # 10,000 train and 2,000 test images
SEED = 20240601


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mnist_dir", help="folder holding MNIST's four IDX files")
    parser.add_argument(
        "--out", default=Path(__file__).parents[1] / "src/cnnkit/datasets/mnist-mini.npz"
    )
    args = parser.parse_args()
    dataset = load_registry("mnist", ("train", "test"), data_dir=args.mnist_dir, progress=False)
    rng = np.random.default_rng(SEED)
    arrays = {}
    for split, per_class in PER_CLASS.items():
        data = dataset.splits[split]
        picks = [
            rng.choice(np.flatnonzero(data.labels == c), per_class, replace=False)
            for c in range(10)
        ]
        index = np.sort(np.concatenate(picks))  # keep MNIST's own order within the subset
        arrays[f"x_{split}"] = np.ascontiguousarray(
            data.images[index, :, :, 0]
        )  # (N, 28, 28) uint8
        arrays[f"y_{split}"] = data.labels[index].astype(np.uint8)
    np.savez_compressed(args.out, class_names=np.array(dataset.class_names), **arrays)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {size / 1e6:.2f} MB; sources: {[f['path'] for f in dataset.files]}")
    return 0 if size <= 3_000_000 else 1


if __name__ == "__main__":
    sys.exit(main())
