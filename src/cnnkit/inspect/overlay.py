"""A heat map (Grad-CAM, saliency) coloured, and laid over its image: one look everywhere.

The CLI's figures, the HTML report and the explorer page draw their Grad-CAM with these, so a
map means the same colours in all three.
"""

from __future__ import annotations

import numpy as np

from cnnkit.inspect import draw

ALPHA = 0.55  # the heat's share of the overlay; the image underneath stays readable


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """(H, W) values >= 0 -> uint8 RGB (H, W, 3): black at 0, the brightest colour at the max."""
    return draw.sequential(heat, 0.0, float(heat.max()) or 1.0)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """uint8 image (H, W), (H, W, 1) or (H, W, 3) with `heat` (H, W) over it -> uint8 RGB.

    The image goes grey first, so every hue in the result is the heat map's and none the
    picture's own.
    """
    grey = draw.to_rgb(image).astype(np.float64).mean(axis=2, keepdims=True)  # (H, W, 1)
    colour = heat_colours(heat).astype(np.float64)  # (H, W, 3)
    return np.clip((1 - alpha) * grey + alpha * colour, 0, 255).astype(np.uint8)
