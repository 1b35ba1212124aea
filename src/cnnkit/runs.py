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
import hashlib
import json
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnkit.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # torch is imported inside the functions that need it
    import torch
    from torch import nn

FORMAT = "cnnkit-run"
FORMAT_VERSION = 1
STATE_FORMAT = "cnnkit-state"
STATE_FORMAT_VERSION = 1

MANIFEST = "cnnkit.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.jsonl"
STATE_DIR = "state"
STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"
# Every name a run owns, for --overwrite (which removes only these, never the user's own files).
_OWNED = (MANIFEST, WEIGHTS, "model.next.safetensors", METRICS, STATE_DIR)
_REQUIRED = ("spec", "class_names", "input_shape", "preprocessing", "weights")
# state.json's own keys; everything else in it is the caller's `extra`.
_STATE_KEYS = ("format", "format_version", "optimizer", "has_model", "state_tensors", "saved")
_HEADER_LIMIT = 100 * 2**20  # safetensors' own cap on the JSON header


# ----------------------------------------------------------------------------- atomic writes


def load_safetensors(blob: bytes) -> dict:
    """Tensors from safetensors bytes (no pickle); imported lazily to keep `import cnnkit` light."""
    from safetensors.torch import load

    return load(blob)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file, whole."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)  # the rename itself is durable only once the directory is synced


def atomic_write_json(path: str | os.PathLike, document: Any) -> None:
    """`atomic_write_bytes` of `document` as indented JSON; NaN and infinity become null."""
    atomic_write_bytes(path, (dumps(document, indent=2) + "\n").encode("utf-8"))


def dumps(document: Any, indent: int | None = None) -> str:
    """Strict JSON (browsers reject NaN): non-finite floats -> null, numpy/torch scalars -> numbers."""
    return json.dumps(_finite(document), indent=indent, allow_nan=False, default=_plain)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _plain(value: Any) -> Any:
    """json's fallback: numpy scalars/arrays and 0-d tensors to Python numbers, paths to str."""
    if hasattr(value, "tolist"):  # numpy scalar or array, torch tensor
        return _finite(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open directories; its renames are durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _staging(path: Path) -> Path:
    """model.safetensors -> model.next.safetensors: where a new file waits for its JSON."""
    return path.with_name(f"{path.stem}.next{path.suffix}")


def _commit_pair(blob_path: Path, blob: bytes, index_path: Path, index: dict[str, Any]) -> None:
    """Write tensors and the JSON that names their hash so a crash leaves a loadable pair."""
    staged = _staging(blob_path)
    atomic_write_bytes(staged, blob)
    atomic_write_json(index_path, index)  # the commit point
    os.replace(staged, blob_path)
    _fsync_dir(blob_path.parent)


def _read_verified(path: Path, record: Any, what: str) -> bytes:
    """The bytes of `path` (or of its staging copy after an interrupted save) matching `record`.

    `record` is the {"file", "sha256", "bytes"} entry of a manifest or state.json. Raises
    CheckpointError naming the file and saying whether it is missing, truncated, not a
    safetensors file at all, or modified.
    """
    if not (isinstance(record, dict) and isinstance(record.get("sha256"), str)):
        raise CheckpointError(
            f"{what} does not record the SHA-256 of {path.name}; the run is damaged or was not "
            f"written by cnnkit; retrain it"
        )
    expected = record["sha256"]
    staged = _staging(path)
    if staged.is_file():  # a save stopped between its commit point and the final rename
        data = staged.read_bytes()
        if sha256_bytes(data) == expected:
            return data
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the run is incomplete; retrain it") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the file ({error.strerror})") from None
    if sha256_bytes(data) == expected:
        return data
    problem = _safetensors_problem(data, record.get("bytes"))
    if problem is None:
        problem = (
            f"was modified after cnnkit saved it (SHA-256 {sha256_bytes(data)[:12]}..., "
            f"the manifest records {expected[:12]}...)"
        )
    raise CheckpointError(
        f"{path} {problem}; refusing to load it; restore the original file or retrain"
    )


