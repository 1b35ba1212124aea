"""The run directory: everything needed to use a model again, and nothing that runs code on load.

    runs/mnist/
      cnnkit.json         manifest: spec, classes, preprocessing, config, metrics, weights' SHA-256
      model.safetensors   the module's state_dict (BN buffers included)
      metrics.jsonl       one JSON record per evaluation
      state/state.json    resume state: step, epoch, optimizer param_groups, tensors' SHA-256
      state/state.safetensors   optimizer tensors ("optimizer.state.3.exp_avg"), RNG states, ...

Nothing is ever unpickled: tensors are safetensors, the rest JSON.

Crash safety. Every file is written to a temp file in its own directory, fsynced and renamed over
its name (`atomic_write_bytes`). A tensors file and the JSON that names its hash are a pair:
  1. the new tensors go to a staging name (`model.next.safetensors`), fsynced;
  2. the JSON naming their SHA-256 replaces the old one: this rename is the commit point;
  3. the staging file is renamed over `model.safetensors`.
A crash before 2 leaves the old JSON and old tensors; a crash between 2 and 3 leaves the new JSON
and the new tensors under the staging name, which the readers fall back to after checking the
hash. Readers never modify the run (a server may read while training writes); the next save
overwrites any leftover staging file.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnkit.budgets import clip, read_regular

# The resume state and the crash-safe file helpers have their own modules; their names stay
# importable from here, where callers have always found them.
from cnnkit.checkpoint import (
    STATE_DIR,
    STATE_FORMAT,
    STATE_FORMAT_VERSION,
    STATE_JSON,
    STATE_TENSORS,
    capture_rng,
    load_state,
    read_state,
    restore_rng,
    save_state,
)
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.runs_check import FORMAT, FORMAT_VERSION, MAX_MANIFEST_BYTES, check_manifest
from cnnkit.runs_io import (
    atomic_write_bytes,
    atomic_write_json,
    commit_pair,
    dumps,
    load_safetensors,
    read_verified,
    sha256_bytes,
)

if TYPE_CHECKING:  # torch is imported inside the functions that need it
    from torch import nn


MANIFEST = "cnnkit.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.jsonl"
# Every name a run owns, for --overwrite (which removes only these, never the user's own files).
_OWNED = (MANIFEST, WEIGHTS, "model.next.safetensors", METRICS, STATE_DIR)


# ----------------------------------------------------------------------------- the directory


def is_run(path: str | os.PathLike) -> bool:
    """True when `path` is a directory holding a run manifest."""
    return (Path(path) / MANIFEST).is_file()


def prepare_run_dir(path: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> Path:
    """Check and create the output directory of a training run; returns it as a Path.

    An existing run is refused unless `overwrite` (its files are removed; other files stay) or
    `resume` (it must hold resume state). The directory must be writable: a probe file is
    written and removed, so a read-only disk fails now rather than after an epoch of training.
    """
    run = Path(path)
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume contradict each other; pass only one")
    if run.exists() and not run.is_dir():
        raise CheckpointError(f"{run} is a file, not a directory; choose another --out")
    if resume:
        if not run.exists():
            raise CheckpointError(
                f"{run} does not exist, so there is nothing to resume; "
                f"start it with 'cnnkit train --out {run}'"
            )
        read_manifest(run)  # refuses a directory that is not a run, or a damaged manifest
        if not (run / STATE_DIR / STATE_JSON).is_file():
            raise CheckpointError(
                f"{run} holds a run but no resume state ({STATE_DIR}/{STATE_JSON} is missing); "
                f"pass --overwrite instead of --resume to train it again from scratch"
            )
        _check_writable(run)
        return run
    leftovers = [name for name in _OWNED if (run / name).exists()]
    if leftovers and not overwrite:
        if is_run(run):
            raise CheckpointError(
                f"{run} already holds a run; pass --overwrite to replace it or --resume to continue it"
            )
        raise CheckpointError(
            f"{run} holds files of an unfinished run ({', '.join(leftovers)}) but no {MANIFEST}; "
            f"pass --overwrite to replace them"
        )
    if leftovers:
        _remove_run_files(run)
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(
            f"cannot create {run} ({error.strerror}); choose an --out folder you can write to"
        ) from None
    _check_writable(run)
    return run


def _check_writable(run: Path) -> None:
    probe = run / f".cnnkit-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as file:
            file.write(b"probe")
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        raise CheckpointError(
            f"cannot write to {run} ({error.strerror}); choose an --out folder you can write to"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def _remove_run_files(run: Path) -> None:
    """Remove what a run owns, the manifest first, so a half-removed run is no longer a run."""
    for name in _OWNED:
        target = run / name
        if target.is_dir():
            for child in target.iterdir():
                if child.is_file() and (
                    child.name.startswith(("state.", ".state.")) or child.suffix == ".tmp"
                ):
                    child.unlink()
            with contextlib.suppress(OSError):  # stays if the user put their own files there
                target.rmdir()
        elif target.exists():
            target.unlink()
    for temp in run.glob(".*.tmp"):  # temp files of a save that was killed mid-write
        if any(temp.name.startswith(f".{name}.") for name in _OWNED):
            temp.unlink()


# ----------------------------------------------------------------------------- manifest + weights


def make_manifest(
    spec: Any,
    class_names: list[str],
    mean: list[float],
    std: list[float],
    resize: str = "letterbox",
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a model of `spec` (a cnnkit.spec.Spec); `save_model` adds weights and time.

    `lineage` (`cnnkit.transfer.transfer_weights`'s record) is kept under "from" for a run that
    started from another: its path, its weights' SHA-256, the layers kept, adapted, re-initialised
    and frozen.
    """
    from cnnkit.plan import plan
    from cnnkit.spec import to_dict

    height, width, channels = spec.input_shape
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(
            f"mean {list(mean)} and std {list(std)} need one value per input channel ({channels})"
        )
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": to_dict(spec),
        "notation": str(spec),
        "plan_totals": plan(spec).totals,
        "class_names": [str(name) for name in class_names],
        "input_shape": [height, width, channels],
        "preprocessing": {
            "channels": channels,
            "resize": resize,
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
        },
        "train_config": dict(train_config or {}),
        "metrics": dict(metrics or {}),
    }
    if lineage is not None:
        manifest["from"] = dict(lineage)
    return manifest


