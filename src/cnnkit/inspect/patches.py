"""Top patches (Zeiler & Fergus 2014): the data-set crops that excite a channel most.

For each conv layer and each of its first few channels, every scanned image contributes its
strongest position; the k best images are kept, and each is cropped to the input window that
the winning unit sees (`receptive.input_box`). Windows grow with depth, so the crops do too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit.errors import ConfigError
from cnnkit.inspect.receptive import input_box, jump_offset, plan_steps
from cnnkit.inspect.views import capture, conv_names, evaluating, layer_label, model_plan
from cnnkit.plan import Plan

Preprocess = Callable[[np.ndarray], torch.Tensor]  # uint8 (B, H, W, C) -> float (B, C, H, W)


@dataclass
class LayerPatches:
    name: str
    label: str  # `conv2 10x10x16`
    receptive_field: tuple[int, int]
    jump: tuple[int, int]
    offset: tuple[int, int]  # unit (i, j)'s window starts at (i*jump + offset) in each axis
    channels: list[int]
    # Per channel, best first: {"image", "row", "col", "value", "box": [top, left, h, w]}
    hits: list[list[dict[str, Any]]] = field(default_factory=list)
    crops: np.ndarray | None = None  # (channels, k, RFh, RFw, C) uint8, zeros outside the image
    image_size: tuple[int, int] = (0, 0)  # (H, W) of the scanned images, to tell padding apart

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "receptive_field": list(self.receptive_field),
            "jump": list(self.jump),
            "offset": list(self.offset),
            "channels": self.channels,
            "hits": self.hits,
        }


def top_patches(
    model: nn.Module,
    images: np.ndarray,
    preprocess: Preprocess,
    layers: Sequence[str] | None = None,
    channels: int = 6,
    k: int = 9,
    batch_size: int = 1000,
) -> list[LayerPatches]:
    """Top-k crops for channels 0..channels-1 of each conv layer, over uint8 images (N, H, W, C).

    `images` must already have the model's input shape; `preprocess` normalises a batch.
    """
    plan = model_plan(model)
    names = list(layers) if layers is not None else conv_names(model)
    if not names:
        raise ConfigError(f"the model '{plan.spec}' has no conv layer to find top patches for")
    if images.ndim != 4 or tuple(images.shape[1:]) != plan.input_shape:
        raise ConfigError(
            f"top_patches needs images fitted to {plan.input_shape}, got {images.shape[1:]}"
        )
    count = {name: min(channels, plan.layer(name).output_shape[2]) for name in names}
    # (values, image, row, col), each (k', channels); None until a batch has been scanned
    best: dict[str, tuple[torch.Tensor, ...] | None] = {name: None for name in names}
    with evaluating(model), torch.no_grad(), capture(model, names) as outputs:
        for start in range(0, len(images), batch_size):
            model(preprocess(images[start : start + batch_size]))
            for name in names:
                acts = outputs[name][:, : count[name]].float()  # (B, c, h, w)
                width = acts.shape[3]
                values, where = acts.flatten(2).max(dim=2)  # (B, c): each image's best unit
                index = torch.arange(start, start + len(acts))[:, None].expand_as(values)
                candidate = (values, index, where // width, where % width)
                best[name] = _merge(best[name], candidate, k)
    results = []
    for name in names:
        found = best[name]
        if found is None:  # no batch was scanned
            raise ConfigError(f"top_patches needs at least one image, got {len(images)}")
        results.append(_layer_patches(plan, name, found, images))
    return results


def _layer_patches(
    plan: Plan, name: str, best: tuple[torch.Tensor, ...], images: np.ndarray
) -> LayerPatches:
    """One layer's entry from its best (values, image, row, col), each (k', channels)."""
    values, index, row, col = (t.numpy() for t in best)  # (k', c)
    layer = plan.layer(name)
    rows, cols = plan_steps(plan, name)
    (jump_h, offset_h, _), (jump_w, offset_w, _) = jump_offset(rows), jump_offset(cols)
    entry = LayerPatches(
        name,
        layer_label(layer),
        layer.receptive_field or (1, 1),
        (jump_h, jump_w),
        (offset_h, offset_w),
        list(range(values.shape[1])),
        image_size=(images.shape[1], images.shape[2]),
    )
    for channel in entry.channels:
        entry.hits.append(
            [
                {
                    "image": int(index[r, channel]),
                    "row": int(row[r, channel]),
                    "col": int(col[r, channel]),
                    "value": round(float(values[r, channel]), 6),
                    "box": list(input_box(plan, name, int(row[r, channel]), int(col[r, channel]))),
                }
                for r in range(values.shape[0])
            ]
        )
    entry.crops = crop_boxes(images, entry.hits)
    return entry


def _merge(
    old: tuple[torch.Tensor, ...] | None, new: tuple[torch.Tensor, ...], k: int
) -> tuple[torch.Tensor, ...]:
    """Keep the k largest values per channel of old and new (each (n, c) tensors)."""
    if old is not None:
        new = tuple(torch.cat([a, b]) for a, b in zip(old, new, strict=True))
    values = new[0]
    keep = min(k, len(values))
    top = values.topk(keep, dim=0).indices  # (k, c)
    return tuple(torch.gather(t, 0, top) for t in new)


def crop_boxes(images: np.ndarray, hits: list[list[dict[str, Any]]]) -> np.ndarray:
    """(channels, k, h, w, C) crops of each hit's box; pixels outside the image are 0."""
    boxes = [hit["box"] for channel in hits for hit in channel]
    _, _, height, width = boxes[0]
    margin = max(height, width)  # a window never starts further than this outside the image
    padded = np.pad(images, ((0, 0), (margin, margin), (margin, margin), (0, 0)))
    crops = np.stack(
        [
            padded[
                hit["image"],
                top + margin : top + margin + height,
                left + margin : left + margin + width,
            ]
            for channel in hits
            for hit in channel
            for top, left, _, _ in [hit["box"]]
        ]
    )
    return crops.reshape(len(hits), len(hits[0]), height, width, images.shape[3])