def _safetensors_problem(data: bytes, expected_size: Any) -> str | None:
    """Why `data` is not the expected safetensors file, or None when only its content differs."""
    if len(data) < 8:
        return f"is truncated or not a safetensors file ({len(data)} bytes)"
    (header_size,) = struct.unpack("<Q", data[:8])
    header = None
    if header_size <= min(_HEADER_LIMIT, len(data) - 8):
        try:
            header = json.loads(data[8 : 8 + header_size])
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
    if not isinstance(header, dict):
        return "is not a safetensors weights file (foreign or corrupt data)"
    ends = [
        entry["data_offsets"][1]
        for key, entry in header.items()
        if key != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    needed = 8 + header_size + max(ends, default=0)
    if len(data) < needed or (isinstance(expected_size, int) and len(data) < expected_size):
        full = expected_size if isinstance(expected_size, int) else needed
        return f"is truncated ({len(data):,} of {full:,} bytes; an interrupted copy?)"
    return None


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
) -> dict[str, Any]:
    """The manifest of a model of `spec` (a cnnkit.spec.Spec); `save_model` adds weights and time."""
    from cnnkit.plan import plan
    from cnnkit.spec import to_dict

    height, width, channels = spec.input_shape
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(
            f"mean {list(mean)} and std {list(std)} need one value per input channel ({channels})"
        )
    return {
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
    _commit_pair(run / WEIGHTS, blob, run / MANIFEST, document)
    return document


def read_manifest(run: str | os.PathLike) -> dict[str, Any]:
    """The checked manifest of a run; CheckpointError for a missing, damaged or foreign one."""
    run = _run_dir(run)
    path = run / MANIFEST
    if not run.exists():
        raise CheckpointError(
            f"{run} does not exist; give the folder of a run ('cnnkit train --out')"
        )
    if not path.is_file():
        raise CheckpointError(
            f"{run} is not a cnnkit run (no {MANIFEST}); train one with 'cnnkit train --out {run}'"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            f"the run is damaged; retrain it"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: cannot read the manifest ({error})") from None
    _check_manifest(manifest, path)
    return manifest


def _run_dir(path: str | os.PathLike) -> Path:
    """A run directory, also when given one of its files (runs/x/cnnkit.json)."""
    path = Path(path)
    if path.is_file() and path.name in (MANIFEST, WEIGHTS):
        return path.parent
    return path


def _check_manifest(manifest: Any, path: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(
            f"{path} is not a cnnkit run manifest (format {found!r}, expected {FORMAT!r})"
        )
    version = manifest.get("format_version")
    if type(version) is int and version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version}, newer than this cnnkit ({_version()}) reads "
            f"(up to {FORMAT_VERSION}); upgrade cnnkit to load it"
        )
    if type(version) is not int or version < 1:
        raise CheckpointError(
            f"{path} has format_version {version!r}, which no cnnkit writes; the manifest is damaged"
        )
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; the run is damaged; retrain it")
    names, shape = manifest["class_names"], manifest["input_shape"]
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: class_names must be a list of names, got {names!r}")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(n) is int for n in shape)):
        raise CheckpointError(f"{path}: input_shape must be [H, W, C], got {shape!r}")
    pre = manifest["preprocessing"]
    channels = shape[2]
    if not (
        isinstance(pre, dict)
        and all(isinstance(pre.get(k), list) and len(pre[k]) == channels for k in ("mean", "std"))
        and all(isinstance(s, (int, float)) and s > 0 for s in pre["std"])
    ):
        raise CheckpointError(
            f"{path}: preprocessing must give mean and std (positive) for {channels} channel(s), "
            f"got {pre!r}"
        )


def _version() -> str:
    from cnnkit import __version__

    return __version__


def load_model(run: str | os.PathLike, device: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's model from its manifest and load its verified weights; eval mode.

    >>> model, manifest = load_model("runs/mnist")
    """

    from cnnkit.errors import SpecError
    from cnnkit.network import build
    from cnnkit.spec import from_dict

    run = _run_dir(run)
    manifest = read_manifest(run)
    path = run / MANIFEST
    try:
        spec = from_dict(manifest["spec"])
        model = build(spec)
    except SpecError as error:
        raise CheckpointError(f"{path}: its spec cannot be built: {error}") from None
    classes = len(manifest["class_names"])
    outputs = math.prod(model.plan.output_shape)
    if list(spec.input_shape) != manifest["input_shape"] or outputs != classes:
        raise CheckpointError(
            f"{path}: the spec ({spec}) does not match input_shape {manifest['input_shape']} and "
            f"{classes} class names; the manifest was edited; restore it or retrain"
        )
    weights = run / str(manifest["weights"].get("file", WEIGHTS))
    if weights.parent != run or weights.name != WEIGHTS:
        raise CheckpointError(f"{path}: weights file must be {WEIGHTS}, got {weights.name!r}")
    blob = _read_verified(weights, manifest["weights"], str(path))
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
    _commit_pair(directory / STATE_TENSORS, blob, directory / STATE_JSON, document)


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
    blob = _read_verified(path.parent / STATE_TENSORS, document.get("state_tensors"), str(path))
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
