"""The inspect views drawn: one Pillow image per view, from the arrays the views return."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from cnnkit.errors import ConfigError
from cnnkit.inspect import draw
from cnnkit.inspect.gradcam import GradCam
from cnnkit.inspect.invariance import ShiftAccuracy, ShiftGrid
from cnnkit.inspect.overlay import overlay
from cnnkit.inspect.patches import LayerPatches
from cnnkit.inspect.views import FeatureMap, Filters


def _class(names: Sequence[str] | None, index: int) -> str:
    return names[index] if names and index < len(names) else str(index)


def filters_figure(result: Filters) -> Image.Image:
    """First-layer filters as a grid (colour for RGB input, blue-white-red for one channel),
    then every conv layer's per-filter weight norms as bars."""
    weights = result.weights  # (K, C, Fh, Fw)
    k, c, fh, fw = weights.shape
    limit = float(np.abs(weights).max()) or 1.0
    size = 72 if max(fh, fw) <= 7 else 96
    if c == 3:
        # One shared scale so filters compare: 0 is mid-grey, +-limit the channel's extremes.
        rgb = np.clip(127.5 + 127.5 * weights.transpose(0, 2, 3, 1) / limit, 0, 255).astype(
            np.uint8
        )
        tiles = [draw.tile(rgb[i], size) for i in range(k)]
        note = f"RGB filters in colour, one scale: grey = 0, saturated = +-{limit:.3g}"
    else:
        # Several input channels without colour: show channel 0, the others read from the JSON.
        tiles = [draw.tile(draw.diverging(weights[i, 0], limit), size) for i in range(k)]
        note = "blue < 0 < red, white = 0, one scale for all filters" + (
            f"; input channel 0 of {c}" if c > 1 else ""
        )
    columns = min(k, 8)
    body = draw.grid(tiles, columns, [f"{i}" for i in range(k)])
    if c != 3:
        bar = draw.colour_bar(draw.DIVERGING, -limit, limit, max(body.height - 16, 140))
        body = draw.stack([body, bar], vertical=False, gap=14)
    first = draw.titled(body, f"{result.layer}: {k} filters of {fh}x{fw}x{c}", note)
    charts = [
        draw.bar_chart(
            [str(i) for i in range(len(norms))],
            norms.tolist(),
            f"{name}: weight norm per filter",
            "L2 norm",
            (0.0, float(norms.max()) * 1.05 or 1.0),
            x_title="filter",
            height=220,
        )
        for name, norms in result.norms.items()
    ]
    return draw.framed(draw.stack([first, *charts], gap=16))


def _feature_tiles(fmap: FeatureMap, size: int) -> list[Image.Image]:
    signed = fmap.activations.min() < 0
    tiles = []
    for channel in fmap.shown:
        values = fmap.activations[channel]
        rgb = draw.diverging(values) if signed else draw.sequential(values, 0.0)
        tiles.append(draw.tile(rgb, size))
    return tiles


def features_figure(image: np.ndarray, maps: Sequence[FeatureMap]) -> Image.Image:
    """The input, then one labelled grid per layer (strongest channels first when cut)."""
    height = image.shape[0]
    parts = [
        draw.titled(
            draw.bordered(draw.tile(image, 112)),
            f"input {height}x{image.shape[1]}x{image.shape[2]}",
        )
    ]
    for fmap in maps:
        channels, h, w = fmap.activations.shape
        size = 56 if max(h, w) >= 8 else 40
        signed = fmap.activations.min() < 0
        colouring = "blue < 0 < red" if signed else "black 0 .. yellow max"
        if fmap.all_shown:
            note = f"{fmap.text}; all {channels} channels; {colouring}, each tile its own scale"
            captions = [str(i) for i in fmap.shown]
        else:
            note = (
                f"{fmap.text}; strongest {len(fmap.shown)} of {channels} channels by mean |activation|; "
                f"{colouring}, each tile its own scale"
            )
            captions = [f"#{i}" for i in fmap.shown]
        grid = draw.grid(_feature_tiles(fmap, size), min(len(fmap.shown), 16), captions)
        parts.append(draw.titled(grid, fmap.label, note))
    return draw.framed(draw.stack(parts, gap=18))


_overlay = overlay  # report.py calls it by this name


