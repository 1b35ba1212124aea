"""Models of three sizes (and a deep 100-class one) for the explorer's browser tests.

Imported by test_explorer_layout (pytest puts tests/ on sys.path); it holds no tests itself.
Untrained, seeded weights: the page's layout does not depend on what a model learned.
"""

from __future__ import annotations

import atexit
import functools
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from cnnkit.data.registry import REGISTRY
from cnnkit.network import build
from cnnkit.presets import resolve
from cnnkit.runs import make_manifest, save_model
from serve_helpers import digit_png

WIDE = (
    "64x64x3 > conv 64@3x3 same > relu > conv 64@3x3 same > relu > maxpool 2"
    " > conv 128@3x3 same > relu > conv 128@3x3 same > relu > maxpool 2"
    " > conv 128@3x3 same > relu > maxpool 2 > flatten > fc 6"
)
WIDE_CLASSES = [
    "astronaut_helmet",
    "chelsea_football_club_scarf",
    "grand_piano",
    "red_admiral_butterfly",
    "espresso_machine",
    "snow_leopard",
]
SIGNS_MODEL = (
    "32x32x3 > conv 32@3x3 same > relu > conv 32@3x3 same > relu > maxpool 2"
    " > conv 64@3x3 same > relu > conv 64@3x3 same > relu > maxpool 2"
    " > flatten > fc 256 > relu > dropout 0.5 > fc 43"
)
# The German traffic-sign benchmark's 43 classes, as the course's project names them.
SIGNS = [
    *(f"Speed limit ({v}km/h)" for v in (20, 30, 50, 60, 70, 80)),
    "End of speed limit (80km/h)",
    "Speed limit (100km/h)",
    "Speed limit (120km/h)",
    "No passing",
    "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection",
    "Priority road",
    "Yield",
    "Stop",
    "No vehicles",
    "Vehicles over 3.5 metric tons prohibited",
    "No entry",
    "General caution",
    "Dangerous curve to the left",
    "Dangerous curve to the right",
    "Double curve",
    "Bumpy road",
    "Slippery road",
    "Road narrows on the right",
    "Road work",
    "Traffic signals",
    "Pedestrians",
    "Children crossing",
    "Bicycles crossing",
    "Beware of ice/snow",
    "Wild animals crossing",
    "End of all speed and passing limits",
    "Turn right ahead",
    "Turn left ahead",
    "Ahead only",
    "Go straight or right",
    "Go straight or left",
    "Keep right",
    "Keep left",
    "Roundabout mandatory",
    "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
]
# A few dozen layers and 100 classes: the most the issue asks the page to hold.
DEEP = " > ".join(
    [
        "32x32x3",
        *["conv 32@3x3 same > bn > relu"] * 4,
        "maxpool 2",
        *["conv 64@3x3 same > bn > relu"] * 4,
        "maxpool 2",
        *["conv 64@3x3 same > bn > relu"] * 2,
        "gap > fc 100",
    ]
)
# CIFAR-100's fine classes, as the registry names them.
HUNDRED = list(REGISTRY["cifar100"].class_names)
MODELS = {
    "lenet": ("lenet5", [str(i) for i in range(10)]),
    "wide": (WIDE, WIDE_CLASSES),
    "signs": (SIGNS_MODEL, SIGNS),
    "deep": (DEEP, HUNDRED),
}


@functools.cache
def untrained_run(name: str) -> Path:
    """A run directory holding the model `name` of MODELS with seeded, untrained weights."""
    notation, classes = MODELS[name]
    spec = resolve(notation)
    folder = Path(tempfile.mkdtemp(prefix=f"cnnkit-layout-{name}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    channels = spec.input_shape[2]
    manifest = make_manifest(spec, classes, [0.5] * channels, [0.25] * channels)
    save_model(folder / name, build(spec, seed=0).eval(), manifest)
    return folder / name


def colour_png(size: int) -> bytes:
    """A colourful test picture: a red disc on a blue-green gradient, `size`x`size` RGB."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    pixels = np.stack([40 + 60 * x, 90 + 120 * y, 200 - 100 * x], axis=-1)
    disc = (x - 0.55) ** 2 + (y - 0.45) ** 2 < 0.07
    pixels[disc] = (220, 40, 50)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def upload_for(name: str, folder: Path) -> Path:
    path = folder / f"{name}.png"
    path.write_bytes(digit_png(0)[0] if name == "lenet" else colour_png(96))
    return path
