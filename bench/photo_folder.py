"""A colour photo folder: the bare `cnnkit train --data FOLDER` against a run tuned by hand.

    python bench/make_photo_folder.py /tmp/photos          # 6 classes of real photo crops, 64x64
    python bench/photo_folder.py --data /tmp/photos [--threads 1] [--only bare]

Both runs go through the library as the CLI does (`TrainConfig.for_model`, then `fit`): the bare
one with only `data` given (model auto: its input, network and recipe come from the folder,
its length from AUTO_TIME_SMALL seconds), the tuned one with the options below, chosen by hand
on this folder. Each holds out 10% of train for validation and is then scored on the folder's
test/ split, which neither saw. Printed: test accuracy, seconds of training (training and
evaluating, as the run's summary counts them) and steps. The goal (issue 10): the bare run
within 3 points of the tuned one, in <= 90 s of training on a quiet 2-core machine.

Seen once with --threads 1 on 2 cores shared by ~10 busy processes (load average 10; the
seconds are meaningless there, the accuracies are not): bare 88.33% test (300 steps, model
auto's floor, 368 s), tuned 90.83% (400 steps, 463 s): 2.5 points apart. With 34 steps (the
60 s budget under that load, before the floor) the bare run reached 80.83%.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch

from cnnkit.data.shaped import open_for_run
from cnnkit.predict import load
from cnnkit.train import TrainConfig, fit

# Chosen by hand on the photo folder (64x64x3, 324 + 36 training images, 6 classes): the auto
# family's network at the folder's own size, fixed epochs rather than a time budget, the
# CIFAR-style crop with flips and jitter, a gentler rate than auto's.
TUNED: dict[str, Any] = {
    "model": "auto-64x64x3-c6",
    "epochs": 40,
    "batch_size": 32,
    "lr": 0.05,
    "augment": "crop=6,flip,jitter=0.2",
}


def test_accuracy(run: Path, data: str) -> float:
    """Accuracy of the saved run on the folder's test split."""
    classifier = load(run)
    shaped = open_for_run(classifier.manifest, data)
    split = shaped.choose_split("test").split
    return classifier.evaluate(split.images, split.labels)["accuracy"]


def run(label: str, data: str, out: Path, options: dict[str, Any]) -> dict[str, Any]:
    model = options.pop("model", "auto")
    config = TrainConfig.for_model(
        model, data=data, out=str(out / label), overwrite=True, quiet=True, **options
    )
    result = fit(config)
    row = {
        "label": label,
        "model": result.manifest["train_config"]["model"],
        "test_acc": test_accuracy(result.run, data),
        "train_s": result.summary["train_s"],
        "steps": result.summary["steps"],
        "best_val_acc": result.best_val_acc,
        "warnings": result.summary.get("warnings") or [],
    }
    print(
        f"{label:6s} {row['model']:18s} test acc {row['test_acc']:.2%}  "
        f"{row['train_s']:.1f} s of training, {row['steps']} steps  "
        f"(best val {row['best_val_acc']:.2%})",
        flush=True,
    )
    for warning in row["warnings"]:
        print(f"       warning: {warning}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/photos", help="the folder (train/ and test/)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--only", choices=("bare", "tuned"), help="run only one of the two")
    parser.add_argument("--out", help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.data}; {torch.get_num_threads()} thread(s)")
    with tempfile.TemporaryDirectory() as temporary:
        out = Path(args.out or temporary)
        rows = []
        if args.only in (None, "bare"):
            rows.append(run("bare", args.data, out, {}))
        if args.only in (None, "tuned"):
            rows.append(run("tuned", args.data, out, dict(TUNED)))
    if len(rows) == 2:
        gap = (rows[1]["test_acc"] - rows[0]["test_acc"]) * 100
        print(f"bare is {gap:.1f} points below tuned (goal: <= 3, in <= 90 s)")


if __name__ == "__main__":
    main()
