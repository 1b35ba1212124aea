"""Crash-safe files: atomic writes, strict JSON, and tensors read back only after their hash checks.

Every file is written to a temp file in its own directory, fsynced and renamed over its name
(`atomic_write_bytes`). A tensors file and the JSON naming its SHA-256 are committed as a pair
(`commit_pair`); `read_verified` returns the bytes only when the hash matches, and otherwise says
whether the file is missing, truncated, foreign or modified. Nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

from cnnkit.budgets import MAX_PARAMS, read_regular
from cnnkit.errors import CheckpointError

_HEADER_LIMIT = 100 * 2**20  # safetensors' own cap on the JSON header
# Weights of MAX_PARAMS float32 parameters and two optimizer moments each, plus headers.
MAX_TENSOR_BYTES = 3 * 4 * MAX_PARAMS + _HEADER_LIMIT


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


def commit_pair(blob_path: Path, blob: bytes, index_path: Path, index: dict[str, Any]) -> None:
    """Write tensors and the JSON that names their hash so a crash leaves a loadable pair."""
    staged = _staging(blob_path)
    atomic_write_bytes(staged, blob)
    atomic_write_json(index_path, index)  # the commit point
    os.replace(staged, blob_path)
    _fsync_dir(blob_path.parent)


def read_verified(path: Path, record: Any, what: str) -> bytes:
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
    # Sized before reading: a FIFO or a link to /dev/zero is refused, not read forever.
    staged = _staging(path)
    if staged.is_file():  # a save stopped between its commit point and the final rename
        data = read_regular(staged, MAX_TENSOR_BYTES, "weights file", CheckpointError)
        if sha256_bytes(data) == expected:
            return data
    try:
        data = read_regular(path, MAX_TENSOR_BYTES, "weights file", CheckpointError)
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
