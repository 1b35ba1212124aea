"""Fashion-MNIST on the CPU: the bare `cnnkit train --data fashion-mnist --val test`.

    python bench/get_fashion_mnist.py                      # places the files (Debian's package)
    python bench/fashion_cpu.py [--data-dir DIR] [--threads 1]

The run goes through the library as the CLI does (`TrainConfig.for_model("auto", ...)` with only
`data` and `val` given): Fashion-MNIST is 28x28x1 but its classes are not the digits 0-9, so
model auto trains the auto family (auto-28x28x1-c10) with auto_recipe: crops of 2 px and flips,
batch 64, a one-cycle sized to AUTO_TIME_LARGE seconds from timed steps. Validation is the test
split, so the final validation accuracy is the test accuracy. Printed: test accuracy, seconds of
training (training and evaluating), steps and epochs. The goal (issue 10): >= 92.5% test
accuracy in <= 3 min of training on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from cnnkit.train import Hooks, TrainConfig, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="where fashion-mnist/ is (default: $CNNKIT_DATA)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--time", type=float, help="override the time budget (seconds)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {"data": "fashion-mnist", "val": "test"}
    if args.time:
        options["time"] = args.time
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


if __name__ == "__main__":
    main()
