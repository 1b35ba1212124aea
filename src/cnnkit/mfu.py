"""Model FLOPs utilisation: the share of a GPU's dense peak that training turns into model FLOPs.

Pure Python (no torch), like the planner it takes its MACs from.

    flops = training_flops_per_image(plan(spec).totals["macs"])   # 3 x 2 x forward MACs
    mfu(forward_macs=118_147_360, images_per_second=250_000, peak_tflops=989.0)   # 0.179...
    peak_for("NVIDIA H100 80GB HBM3", "bf16")                                     # 989.0

A training step costs three forward passes' worth of MACs (forward, gradient of the input,
gradient of the weights), and one MAC is two FLOPs: the convention of PaLM's MFU (Chowdhery et
al. 2022) and of airbench's efficiency figure in issue 13.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cnnkit.errors import ConfigError

FLOPS_PER_MAC = 2
PASSES_PER_STEP = 3  # forward, backward to the inputs, backward to the weights


@dataclass(frozen=True)
class Peak:
    """One GPU's dense (no sparsity) tensor-core peaks, in TFLOP/s, from its vendor datasheet."""

    pattern: str  # regex on the lower-cased CUDA device name; the first matching row wins
    label: str
    bf16: float
    fp32: float  # the TF32 tensor rate: PyTorch's cuDNN convolutions use TF32 by default


# Dense figures (the datasheets' sparse figures halved). Order matters: the specific names first
# ("h100 nvl" before "h100", "l40s" before "l40", "a100" before "a10").
PEAKS: tuple[Peak, ...] = (
    Peak(r"\bgh200\b", "GH200", 989.4, 494.7),
    Peak(r"\bh200 nvl\b", "H200 NVL", 835.5, 417.5),
    Peak(r"\bh200\b", "H200 SXM", 989.4, 494.7),
    Peak(r"\bh100 nvl\b", "H100 NVL", 835.5, 417.5),
    Peak(r"\bh100 pcie\b", "H100 PCIe", 756.5, 378.0),
    Peak(r"\bh100\b", "H100 SXM", 989.4, 494.7),
    Peak(r"\ba100\b", "A100", 312.0, 156.0),
    Peak(r"\bl40s\b", "L40S", 362.05, 183.0),
    Peak(r"\bl4\b", "L4", 121.0, 60.0),
    Peak(r"\ba10\b", "A10", 125.0, 62.5),
    Peak(r"\brtx 4090\b", "GeForce RTX 4090", 165.2, 82.6),
    Peak(r"\brtx 3090\b", "GeForce RTX 3090", 71.0, 35.6),
)
PRECISIONS = ("bf16", "fp32")


def training_flops_per_image(forward_macs: int) -> int:
    """Model FLOPs of one training image: 3 passes x 2 FLOPs per MAC x the forward MACs."""
    return PASSES_PER_STEP * FLOPS_PER_MAC * forward_macs


def mfu(forward_macs: int, images_per_second: float, peak_tflops: float) -> float:
    """The fraction (0.18 = 18%) of `peak_tflops` spent on model FLOPs at this training speed."""
    if not peak_tflops > 0:
        raise ConfigError(
            f"--peak-tflops must be a positive number such as 989, got {peak_tflops!r}"
        )
    return training_flops_per_image(forward_macs) * images_per_second / (peak_tflops * 1e12)


def find_peak(device_name: str) -> Peak | None:
    """The table row whose pattern matches a CUDA device name, or None for an unknown GPU."""
    name = device_name.lower().replace("-", " ")
    return next((peak for peak in PEAKS if re.search(peak.pattern, name)), None)


def peak_for(device_name: str, precision: str) -> float | None:
    """The dense peak (TFLOP/s) of `device_name` at `precision` (bf16 or fp32), or None."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} has no peak in the table; use bf16 or fp32")
    peak = find_peak(device_name)
    return None if peak is None else getattr(peak, precision)


def mfu_line(
    forward_macs: int,
    images_per_second: float | None,
    device_name: str,
    precision: str,
    peak_tflops: float | None = None,
) -> str:
    """The summary's MFU line; with an unknown GPU and no `peak_tflops`, a note saying why not.

    `peak_tflops` (from --peak-tflops) overrides the table.
    """
    flops = training_flops_per_image(forward_macs)
    if peak_tflops is not None:
        peak, source = peak_tflops, "--peak-tflops"
    else:
        row = find_peak(device_name)
        if row is None:
            return (
                f"MFU: omitted, no known {precision} peak for {device_name[:60]!r}; "
                f"pass --peak-tflops N (its dense {precision} TFLOP/s)"
            )
        peak, source = getattr(row, precision), f"{row.label} dense {precision}"
    if not images_per_second:
        return "MFU: omitted, no training steps were timed"
    share = mfu(forward_macs, images_per_second, peak)
    achieved = flops * images_per_second / 1e12
    return (
        f"MFU: {100 * share:.1f}% ({achieved:.1f} of {peak:g} TFLOP/s, {source}; "
        f"{flops / 1e9:.3g} GFLOP per training image)"
    )
