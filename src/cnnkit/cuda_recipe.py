"""The GPU recipe: what changes when training runs on CUDA. The CPU recipe is left as it is.

    config = cuda_recipe(config, device)        # a CPU device: the same object back
    with cuda_speedups(device): ...             # cudnn.benchmark while fit() runs
    metrics = DeviceMetrics(device)             # in the step: metrics.add(loss, logits, y)
    sums = metrics.read()                       # at evaluation time: the one host sync
    result = evaluate(forward, loader, autocast)

Following airbench: the whole uint8 split already lives on the device (cnnkit.data.DeviceLoader);
on top of that the step never waits for the host (no .item(): losses and accuracies are summed
on the device and read when the loop evaluates), evaluation runs at a large batch, and the
convolutions are autotuned once per shape (cudnn.benchmark) in channels_last with bf16 autocast.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.devices import resolve_precision
from cnnkit.errors import ConfigError

# Per-preset departures on CUDA, applied only where the config still holds the CPU recipe's value
# (an explicit --batch-size or --lr is kept). Not yet tuned on a GPU: bench/gpu.sh sweeps the lr.
# The batch: 512 is the plain fast script's (issue 13: 99.06% in 0.65 s on an H100); the lr is
# the CPU's 0.2 at batch 64 scaled by sqrt(512 / 64).
CUDA_RECIPES: dict[str, dict[str, Any]] = {
    "digits": {"batch_size": 512, "lr": 0.6},
    # No accuracy claim (no CIFAR copy here); batch 1024 is where issue 13 measures MFU.
    "cifar-fast": {"batch_size": 1024, "lr": 0.6},
}
EVAL_BATCH_CPU = 1024  # the CPU loop's validation batch, unchanged
EVAL_BATCH_CUDA = 8192  # MNIST's 10,000 test images in two forward passes


def cuda_recipe(config: Any, device: torch.device) -> Any:
    """`config` (a TrainConfig) adjusted for `device`: on a CPU it is returned untouched.

    On CUDA: the preset's CUDA_RECIPES batch and lr where the user left the CPU recipe's,
    precision 'auto' resolved to bf16 where the GPU has it, channels_last on.
    """
    if device.type != "cuda":
        return config
    cpu = type(config).for_model(config.model)  # the values a user who gave nothing would have
    changes: dict[str, Any] = {
        name: value
        for name, value in CUDA_RECIPES.get(config.model, {}).items()
        if getattr(config, name) == getattr(cpu, name)
    }
    changes["precision"] = resolve_precision(config.precision, device)
    changes["channels_last"] = True
    return dataclasses.replace(config, **changes)


def eval_batch_size(device: torch.device) -> int:
    """The validation loader's batch: large on CUDA, where one big forward beats many small."""
    return EVAL_BATCH_CUDA if device.type == "cuda" else EVAL_BATCH_CPU


@contextlib.contextmanager
def cuda_speedups(device: torch.device) -> Iterator[None]:
    """cudnn.benchmark on while the block runs on CUDA (each conv shape is autotuned once, on its
    first call), and put back afterwards: fit() leaves no global state behind."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


# ----------------------------------------------------------------------------- metrics on the device


@dataclass(frozen=True)
class MetricSums:
    """What DeviceMetrics.read() returns: means over the `count` images added since the last read."""

    loss: float
    accuracy: float
    count: int
    finite: bool  # False when some step's loss was nan or inf


class DeviceMetrics:
    """Training loss and accuracy summed on the device; nothing in `add` waits for the GPU.

    `add` queues three tiny kernels; `read` is the one host sync, at evaluation time.
    The loss sum is float64 so that it matches summing per-step .item() values on the host.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.finite = torch.ones((), dtype=torch.bool, device=self.device)
        self.count = 0  # known on the host: the batch sizes

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """One step: `loss` the batch mean (scalar), logits (B, classes), labels (B,)."""
        n = labels.shape[0]
        loss = loss.detach()
        self.loss_sum += loss.double() * n
        self.correct += (logits.detach().argmax(1) == labels).sum()
        self.finite &= loss.isfinite()
        self.count += n

    def read(self) -> MetricSums:
        """The means since the last read (one device-to-host copy), then start again."""
        loss_sum, correct, finite = torch.stack(
            [self.loss_sum, self.correct.double(), self.finite.double()]
        ).tolist()
        count = max(self.count, 1)
        sums = MetricSums(loss_sum / count, correct / count, self.count, bool(finite))
        self.reset()
        return sums


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean cross-entropy, without label smoothing
    accuracy: float
    count: int


