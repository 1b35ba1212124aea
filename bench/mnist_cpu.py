"""MNIST on the CPU: seconds of training to 99% test accuracy, cnnkit vs PyTorch's MNIST example.

    CNNKIT_DATA=/work/shared/data python bench/mnist_cpu.py            # ~5 minutes on 2 cores
    CNNKIT_DATA=/work/shared/data python bench/mnist_cpu.py --seeds 5 --skip-baseline

cnnkit runs through its library (`cnnkit.train.fit`) with its default recipe plus
`val="test", target_acc=0.99`: the time is the run's elapsed_s when the first evaluation reaches
the target (training and evaluating; start-up and data loading are reported apart). A second
run with translation augmentation goes for 99.3% and 99.5%, and a third checks lenet5's recipe.
The baseline, in the same process, is PyTorch's own MNIST example (github.com/pytorch/examples,
mnist/main.py) as users write it: a per-sample Dataset and torch.utils.data.DataLoader, Adadelta
at lr 1.0 with StepLR(gamma=0.7), batch 64, for one epoch. Both use every core.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.data import open_source
from cnnkit.train import FitResult, Hooks, TrainConfig, fit

TARGETS = (0.99, 0.993, 0.995)


# ----------------------------------------------------------------------------- cnnkit


def first_reached(result: FitResult, target: float) -> dict[str, Any] | None:
    """The first metrics record at or above `target` validation accuracy."""
    return next((r for r in result.metrics if r["val_acc"] >= target), None)


def run_cnnkit(label: str, config: TrainConfig) -> dict[str, Any]:
    hooks = Hooks(
        on_eval=lambda r: print(
            f"  {label}: epoch {r['epoch']:.2f} val {r['val_acc']:.4f} at {r['elapsed_s']:.1f}s",
            flush=True,
        )
    )
    result = fit(config, hooks)
    row: dict[str, Any] = {"label": label, "summary": result.summary}
    for target in TARGETS:
        hit = first_reached(result, target)
        row[target] = None if hit is None else (hit["elapsed_s"], hit["epoch"])
    return row


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ----------------------------------------------------------------------------- the baseline


class ExampleNet(nn.Module):
    """pytorch/examples mnist/main.py's Net, unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, 10) log-probs
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


class ExampleDataset(torch.utils.data.Dataset):
    """What torchvision's MNIST + ToTensor + Normalize((0.1307,), (0.3081,)) do, per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels  # uint8 (N, 28, 28, 1), int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[index].transpose(2, 0, 1).copy()).float() / 255
        return (x - 0.1307) / 0.3081, int(self.labels[index])


def run_baseline(epochs: int = 1) -> dict[str, Any]:
    dataset = open_source("mnist", progress=False)
    train, test = dataset.splits["train"], dataset.splits["test"]
    torch.manual_seed(1)  # the example's default --seed
    train_loader = torch.utils.data.DataLoader(
        ExampleDataset(train.images, train.labels), batch_size=64, shuffle=True
    )
    test_loader = torch.utils.data.DataLoader(
        ExampleDataset(test.images, test.labels), batch_size=1000
    )
    model = ExampleNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    rows = []
    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        for batch, (x, y) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            optimizer.step()
            if batch % 100 == 0:
                print(
                    f"  baseline: epoch {epoch + 1} batch {batch}/{len(train_loader)} loss {loss.item():.3f} "
                    f"{time.perf_counter() - started:.0f}s",
                    flush=True,
                )
        train_s = time.perf_counter() - started
        scheduler.step()
        started = time.perf_counter()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x).argmax(1) == y).sum().item()
        rows.append(
            {
                "epoch": epoch + 1,
                "train_s": train_s,
                "eval_s": time.perf_counter() - started,
                "acc": correct / len(test.labels),
            }
        )
        print(
            f"  baseline: epoch {epoch + 1}: {train_s:.1f}s training, test acc {rows[-1]['acc']:.4f}",
            flush=True,
        )
    return {"epochs": rows}


# ----------------------------------------------------------------------------- report


def seconds(hit: tuple[float, float] | None) -> str:
    return "not reached" if hit is None else f"{hit[0]:.1f} s ({hit[1]:.2f} epochs)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="cnnkit runs to 99.0%% (seeds 0..N-1)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-long", action="store_true", help="skip the 99.5%% and lenet5 runs")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    out = tempfile.mkdtemp(prefix="cnnkit-bench-")
    rows = []
    for seed in range(args.seeds):
        config = TrainConfig(
            data="mnist", val="test", target_acc=0.99, seed=seed, out=f"{out}/s{seed}", quiet=True
        )
        rows.append(run_cnnkit(f"default seed {seed}", config))
    if not args.skip_long:
        long = TrainConfig(
            data="mnist",
            val="test",
            target_acc=0.995,
            epochs=4,
            batch_size=128,
            lr=0.4,
            augment="translate=1",
            seed=0,
            out=f"{out}/long",
            quiet=True,
        )
        rows.append(run_cnnkit("translate=1, 4 epochs", long))
        lenet = TrainConfig.for_model(
            "lenet5", data="mnist", val="test", seed=0, out=f"{out}/lenet5", quiet=True
        )
        rows.append(run_cnnkit("lenet5 recipe", lenet))
    cnnkit_rss = peak_rss_mib()
    baseline = None if args.skip_baseline else run_baseline()

    print("\n| run | to 99.0% | to 99.3% | to 99.5% | final acc | images/s | data s | setup s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        s = row["summary"]
        print(
            f"| {row['label']} | {seconds(row[0.99])} | {seconds(row[0.993])} | {seconds(row[0.995])} | "
            f"{s['final_val_acc']:.4f} | {s['images_per_s']:,.0f} | {s['data_s']:.2f} | {s['setup_s']:.2f} |"
        )
    print(f"\ncnnkit peak RSS: {cnnkit_rss:.0f} MiB (before the baseline ran)")
    times = [row[0.99][0] for row in rows[: args.seeds] if row[0.99]]
    if times:
        print(
            f"cnnkit to 99.0%: median {np.median(times):.1f} s, worst {max(times):.1f} s over {len(times)} seeds"
        )
    if baseline:
        epoch = baseline["epochs"][0]
        print(
            f"baseline (PyTorch MNIST example): {epoch['train_s']:.1f} s/epoch, test acc {epoch['acc']:.4f} after 1 epoch"
        )
        if times:
            print(
                f"baseline to 99% needs >= 3 epochs (~{3 * epoch['train_s']:.0f} s at this speed): "
                f"{3 * epoch['train_s'] / max(times):.0f}x cnnkit's worst seed"
            )
    print(
        f"load average at end {os.getloadavg()[0]:.2f}; peak RSS of the process {peak_rss_mib():.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
