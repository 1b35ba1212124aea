"""Fashion-MNIST on the CPU: the bare `cnnkit train --data fashion-mnist --val test`.

    python bench/get_fashion_mnist.py                      # places the files (Debian's package)
    python bench/fashion_cpu.py [--data-dir DIR]           # the goal check, on a quiet machine
    python bench/fashion_cpu.py --threads 1 --epochs 5     # accuracy only, on a busy machine

The run goes through the library as the CLI does (`TrainConfig.for_model("auto", ...)` with only
`data` and `val` given): Fashion-MNIST is 28x28x1 but its classes are not the digits 0-9, so
model auto trains the auto family's small-grey member (auto-28x28x1-c10: digits' layout at
widths 16-48-96) with auto_recipe: flips, batch 128, lr 0.4, a one-cycle sized to
AUTO_TIME_LARGE seconds from timed steps. Validation is the test split, so the final validation
accuracy is the test accuracy. Printed: test accuracy, seconds of training (training and
evaluating), steps and epochs, then PASS or FAIL against the goal (issue 10): >= 92.5% test
accuracy in <= 3 min of training on a quiet 2-core machine. On a busy machine the seconds mean
nothing: `--epochs` then trains the epochs a quiet machine fits (about 5), for the accuracy.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from cnnkit.train import Hooks, TrainConfig, fit

GOAL_ACC = 0.925  # issue 10: test accuracy of the bare command
GOAL_S = 180.0  # issue 10: seconds of training, quiet 2-core machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="where fashion-mnist/ is (default: $CNNKIT_DATA)")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: the cores the load leaves free)"
    )
    parser.add_argument("--time", type=float, help="override the time budget (seconds)")
    parser.add_argument("--epochs", type=int, help="train this many epochs, not a time budget")
    args = parser.parse_args()
    options: dict[str, object] = {"data": "fashion-mnist", "val": "test"}
    if args.threads:
        options["threads"] = args.threads
    if args.time:
        options["time"] = args.time
    if args.epochs:
        options.update(epochs=args.epochs, time=None)
    hooks = Hooks(
        on_eval=lambda r: print(
            f"  epoch {r['epoch']:.2f}  test acc {r['val_acc']:.2%}  at {r['elapsed_s']:.1f} s",
            flush=True,
        )
    )
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig.for_model(
            "auto", out=str(Path(out) / "run"), data_dir=args.data_dir, quiet=True, **options
        )
        result = fit(config, hooks)
    summary = result.summary
    print("\n".join(f"  note: {note}" for note in result.notes))
    print(
        f"fashion-mnist bare ({result.manifest['train_config']['model']}, "
        f"{torch.get_num_threads()} thread(s)): test acc {summary['final_val_acc'] or 0:.2%} "
        f"(best {summary['best_val_acc'] or 0:.2%}), {summary['train_s']:.1f} s of training, "
        f"{summary['steps']} steps ({summary['epochs']:.2f} epochs), "
        f"{summary['images_per_s']} images/s"
    )
    for warning in summary.get("warnings") or []:
        print(f"  warning: {warning}")
    accuracy, seconds = summary["final_val_acc"] or 0, summary["train_s"]
    verdict = "PASS" if accuracy >= GOAL_ACC and seconds <= GOAL_S else "FAIL"
    print(f"{verdict}: goal >= {GOAL_ACC:.1%} test accuracy in <= {GOAL_S:.0f} s of training")


if __name__ == "__main__":
    main()
