"""cnnkit's data layer: sources (registry, image folders, .npz, mnist-mini) in, device batches out.

Everything but the loader is NumPy and Pillow only; `DeviceLoader` (torch) is imported on first
use, so `cnnkit data info` does not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cnnkit.data.augment import Augment, parse_augment
from cnnkit.data.dataset import Dataset, Split, channel_stats, split_validation
from cnnkit.data.images import fit_images, open_image, preprocess_image
from cnnkit.data.sources import DEFAULT_SOURCE, open_source

if TYPE_CHECKING:
    from cnnkit.data.loader import DeviceLoader


def __getattr__(name: str) -> Any:
    if name == "DeviceLoader":
        from cnnkit.data.loader import DeviceLoader

        return DeviceLoader
    raise AttributeError(f"module 'cnnkit.data' has no attribute {name!r}")


__all__ = [
    "DEFAULT_SOURCE",
    "Augment",
    "Dataset",
    "DeviceLoader",
    "Split",
    "channel_stats",
    "fit_images",
    "open_image",
    "open_source",
    "parse_augment",
    "preprocess_image",
    "split_validation",
]
