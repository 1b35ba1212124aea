"""Which torch device a `--device` value means; the one home of that rule for every command."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from cnnkit.errors import ConfigError
from cnnkit.threads import check_threads, default_threads


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'; ConfigError when it cannot run here."""
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError):
            raise ConfigError(
                f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N"
            ) from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name}: only cpu and cuda are supported; use --device cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} but CUDA is not available here; use --device cpu")
    return device


def use_threads(count: int | None) -> int:
    """Let torch use `count` CPU threads (None: `cnnkit.threads.default_threads()`); the count set.

    A server passes 1 to leave the other cores to HTTP; train, evaluate and predict pass --threads.
    """
    count = check_threads(count) or default_threads()
    torch.set_num_threads(count)
    return count


@contextlib.contextmanager
def thread_count(count: int | None) -> Iterator[int]:
    """`use_threads(count)` for a `with` block, then the previous count again (library calls)."""
    previous = torch.get_num_threads()
    try:
        yield use_threads(count)
    finally:
        torch.set_num_threads(previous)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 on a CUDA GPU that has it and fp32 elsewhere; bf16 on a GPU without it
    (before Ampere: V100, T4) is a ConfigError, since autocast would fall back silently."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and has_bf16(device) else "fp32"
    if precision == "bf16" and device.type == "cuda" and not has_bf16(device):
        name = torch.cuda.get_device_name(device)
        raise ConfigError(
            f"--precision bf16 but {name} has no bf16 arithmetic (it needs an Ampere or later "
            f"GPU); use --precision fp32"
        )
    return precision


def has_bf16(device: torch.device) -> bool:
    """Native bf16 on this CUDA GPU: compute capability 8.0 (Ampere) or later. (Recent torch's
    is_bf16_supported() also says yes for GPUs that only emulate it.)"""
    return torch.cuda.get_device_capability(device) >= (8, 0)
