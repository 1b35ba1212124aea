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
