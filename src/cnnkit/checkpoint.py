"""The resume state of a run: optimizer, model, RNG and the trainer's own numbers, saved whole.

    runs/mnist/state/state.json         step, config, optimizer param_groups, tensors' SHA-256
    runs/mnist/state/state.safetensors  optimizer tensors ("optimizer.state.3.exp_avg"), RNG, model

The pair is written as `runs_io.commit_pair` describes, so a crash leaves the old state or the
new one, never a mix.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnkit.errors import CheckpointError
from cnnkit.runs_io import commit_pair, load_safetensors, read_verified, sha256_bytes

if TYPE_CHECKING:  # torch is imported inside the functions that need it
    import os

    import torch
    from torch import nn

STATE_FORMAT = "cnnkit-state"
STATE_FORMAT_VERSION = 1
STATE_DIR = "state"
STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"
_STATE_KEYS = ("format", "format_version", "optimizer", "has_model", "state_tensors", "saved")


def save_state(
    run: str | os.PathLike,
    optimizer: torch.optim.Optimizer | None,
    extra: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    model: nn.Module | None = None,
) -> None:
    """Write the resume state: tensors to state/state.safetensors, the rest to state/state.json.

    `extra` is JSON (step, epoch, batch, config, ...); `tensors` are named tensors such as
    `capture_rng()`'s. With `model`, its state_dict is kept too (under "model."), so resuming
    continues from exactly these weights even when model.safetensors holds the best ones.
    Optimizer tensors are flattened to "optimizer.state.<param>.<name>"; its numbers and
    param_groups go to the JSON.
    """
    import safetensors.torch

    run = Path(run)
    for key in tensors:
        if key.startswith(("optimizer.", "model.")):
            raise ValueError(f"tensor name {key!r} uses a reserved prefix (optimizer., model.)")
    clash = sorted(set(extra) & {*_STATE_KEYS, "tensors"})
    if clash:  # load_state returns extra as it was, plus "tensors"
        raise ValueError(f"extra uses reserved key(s) {', '.join(clash)}")
    flat = {key: value.detach().to("cpu").contiguous().clone() for key, value in tensors.items()}
    optimizer_doc = None
    if optimizer is not None:
        state = optimizer.state_dict()
        numbers: dict[str, dict[str, Any]] = {}
        for index, entries in state["state"].items():
            for name, value in entries.items():
                if hasattr(value, "detach"):  # a tensor: exp_avg, momentum_buffer, step, ...
                    flat[f"optimizer.state.{index}.{name}"] = (
                        value.detach().to("cpu").contiguous().clone()
                    )
                else:
                    numbers.setdefault(str(index), {})[name] = value
        optimizer_doc = {
            "class": type(optimizer).__name__,
            "param_groups": [_group_json(group) for group in state["param_groups"]],
            "numbers": numbers,
        }
    if model is not None:
        for key, value in model.state_dict().items():
            flat[f"model.{key}"] = value.detach().to("cpu").contiguous().clone()
    blob = safetensors.torch.save(flat)
    document = {
        "format": STATE_FORMAT,
        "format_version": STATE_FORMAT_VERSION,
        **extra,
        "optimizer": optimizer_doc,
        "has_model": model is not None,
        "state_tensors": {"file": STATE_TENSORS, "sha256": sha256_bytes(blob), "bytes": len(blob)},
        "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    directory = run / STATE_DIR
    directory.mkdir(exist_ok=True)
    commit_pair(directory / STATE_TENSORS, blob, directory / STATE_JSON, document)


def _group_json(group: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in group.items():
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a tensor lr
            value = value.item()
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, (int, float, str, bool, list, type(None))):
            raise TypeError(f"optimizer param_group entry {key}={value!r} cannot be saved as JSON")
        out[key] = value
    return out


def read_state(run: str | os.PathLike) -> dict[str, Any]:
    """The `extra` dict of a run's resume state (step, config, ...), without loading tensors."""
    document, _ = _state_document(Path(run))
    return {key: value for key, value in document.items() if key not in _STATE_KEYS}


def _state_document(run: Path) -> tuple[dict[str, Any], Path]:
    path = run / STATE_DIR / STATE_JSON
    if not path.is_file():
        raise CheckpointError(
            f"{run} has no resume state ({STATE_DIR}/{STATE_JSON} is missing); "
            f"pass --overwrite instead of --resume to train it again from scratch"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"{path} is damaged ({error}); train again with --overwrite"
        ) from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not cnnkit resume state; train again with --overwrite")
    if document.get("format_version") != STATE_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {document.get('format_version')!r}; this cnnkit reads "
            f"{STATE_FORMAT_VERSION}; resume with the cnnkit that wrote it, or --overwrite"
        )
    return document, path


def load_state(
    run: str | os.PathLike,
    optimizer: torch.optim.Optimizer | None,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """Restore the optimizer (and `model`, if saved with one); returns the extra dict.

    The returned dict holds what `save_state` got as `extra`, plus "tensors": the named
    tensors it got (on the CPU).
    """

    document, path = _state_document(Path(run))
    blob = read_verified(path.parent / STATE_TENSORS, document.get("state_tensors"), str(path))
    flat = load_safetensors(blob)
    optimizer_doc = document.get("optimizer")
    if optimizer is not None:
        if not optimizer_doc:
            raise CheckpointError(f"{path} holds no optimizer state; train again with --overwrite")
        _load_optimizer(optimizer, optimizer_doc, flat, path)
    if model is not None:
        if not document.get("has_model"):
            raise CheckpointError(f"{path} holds no model weights; train again with --overwrite")
        weights = {k[len("model.") :]: v for k, v in flat.items() if k.startswith("model.")}
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as error:
            raise CheckpointError(
                f"{path}: the saved weights do not fit this model ({' '.join(str(error).split())[:300]}); "
                f"resume with the same spec, or --overwrite"
            ) from None
    extra = {key: value for key, value in document.items() if key not in _STATE_KEYS}
    extra["tensors"] = {
        key: value for key, value in flat.items() if not key.startswith(("optimizer.", "model."))
    }
    return extra


def _load_optimizer(optimizer: Any, doc: dict[str, Any], flat: dict[str, Any], path: Path) -> None:
    saved_class, current = doc.get("class"), type(optimizer).__name__
    groups = doc.get("param_groups") or []
    sizes = [len(group.get("params", [])) for group in groups]
    if saved_class != current or sizes != [len(g["params"]) for g in optimizer.param_groups]:
        raise CheckpointError(
            f"{path} was saved with {saved_class} over parameter groups of sizes {sizes}, but "
            f"resuming uses {current} over {[len(g['params']) for g in optimizer.param_groups]}; "
            f"resume with the same optimizer and spec, or start again with --overwrite"
        )
    state: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        if key.startswith("optimizer.state."):
            index, name = key[len("optimizer.state.") :].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for index, entries in (doc.get("numbers") or {}).items():
        state.setdefault(int(index), {}).update(entries)
    # JSON has no tuples; torch's optimizers keep betas as one.
    restored = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        for group in groups
    ]
    optimizer.load_state_dict({"state": state, "param_groups": restored})


def capture_rng() -> dict[str, torch.Tensor]:
    """torch's CPU and CUDA generator states as uint8 tensors, for `save_state`'s tensors."""
    import torch

    states = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"rng.cuda.{index}"] = state
    return states


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    """Put back generator states taken by `capture_rng` (missing CUDA ones are skipped)."""
    import torch

    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            state = tensors.get(f"rng.cuda.{index}")
            if state is not None:
                torch.cuda.set_rng_state(state.to(torch.uint8), index)
