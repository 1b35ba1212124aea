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