def gradcam_figure(
    image: np.ndarray, result: GradCam, class_names: Sequence[str] | None = None
) -> Image.Image:
    """Input, Grad-CAM over the input, the map with its colour bar, and the saliency map."""
    size = 196
    cam_high = float(result.cam.max()) or 1.0
    sal_high = float(result.saliency.max()) or 1.0
    target = _class(class_names, result.target)
    prob = result.probabilities[result.target]
    panels = [
        draw.titled(draw.bordered(draw.tile(image, size)), "input"),
        draw.titled(
            draw.bordered(draw.tile(overlay(image, result.cam), size)), "Grad-CAM on input"
        ),
        draw.titled(
            draw.stack(
                [
                    draw.bordered(draw.tile(draw.sequential(result.cam, 0.0, cam_high), size)),
                    draw.colour_bar(draw.SEQUENTIAL, 0.0, cam_high, size - 16),
                ],
                vertical=False,
            ),
            f"Grad-CAM at {result.layer} {result.cam_cells.shape[0]}x{result.cam_cells.shape[1]}",
        ),
        draw.titled(
            draw.stack(
                [
                    draw.bordered(draw.tile(draw.sequential(result.saliency, 0.0, sal_high), size)),
                    draw.colour_bar(draw.SEQUENTIAL, 0.0, sal_high, size - 16),
                ],
                vertical=False,
            ),
            "saliency |d score / d pixel|",
        ),
    ]
    predicted = _class(class_names, result.predicted)
    why = (
        "predicted class"
        if result.target == result.predicted
        else f"--class (predicted {predicted})"
    )
    title = f"class {target} ({why}), p = {prob:.3f}"
    return draw.framed(draw.titled(draw.stack(panels, vertical=False, gap=18), title))


PADDING_COLOUR = (200, 215, 235)  # pale blue: not a pixel value any grayscale image has


def _mark_padding(crop: np.ndarray, box: list[int], image_size: tuple[int, int]) -> np.ndarray:
    """RGB crop with the part of the window outside the image painted PADDING_COLOUR."""
    top, left, height, width = box
    rows = np.arange(top, top + height)
    cols = np.arange(left, left + width)
    outside = ~(
        ((rows >= 0) & (rows < image_size[0]))[:, None]
        & ((cols >= 0) & (cols < image_size[1]))[None, :]
    )
    rgb = draw.to_rgb(crop).copy()
    rgb[outside] = PADDING_COLOUR
    return rgb


def patches_figure(layers: Sequence[LayerPatches]) -> Image.Image:
    """Per conv layer, one row per channel of its top crops; crops grow with the receptive field."""
    parts = []
    for entry in layers:
        rf_h, rf_w = entry.receptive_field
        size = max(48, min(112, 4 * max(rf_h, rf_w)))
        if entry.crops is None:
            raise ConfigError(f"{entry.name}: no crops to draw; build the patches with top_patches")
        rows = []
        for channel, hits, crops in zip(entry.channels, entry.hits, entry.crops, strict=True):
            tiles = [
                draw.tile(_mark_padding(crop, hit["box"], entry.image_size), size)
                for crop, hit in zip(crops, hits, strict=True)
            ]
            row = draw.grid(tiles, len(tiles), [f"{hit['value']:.2g}" for hit in hits], gap=3)
            rows.append(
                draw.stack(
                    [draw.label(f"ch {channel}", 14, width=48), row], vertical=False, centre=True
                )
            )
        note = (
            f"receptive field {rf_h}x{rf_w} px, jump {entry.jump[0]}; top {len(entry.hits[0])} images "
            f"per channel (activation under each); pale blue = beyond the image edge (padding)"
        )
        parts.append(draw.titled(draw.stack(rows, gap=6), entry.label, note))
    return draw.framed(draw.stack(parts, gap=18))


def invariance_figure(result: ShiftGrid, class_names: Sequence[str] | None = None) -> Image.Image:
    k = result.k
    shifts = [str(s) for s in range(-k, k + 1)]
    body = draw.heat_map(
        result.probability,
        draw.SEQUENTIAL,
        0.0,
        1.0,
        cell=40 if k <= 5 else 26,
        row_labels=shifts,
        col_labels=shifts,
        row_title="shift down (px)",
        col_title="shift right (px)",
        numbers=result.probability if k <= 5 else None,
        marks=~result.agree,
    )
    target = _class(class_names, result.target)
    note = f"P(class {target}) at each shift; x = the prediction changes ({result.agree.mean():.0%} agree)"
    return draw.framed(draw.titled(body, "translation invariance, one image", note))


def shift_accuracy_figure(result: ShiftAccuracy) -> Image.Image:
    shifts = list(range(-result.k, result.k + 1))
    chart = draw.line_chart(
        {
            "shift right (x)": (shifts, result.along_x.tolist()),
            "shift down (y)": (shifts, result.along_y.tolist()),
        },
        "accuracy against shift",
        "shift (px)",
        "accuracy",
        size=(460, 280),
        y_range=(0.0, 1.0),
    )
    note = f"{result.images} images; unshifted accuracy {result.along_x[result.k]:.3f}"
    return draw.framed(draw.titled(chart, "translation invariance, data set", note))