def save_model(
    run: str | os.PathLike, model: nn.Module, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Write the model's weights, then the manifest naming their SHA-256; returns the manifest.

    `manifest` is `make_manifest(...)`'s dict (or one with the same keys); this fills in
    "weights", "versions" and "created". Crash-safe as the module docstring describes.
    """
    import safetensors.torch
    import torch

    from cnnkit import __version__

    run = Path(run)
    # Own CPU copies: safetensors refuses shared or non-contiguous storage.
    tensors = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in model.state_dict().items()
    }
    blob = safetensors.torch.save(tensors, metadata={"format": "pt"})
    document = {
        **manifest,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"cnnkit": __version__, "torch": torch.__version__.split("+")[0]},
        "weights": {"file": WEIGHTS, "sha256": sha256_bytes(blob), "bytes": len(blob)},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    _check_manifest(document, run / MANIFEST)
    run.mkdir(parents=True, exist_ok=True)
    commit_pair(run / WEIGHTS, blob, run / MANIFEST, document)
    return document


def read_manifest(run: str | os.PathLike) -> dict[str, Any]:
    """The checked manifest of a run; CheckpointError for a missing, damaged or foreign one."""
    run = _run_dir(run)
    path = run / MANIFEST
    if not run.exists():
        raise CheckpointError(
            f"{run} does not exist; give the folder of a run ('cnnkit train --out')"
        )
    if not path.exists():  # a FIFO or device exists: read_regular refuses it
        raise CheckpointError(
            f"{run} is not a cnnkit run (no {MANIFEST}); train one with 'cnnkit train --out {run}'"
        )
    try:
        text = read_regular(path, MAX_MANIFEST_BYTES, "run manifest", CheckpointError)
        manifest = json.loads(text.decode("utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            f"the run is damaged; retrain it"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: cannot read the manifest ({clip(str(error))})") from None
    except (RecursionError, ValueError) as error:  # 100,000 brackets deep; 4,300+ digits
        problem = "nests too deep" if isinstance(error, RecursionError) else clip(str(error))
        raise CheckpointError(f"{path} cannot be read ({problem}); the run is damaged") from None
    _check_manifest(manifest, path)
    return manifest


def _run_dir(path: str | os.PathLike) -> Path:
    """A run directory, also when given one of its files (runs/x/cnnkit.json)."""
    path = Path(path)
    if path.is_file() and path.name in (MANIFEST, WEIGHTS):
        return path.parent
    return path


def _check_manifest(manifest: Any, path: Path) -> None:
    """Every field checked before use (runs_check): format, class names, shape, preprocessing."""
    check_manifest(manifest, path, _version())


def _version() -> str:
    from cnnkit import __version__

    return __version__


def load_model(run: str | os.PathLike, device: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's model from its manifest and load its verified weights; eval mode.

    >>> model, manifest = load_model("runs/mnist")
    """

    from cnnkit.errors import SpecError
    from cnnkit.network import build
    from cnnkit.plan import plan
    from cnnkit.spec import from_dict

    run = _run_dir(run)
    manifest = read_manifest(run)
    path = run / MANIFEST
    try:
        spec = from_dict(manifest["spec"])
        outputs = math.prod(plan(spec).output_shape)  # Network.plan is None on slices
        model = build(spec)
    except SpecError as error:
        raise CheckpointError(f"{path}: its spec cannot be built: {error}") from None
    classes = len(manifest["class_names"])
    if list(spec.input_shape) != manifest["input_shape"] or outputs != classes:
        raise CheckpointError(
            f"{path}: the spec ({spec}) does not match input_shape {manifest['input_shape']} and "
            f"{classes} class names; the manifest was edited; restore it or retrain"
        )
    weights = run / str(manifest["weights"].get("file", WEIGHTS))
    if weights.parent != run or weights.name != WEIGHTS:
        raise CheckpointError(f"{path}: weights file must be {WEIGHTS}, got {weights.name!r}")
    blob = read_verified(weights, manifest["weights"], str(path))
    try:
        tensors = load_safetensors(blob)  # plain tensors from bytes, never unpickled
    except Exception as error:  # the hash matched, so this is a file cnnkit wrote badly
        raise CheckpointError(f"{weights} cannot be decoded ({error})") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise CheckpointError(
            f"{weights} does not fit the spec in {MANIFEST} ({detail[:300]}); "
            f"the two come from different runs"
        ) from None
    return model.to(device).eval(), manifest


# ----------------------------------------------------------------------------- resume state

# ----------------------------------------------------------------------------- metrics log


def append_metrics(run: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as a JSON line, fsynced; a partial line left by a crash is dropped first."""
    path = Path(run) / METRICS
    line = (dumps(record) + "\n").encode("utf-8")
    with open(path, "ab+") as file:
        size = file.seek(0, os.SEEK_END)
        if size:
            file.seek(size - 1)
            if file.read(1) != b"\n":  # a killed process left half a record: cut it off
                file.seek(0)
                keep = file.read().rfind(b"\n") + 1
                file.truncate(keep)
        file.write(line)
        file.flush()
        os.fsync(file.fileno())


def read_metrics(run: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of metrics.jsonl in order ([] when there is none yet).

    An unfinished last line (a crash mid-append) is skipped; a damaged line elsewhere is an error.
    """
    path = Path(run) / METRICS
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    # The last piece is "" when the file ends with a newline, else half a record from a crash:
    # skipped here, cut off by the next append_metrics.
    lines = text.split("\n")[:-1]
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise CheckpointError(
                f"{path}:{number} is not a JSON record ({error.msg}); remove that line"
            ) from None
    return records


def truncate_metrics(run: str | os.PathLike, step: int) -> None:
    """Keep only the records up to `step`: a resumed run repeats the steps after its checkpoint."""
    path = Path(run) / METRICS
    if not path.is_file():
        return
    kept = [r for r in read_metrics(run) if not isinstance(r.get("step"), int) or r["step"] <= step]
    atomic_write_bytes(path, "".join(dumps(r) + "\n" for r in kept).encode("utf-8"))


__all__ = [  # this module's names, and those it re-exports from checkpoint and runs_io
    "MANIFEST", "METRICS", "STATE_DIR", "STATE_FORMAT", "STATE_FORMAT_VERSION", "STATE_JSON",
    "STATE_TENSORS", "WEIGHTS", "append_metrics", "atomic_write_bytes", "atomic_write_json",
    "capture_rng", "dumps", "is_run", "load_model", "load_state", "make_manifest",
    "prepare_run_dir", "read_manifest", "read_metrics", "read_state", "restore_rng",
    "save_model", "save_state", "sha256_bytes", "truncate_metrics",
]  # fmt: skip
