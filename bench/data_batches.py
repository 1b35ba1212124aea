"""Augmented training batches: DeviceLoader against a per-sample DataLoader, and against a train step.

    CNNKIT_DATA=../shared/data .venv/bin/python bench/data_batches.py

Issue targets, on CPU: batches (translate ±2 + normalisation, batch 512, 28x28 MNIST) at least
20x faster than the plain PyTorch pipeline below, and under 5% of one training step of a small
BN conv net (conv 32 / conv 64 same-padded with BN, batch 512, forward + backward + SGD step).
All three are timed in this one process, interleaved, with torch's default threads; the median
of several rounds is reported because the machine may be shared.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cnnkit.data import Augment, DeviceLoader, open_source

BATCH = 512


class ShiftedMNIST(Dataset):
    """How a plain PyTorch user writes it: one sample at a time in __getitem__."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> None:
        self.images, self.labels, self.mean, self.std = images, labels, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        x = torch.from_numpy(self.images[index]).permute(2, 0, 1).float() / 255  # (1, 28, 28)
        x = (x - self.mean) / self.std
        dy, dx = np.random.randint(-2, 3, size=2)
        x = torch.nn.functional.pad(x, (2, 2, 2, 2))[:, 2 + dy : 30 + dy, 2 + dx : 30 + dx]
        return x, int(self.labels[index])


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 10),
    )  # fmt: skip


def per_batch(make_iter, batches: int) -> float:
    """Seconds per batch over `batches` batches, after one warm-up batch."""
    iterator = make_iter()
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return (time.perf_counter() - started) / batches


def main() -> int:
    dataset = open_source(os.environ.get("SOURCE", "mnist"), progress=False)
    train = dataset.splits["train"]
    mean, std = dataset.known_stats or ([0.1307], [0.3081])
    loader = DeviceLoader(train, batch_size=BATCH, mean=mean, std=std, augment=Augment(translate=2))
    plain = DataLoader(
        ShiftedMNIST(train.images, train.labels, mean[0], std[0]), batch_size=BATCH, shuffle=True
    )
    net = small_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = next(loader.epoch(0))

    def steps():
        while True:
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
            yield

    def ours():
        epoch = 0
        while True:
            yield from loader.epoch(epoch)
            epoch += 1

    rounds = int(os.environ.get("ROUNDS", "5"))
    results = {"DeviceLoader": [], "DataLoader": [], "train step": []}
    for _ in range(rounds):
        results["DeviceLoader"].append(per_batch(ours, 40))
        results["DataLoader"].append(per_batch(lambda: iter(plain), 4))
        results["train step"].append(per_batch(steps, 4))
    median = {name: statistics.median(times) for name, times in results.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPU(s), "
        f"load average {os.getloadavg()[0]:.1f}, {rounds} rounds, batch {BATCH}, 28x28x1, translate ±2"
    )
    for name, seconds in median.items():
        print(
            f"{name:>12}: {seconds * 1e3:8.2f} ms/batch (median; best {min(results[name]) * 1e3:.2f})"
        )
    speedup = median["DataLoader"] / median["DeviceLoader"]
    share = median["DeviceLoader"] / median["train step"]
    print(f"DeviceLoader is {speedup:.0f}x faster than the per-sample DataLoader")
    print(f"batch production is {share:.1%} of one training step")
    return 0 if speedup >= 20 and share < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
