"""A plain MNIST script written for speed on one GPU: the baseline cnnkit is measured against.

    python3 bench/gpu_baseline.py [MNIST_DIR]     # prints the time to 99.0% and 99.5%, 5 seeds

Not cnnkit code (only torch and numpy): the recipe of issue 13's hand-written reference. A small
BN CNN, the whole uint8 data set in GPU memory, batch 512, bf16 autocast, channels_last, SGD with
a one-cycle (triangular) learning rate, a random translation by up to 2 pixels applied to the
batch with one gather, and no host sync between evaluations. `elapsed_s` is training plus
evaluation, after a warm-up run (cudnn autotuning and CUDA start-up are not in it).
No figures here yet: it has run on the CPU only (CNNKIT_CHECK_DEVICE=cpu bash bench/gpu.sh).
"""

from __future__ import annotations

import gzip
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN, STD = 0.1307, 0.3081  # MNIST's training-set pixel statistics


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (raw or .gz) as a uint8 array; images (N, 28, 28), labels (N,)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}/{stem}[.gz] is missing")


@dataclass
class Data:
    train_x: torch.Tensor  # (60000, 28, 28) uint8 on the device
    train_y: torch.Tensor  # (60000,) int64
    test_x: torch.Tensor  # (10000, 1, 28, 28) normalised, channels_last
    test_y: torch.Tensor


def load(folder: Path, device: torch.device, limit: int | None = None) -> Data:
    def split(images: str, labels: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(read_idx(find(folder, images))[:limit].copy()).to(device)
        y = torch.from_numpy(read_idx(find(folder, labels))[:limit].astype(np.int64)).to(device)
        return x, y

    train_x, train_y = split("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    test_u8, test_y = split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    test_x = normalise(test_u8[:, None]).contiguous(memory_format=torch.channels_last)
    return Data(train_x, train_y, test_x, test_y)


def normalise(u8: torch.Tensor) -> torch.Tensor:
    return (u8.float() / 255 - MEAN) / STD


def translate(u8: torch.Tensor, generator: torch.Generator, pixels: int = 2) -> torch.Tensor:
    """Shift each image of (B, H, W) by its own (dy, dx) in [-pixels, pixels], zero fill: one
    pad and one gather for the whole batch."""
    b, h, w = u8.shape
    padded = F.pad(u8, (pixels, pixels, pixels, pixels))  # (B, H + 2p, W + 2p)
    shifts = torch.randint(0, 2 * pixels + 1, (2, b), device=u8.device, generator=generator)
    rows = shifts[0, :, None] + torch.arange(h, device=u8.device)  # (B, H)
    cols = shifts[1, :, None] + torch.arange(w, device=u8.device)  # (B, W)
    batch = torch.arange(b, device=u8.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W)


def net(widths: tuple[int, int, int]) -> nn.Sequential:
    """Three conv-BN-ReLU-maxpool groups (28 -> 14 -> 7 -> 3) and a linear head."""
    layers: list[nn.Module] = []
    channels = 1
    for width in widths:
        layers += [
            nn.Conv2d(channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        channels = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 9, 10))


@dataclass
class Recipe:
    widths: tuple[int, int, int] = (32, 64, 128)
    epochs: int = 2
    batch_size: int = 512
    lr: float = 0.4
    warmup: float = 0.2  # fraction of the steps rising to lr
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    eval_every: int = 20  # steps
    bf16: bool = True


@torch.no_grad()
def accuracy(model: nn.Module, data: Data, autocast: bool) -> torch.Tensor:
    """Test accuracy as a device tensor (the caller decides when to sync)."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=data.test_y.device)
    for start in range(0, len(data.test_y), 10_000):
        with torch.autocast(data.test_x.device.type, torch.bfloat16, enabled=autocast):
            logits = model(data.test_x[start : start + 10_000])
        correct += (logits.argmax(1) == data.test_y[start : start + 10_000]).sum()
    model.train()
    return correct.double() / len(data.test_y)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(data: Data, recipe: Recipe, seed: int, targets: tuple[float, ...]) -> dict:
    """Train once; the elapsed seconds at which each target test accuracy was first seen."""
    device = data.train_y.device
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    model = net(recipe.widths).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True,
        weight_decay=recipe.weight_decay,
    )  # fmt: skip
    steps_per_epoch = len(data.train_y) // recipe.batch_size
    total = steps_per_epoch * recipe.epochs
    warm = max(1, int(recipe.warmup * total))
    reached: dict[float, float | None] = {t: None for t in targets}
    elapsed, step, last = 0.0, 0, 0.0
    sync(device)
    clock = time.perf_counter()
    for _epoch in range(recipe.epochs):
        order = torch.randperm(len(data.train_y), device=device, generator=generator)
        for b in range(steps_per_epoch):
            index = order[b * recipe.batch_size : (b + 1) * recipe.batch_size]
            x = normalise(translate(data.train_x[index], generator)[:, None])  # (B, 1, 28, 28)
            x = x.contiguous(memory_format=torch.channels_last)
            lr = (
                recipe.lr * (step + 1) / warm
                if step < warm
                else recipe.lr * (total - step) / (total - warm)
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, torch.bfloat16, enabled=recipe.bf16):
                logits = model(x)
            loss = F.cross_entropy(
                logits.float(), data.train_y[index], label_smoothing=recipe.label_smoothing
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % recipe.eval_every == 0 or step == total:
                acc = float(accuracy(model, data, recipe.bf16))  # the only host sync
                elapsed += time.perf_counter() - clock
                last = acc
                for target in targets:
                    if reached[target] is None and acc >= target:
                        reached[target] = elapsed
                if all(v is not None for v in reached.values()):
                    return {"seed": seed, "reached": reached, "final_acc": acc, "steps": step}
                clock = time.perf_counter()
    return {"seed": seed, "reached": reached, "final_acc": last, "steps": step}


def main() -> int:
    device = torch.device(os.environ.get("CNNKIT_CHECK_DEVICE", "cuda"))
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ["CNNKIT_DATA"]) / "mnist"
    torch.backends.cudnn.benchmark = True
    data = load(folder, device)
    train(data, Recipe(epochs=1), seed=100, targets=(0.99,))  # warm-up: autotuning, start-up
    for recipe in (Recipe(), Recipe(widths=(64, 128, 256), epochs=8)):
        for seed in range(5):
            result = train(data, recipe, seed, targets=(0.99, 0.995))
            print(recipe.widths, recipe.epochs, result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
