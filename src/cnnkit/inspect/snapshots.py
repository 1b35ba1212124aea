"""Live snapshots: what a model looks like at each evaluation, written into its run directory.

    hooks = Hooks(on_snapshot=snapshot_hook())         # cnnkit.train calls it after evaluating
    write_snapshot("runs/mnist", model, step, probe)   # or directly: probe is uint8 (H, W, C)

Each snapshot holds the first conv layer's filters, the feature maps of a fixed probe image (the
first validation image, stored once as live/probe.png) and its Grad-CAM, as small PNGs in one
JSON file `live/step-<step>.json`; `live/index.json` lists the snapshots written so far. Every
file is replaced atomically, so a reader (the explorer's live view) never sees half of one.
The numbers come from `views` (filters, feature maps), `gradcam` and `overlay`; this module only
picks and packs them. A snapshot of the default digits network takes ~20-40 ms on a CPU; the
hook skips one when the last took over `MAX_FRACTION` of the training time since it.
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from cnnkit import runs
from cnnkit.data.loader import normalisation, normalise
from cnnkit.inspect import draw
from cnnkit.inspect.gradcam import gradcam, spatial_layers
from cnnkit.inspect.overlay import heat_colours, overlay
from cnnkit.inspect.views import conv_names, feature_maps, filters

LIVE_DIR = "live"  # inside the run directory
INDEX = "index.json"
PROBE = "probe.png"
FORMAT = "cnnkit-live"
MAX_FRACTION = 0.05  # a snapshot may cost at most this share of the training time around it
MAP_CHANNELS = 8  # maps per layer in a snapshot: the strongest; more cost time and say little
FILTER_COLUMNS = 8  # filters per row of the filter grid


def live_dir(run: str | Path) -> Path:
    return Path(run) / LIVE_DIR


def snapshot_name(step: int) -> str:
    return f"step-{step:08d}.json"


def read_index(run: str | Path) -> dict[str, Any]:
    """The run's snapshot index; an empty one when the run has none yet."""
    path = live_dir(run) / INDEX
    if not path.is_file():
        return {"format": FORMAT, "version": 1, "probe": None, "snapshots": []}
    return json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- packing


def png_base64(rgb: np.ndarray) -> str:
    """uint8 (H, W, 3) or (H, W) -> base64 PNG (level 1: these are rewritten often)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def tile_grid(tiles: np.ndarray, columns: int) -> np.ndarray:
    """uint8 (N, h, w, 3) -> one (rows*(h+1)-1, cols*(w+1)-1, 3) image, tiles 1 px apart (white)."""
    count, height, width, _ = tiles.shape
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    grid = np.full((rows * (height + 1) - 1, columns * (width + 1) - 1, 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        row, col = divmod(index, columns)
        grid[row * (height + 1) : row * (height + 1) + height, col * (width + 1) :][:, :width] = (
            tile
        )
    return grid


def filter_view(model: nn.Module) -> dict[str, Any]:
    """The first conv's filters on one diverging scale (0 white), so that filters compare."""
    found = filters(model)
    weights = found.weights  # (K, C, Fh, Fw)
    limit = float(np.abs(weights).max()) or 1.0
    if weights.shape[1] == 3:  # colour filters as colours: 0 is mid-grey, +-limit saturates
        tiles = np.clip(127.5 + 127.5 * weights.transpose(0, 2, 3, 1) / limit, 0, 255)
        tiles = tiles.astype(np.uint8)
    else:  # one input channel (or many): the mean over the input channels, signed
        tiles = draw.diverging(weights.mean(axis=1), limit)  # (K, Fh, Fw, 3)
    return {
        "layer": found.layer,
        "shape": list(weights.shape),
        "limit": limit,
        "columns": min(FILTER_COLUMNS, len(weights)),
        "png": png_base64(tile_grid(tiles, FILTER_COLUMNS)),
    }


def map_views(model: nn.Module, x: torch.Tensor) -> list[dict[str, Any]]:
    """Each feature layer's strongest MAP_CHANNELS maps of the probe, each over its own range."""
    views = []
    for layer in feature_maps(model, x, max_channels=MAP_CHANNELS):
        shown = layer.activations[layer.shown]  # (C', h, w)
        tiles = np.stack([draw.sequential(a, float(a.min()), float(a.max())) for a in shown])
        views.append(
            {
                "name": layer.name,
                "label": layer.label,
                "shown": layer.shown.tolist(),
                "channels": len(layer.activations),
                "png": png_base64(tile_grid(tiles, len(tiles))),
            }
        )
    return views


