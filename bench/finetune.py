"""Fine-tuning a digits model on a few hundred Fashion-MNIST images against training from scratch.

    CNNKIT_DATA=/tmp/cnnkit-data python bench/get_fashion_mnist.py     # once: Debian's copy
    CNNKIT_DATA=/tmp/cnnkit-data python bench/finetune.py [--per-class 30] [--seeds 3]

1. The source: the `digits` preset trained on mnist-mini (the embedded 10,000 digits) with its
   own recipe, one epoch.
2. The new data: `--per-class` images of each of Fashion-MNIST's 10 classes from its train
   split (a different draw per seed), written as an .npz; the test split's first `--test`
   images are the test set.
3. Three runs per seed, the same recipe, steps and batches (so the same training time up to
   the cost of the frozen layers' gradients): from scratch; `--from` the digits run (every
   layer trains, the head is new: Fashion's class names differ); `--from` with `--freeze`.
Test accuracy is the last evaluation's, on the test images; seconds are the runs' own
training time. Printed as a table, mean and range over the seeds.

Measured (2026-12-01, the 2-core dev machine shared with other jobs, `--threads 1`, defaults:
30 images a class, 15 epochs = 135 steps of 32, all 10,000 test images; draws 0, 1, 2; the
source reached 98.45% on mnist-mini's test digits):
    scratch              76.68% mean (77.09, 76.72, 76.24)
    from digits          77.80% mean (77.90, 77.90, 77.60)   better on every draw, +1.1 points
    from digits, frozen  74.39% mean (74.86, 75.01, 73.30)   digits' features and BN statistics
                                                             fit clothing worse than new ones
Seconds are not compared: other jobs' load changed by 3x during the runs (70-380 s a run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np

from cnnkit.data import open_source
from cnnkit.train import TrainConfig, fit

CONDITIONS = {
    "scratch": {},
    "from digits": {"from_run": "SOURCE"},
    "from digits, frozen": {"from_run": "SOURCE", "freeze": True},
}


def make_subset(folder: Path, per_class: int, test: int, seed: int) -> Path:
    """An .npz of `per_class` train images per class and the first `test` test images."""
    data = open_source("fashion-mnist", progress=False)
    train, held = data.splits["train"], data.splits["test"]
    rng = np.random.default_rng(seed)
    picks = np.concatenate(
        [rng.choice(np.flatnonzero(train.labels == c), per_class, replace=False) for c in range(10)]
    )
    path = folder / f"fashion-{per_class}x10-seed{seed}.npz"
    np.savez(
        path,
        x_train=train.images[picks],
        y_train=train.labels[picks],
        x_test=held.images[:test],
        y_test=held.labels[:test],
        class_names=np.array(data.class_names),
    )
    return path


def run(condition: str, data: Path, source: Path, out: Path, args: argparse.Namespace) -> dict:
    options = {k: (str(source) if v == "SOURCE" else v) for k, v in CONDITIONS[condition].items()}
    config = TrainConfig(
        data=str(data), val="test", epochs=args.epochs, batch_size=args.batch_size,
        eval_every=args.epochs, device="cpu", quiet=True, threads=args.threads, seed=args.seed0,
        out=str(out), overwrite=True, **options,
    )  # fmt: skip
    result = fit(config)
    return {"acc": result.final_val_acc, "s": result.summary["train_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=30, help="Fashion images per class")
    parser.add_argument("--test", type=int, default=10000, help="test images (default all)")
    parser.add_argument("--epochs", type=int, default=15, help="passes over the small set")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=3, help="draws of the small set")
    parser.add_argument("--first-seed", type=int, default=0, help="the first draw's seed")
    parser.add_argument("--seed0", type=int, default=0, help="the runs' own seed (weights, order)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--source-epochs", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "digits"
        made = fit(
            TrainConfig(data="mnist-mini", val="test", epochs=args.source_epochs, device="cpu",
                        quiet=True, threads=args.threads, out=str(source))
        )  # fmt: skip
        print(f"source: digits on mnist-mini, test acc {made.final_val_acc:.4f}")
        figures: dict[str, list[dict]] = {name: [] for name in CONDITIONS}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            data = make_subset(root, args.per_class, args.test, seed)
            for name in CONDITIONS:
                figures[name].append(run(name, data, source, root / f"{seed}-{len(name)}", args))
                print(f"seed {seed} {name:<20} {figures[name][-1]}", flush=True)
    steps = args.epochs * (args.per_class * 10 // args.batch_size)
    print(
        f"\nFashion-MNIST, {args.per_class * 10} training images ({args.per_class}/class), "
        f"{args.test} test images, {args.epochs} epochs = {steps} steps of {args.batch_size}, "
        f"{args.seeds} draws, threads {args.threads or os.environ.get('OMP_NUM_THREADS', 'auto')}"
    )
    print(f"{'condition':<22}{'test acc (mean)':>16}{'range':>18}{'train s':>10}")
    for name, rows in figures.items():
        accs = [row["acc"] for row in rows]
        seconds = statistics.mean(row["s"] for row in rows)
        span = f"{min(accs):.4f}-{max(accs):.4f}"
        print(f"{name:<22}{statistics.mean(accs):>16.4f}{span:>18}{seconds:>10.1f}")


if __name__ == "__main__":
    main()
