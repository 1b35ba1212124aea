"""Which torch device a `--device` value means; the one home of that rule for every command."""

from __future__ import annotations

import torch

from cnnkit.errors import ConfigError


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