@torch.no_grad()
def evaluate(forward: Callable, loader: Any, autocast: Any = None) -> EvalResult:
    """Loss and accuracy of `forward` over every batch of `loader` (a DeviceLoader, unshuffled),
    summed on the device and read once. The caller puts the model in eval mode."""
    device = loader.labels.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for x, y in loader.epoch(0):  # x (B, C, H, W), y (B,)
        with autocast or contextlib.nullcontext():
            logits = forward(x).float()  # (B, classes)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        count += y.shape[0]
    total, right = torch.stack([loss_sum, correct.double()]).tolist()
    return EvalResult(total / max(count, 1), right / max(count, 1), count)


# ----------------------------------------------------------------------------- batch that fits


class BatchTooLargeError(ConfigError):
    """--batch-size does not fit in the GPU's memory; the message names one that does."""


def largest_fitting_batch(try_batch: Callable[[int], None], batch_size: int) -> int:
    """`batch_size`, or the first of its halvings for which `try_batch(n)` raises no CUDA
    out-of-memory error; 0 when not even one image fits."""
    n = batch_size
    while n >= 1:
        try:
            try_batch(n)
            return n
        except torch.cuda.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the failed attempt's blocks, before the next one
            n //= 2
    return 0


def check_batch_fits(
    model: nn.Module,
    batch_size: int,
    input_shape: tuple[int, int, int],
    device: torch.device,
    autocast: Any = None,
    channels_last: bool = True,
) -> None:
    """Raise BatchTooLargeError, naming a batch that fits, when one training step at
    `batch_size` runs out of GPU memory. Call it before the first checkpoint: nothing is saved.

    The step runs on a copy, so the model's weights and batch-norm statistics are untouched.
    Meant for CUDA (the loop calls it there only); on the CPU it is one wasted step.
    """
    probe = copy.deepcopy(model).train()
    height, width, channels = input_shape

    def step(n: int) -> None:
        x = torch.randn(n, channels, height, width, device=device)  # (B, C, H, W)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast or contextlib.nullcontext():
            logits = probe(x)  # (B, classes)
        logits.float().logsumexp(1).mean().backward()
        probe.zero_grad(set_to_none=True)

    fits = largest_fitting_batch(step, batch_size)
    if fits != batch_size:
        raise BatchTooLargeError(batch_too_large_message(batch_size, fits, device))


def batch_too_large_message(batch_size: int, fits: int, device: torch.device | str) -> str:
    """The one line for a batch that ran out of memory on `device`."""
    if fits == 0:
        return (
            f"--batch-size {batch_size}: not even one image fits in the memory of {device}; "
            f"use a smaller model or --input, or --device cpu"
        )
    return (
        f"--batch-size {batch_size} does not fit in the memory of {device}; "
        f"{fits} fits: pass --batch-size {fits}"
    )


# ----------------------------------------------------------------------------- summary line


def summary_mfu_line(result: Any, peak_tflops: float | None = None) -> str | None:
    """The MFU line for a CUDA run's summary (a FitResult), or None on the CPU."""
    from cnnkit.mfu import mfu_line

    summary = result.summary
    device = torch.device(summary.get("device") or "cpu")
    if device.type != "cuda":
        return None
    macs = int(result.manifest["plan_totals"]["macs"])
    # Step time alone when the loop records it; else the images/s that include evaluation.
    speed = summary.get("step_images_per_s") or summary.get("images_per_s")
    name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else str(device)
    return mfu_line(macs, speed, name, summary.get("precision") or "fp32", peak_tflops)