def gradcam_view(model: nn.Module, x: torch.Tensor, probe: np.ndarray) -> dict[str, Any]:
    """Grad-CAM of the predicted class on the probe, as the explorer draws it."""
    result = gradcam(model, x)
    return {
        "layer": result.layer,
        "predicted": result.predicted,
        "probability": float(result.probabilities[result.predicted]),
        "heat_png": png_base64(heat_colours(result.cam)),
        "overlay_png": png_base64(overlay(probe, result.cam)),
    }


# ----------------------------------------------------------------------------- writing


def write_snapshot(
    run_dir: str | Path,
    model: nn.Module,
    step: int,
    probe: np.ndarray,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the snapshot of `model` at `step` and add it to the index; returns its index entry.

    Args:
        model: a cnnkit network (training or not: it is observed in eval mode, never changed).
        probe: uint8 (H, W, C) at the model's input; stored as live/probe.png by the first call.
        record: the evaluation's metrics record, whose figures the index entry repeats.
    """
    started = time.perf_counter()
    folder = live_dir(run_dir)
    folder.mkdir(exist_ok=True)
    preprocessing = runs.read_manifest(run_dir)["preprocessing"]
    device = next(model.parameters()).device
    scale, bias = normalisation(preprocessing["mean"], preprocessing["std"], device)
    u8 = torch.from_numpy(np.array(probe[None])).to(device)  # (1, H, W, C), a writable copy
    x = normalise(u8, scale, bias).permute(0, 3, 1, 2).contiguous()  # (1, C, H, W)
    record = record or {}
    figures = {key: record.get(key) for key in ("epoch", "val_acc", "val_loss", "train_loss", "lr")}
    document = {
        "step": step,
        **figures,
        # A network without a conv has no filters; one without spatial layers no Grad-CAM.
        "filters": filter_view(model) if conv_names(model) else None,
        "maps": map_views(model, x),
        "gradcam": gradcam_view(model, x, probe) if spatial_layers(model) else None,
    }
    runs.atomic_write_json(folder / snapshot_name(step), document)
    index = read_index(run_dir)
    if not (folder / PROBE).is_file():
        runs.atomic_write_bytes(folder / PROBE, base64.b64decode(png_base64(draw.to_rgb(probe))))
        index["probe"] = {"file": PROBE, "shape": list(probe.shape)}
    entry = {
        "step": step,
        **figures,
        "file": snapshot_name(step),
        "seconds": round(time.perf_counter() - started, 4),
    }
    index["snapshots"] = [s for s in index["snapshots"] if s["step"] < step] + [entry]
    runs.atomic_write_json(folder / INDEX, index)
    return entry


def forget_other_runs(run_dir: str | Path) -> None:
    """Drop index entries whose step the run's metrics log lacks: an earlier run replaced with
    --overwrite, or steps a resumed run repeats. Their files go too."""
    index = read_index(run_dir)
    if not index["snapshots"]:
        return
    steps = {record.get("step") for record in runs.read_metrics(run_dir)}
    kept = [s for s in index["snapshots"] if s["step"] in steps]
    for gone in index["snapshots"]:
        if gone not in kept:
            (live_dir(run_dir) / gone["file"]).unlink(missing_ok=True)
    if len(kept) < len(index["snapshots"]):
        (live_dir(run_dir) / PROBE).unlink(missing_ok=True)
        runs.atomic_write_json(live_dir(run_dir) / INDEX, {**index, "snapshots": kept})


# ----------------------------------------------------------------------------- the hook


@dataclass
class SnapshotHook:
    """`Hooks.on_snapshot` for cnnkit.train: a snapshot per evaluation, throttled to a budget.

    A snapshot is skipped when the last one took more than `max_fraction` of the time since it
    ended, so snapshots cost at most about that share of training whatever the evaluation rate.
    """

    max_fraction: float = MAX_FRACTION
    written: list[dict[str, Any]] = field(default_factory=list)  # index entries of this process
    skipped: int = 0
    seconds: float = 0.0  # total time spent in snapshots
    _last_end: float | None = None
    _last_cost: float = 0.0

    def __call__(self, evaluation: Any) -> None:
        """`evaluation`: cnnkit.train.Evaluation (run, model, record, probe)."""
        now = time.perf_counter()
        if self._last_end is None:
            forget_other_runs(evaluation.run)
        elif self._last_cost > self.max_fraction * (now - self._last_end):
            self.skipped += 1
            return
        step = int(evaluation.record["step"])
        self.written.append(
            write_snapshot(
                evaluation.run, evaluation.model, step, evaluation.probe, evaluation.record
            )
        )
        self._last_end = time.perf_counter()
        self._last_cost = self._last_end - now
        self.seconds += self._last_cost


def snapshot_hook(max_fraction: float = MAX_FRACTION) -> SnapshotHook:
    """A fresh hook for one training run: `hooks.on_snapshot = snapshot_hook()`."""
    return SnapshotHook(max_fraction=max_fraction)
