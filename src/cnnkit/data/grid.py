"""A labelled grid of sample images, so a person can look at what the model will see."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cnnkit.data.dataset import Split


def sample_grid(
    split: Split, class_names: list[str], *, count: int = 64, seed: int = 0, cell: int = 64
) -> Image.Image:
    """`count` random images of `split`, each scaled up to `cell` px (nearest) with its class below."""
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(split), size=min(count, len(split)), replace=False))
    columns = int(np.ceil(np.sqrt(len(picks))))
    rows = int(np.ceil(len(picks) / columns))
    font = ImageFont.load_default(size=max(10, cell // 5))
    label_height = max(12, cell // 4)
    grid = Image.new(
        "RGB", (columns * (cell + 4) + 4, rows * (cell + label_height + 4) + 4), "white"
    )
    draw = ImageDraw.Draw(grid)
    for n, index in enumerate(picks):
        pixels = split.images[index]  # (H, W, C) uint8
        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).convert("RGB")
        scale = cell / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.NEAREST,  # keeps pixels visible as pixels: this is for inspection
        )
        x = 4 + (n % columns) * (cell + 4)
        y = 4 + (n // columns) * (cell + label_height + 4)
        grid.paste(image, (x, y))
        label = class_names[int(split.labels[index])]
        draw.text((x + 1, y + cell + 1), label[:12], fill="black", font=font)
    return grid
