"""The runs under a folder, one summary row each, for `cnnkit runs`: computed here, drawn apart.

    rows = list_runs("runs")          # [RunRow(name="mnist", model="digits", ...), ...]
    print(render_use.render_runs(rows))

Each row comes from the run's manifest alone (`cnnkit.json`): its training config, its summary
metrics and, when it was built on an earlier run, where it came from (the manifest's "from").
Pure Python: no torch, no NumPy, so listing a hundred runs is instant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import CheckpointError, DataError
from cnnkit.runs import MANIFEST, read_manifest

MODEL_WIDTH = 40  # longer model notations are cut to this many characters in the table


@dataclass(frozen=True)
class RunRow:
    """One run, as the `cnnkit runs` table shows it."""

    name: str  # the run's folder, relative to the listed folder
    model: str  # the preset or spec it was trained as ("digits", "28x28x1 > conv ...")
    data: str  # the data source it was trained on
    best_acc: float | None  # best validation accuracy (None: trained without validation)
    train_s: float | None  # seconds of training
    images_per_s: float | None  # training throughput
    origin: str | None  # the run it was built on ("runs/x"); None when trained from scratch
    problem: str | None = None  # why the manifest could not be read; the other fields are empty


def list_runs(directory: str | os.PathLike = "runs") -> list[RunRow]:
    """Every run under `directory` (at any depth; `directory` itself if it is a run), by name."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(
            f"{root}: no such folder; give the folder that holds your runs "
            f"('cnnkit train --out runs/NAME' puts them in runs/)"
        )
    manifests = sorted(root.rglob(MANIFEST))
    return [run_row(path.parent, path.parent.relative_to(root).as_posix()) for path in manifests]


def run_row(run: str | os.PathLike, name: str) -> RunRow:
    """The row of one run directory; an unreadable manifest gives a row that says why."""
    try:
        manifest = read_manifest(run)
    except CheckpointError as error:
        return RunRow(name, "", "", None, None, None, None, problem=str(error))
    config = manifest.get("train_config") or {}
    metrics = manifest.get("metrics") or {}
    model = str(config.get("model") or manifest.get("notation") or "?")
    if len(model) > MODEL_WIDTH:
        model = model[: MODEL_WIDTH - 3] + "..."
    best = metrics.get("best_val_acc")
    return RunRow(
        name=name or ".",
        model=model,
        data=str(config.get("data") or "?"),
        best_acc=_number(best if best is not None else metrics.get("final_val_acc")),
        train_s=_number(metrics.get("train_s")),
        images_per_s=_number(metrics.get("images_per_s")),
        origin=origin(manifest),
    )


def origin(manifest: dict[str, Any]) -> str | None:
    """Where a run came from: the manifest's "from", a run path or {"run": path, ...}."""
    value = manifest.get("from")
    if isinstance(value, dict):
        value = next((value[k] for k in ("run", "path", "dir") if value.get(k)), None)
    return str(value) if value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
