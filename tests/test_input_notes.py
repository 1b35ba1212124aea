"""What predict says, once, about an input unlike the training data; alpha on its background."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit import runs
from cnnkit.cli import main
from cnnkit.network import build
from cnnkit.predict import load
from cnnkit.preprocess import alpha_background, input_notes
from cnnkit.spec import parse

SPEC = "28x28x1 > conv 2@3x3 > relu > flatten > fc 2"
MNIST_MEAN, MNIST_STD = [0.1307], [0.3081]  # white digits on black


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    spec = parse(SPEC)
    path = tmp_path_factory.mktemp("notes") / "run"
    manifest = runs.make_manifest(spec, ["a", "b"], MNIST_MEAN, MNIST_STD)
    runs.save_model(runs.prepare_run_dir(path), build(spec, seed=0), manifest)
    return path


def colour(width: int = 64, height: int = 48) -> Image.Image:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[..., 0] = 200  # red: the channels differ
    return Image.fromarray(pixels)


def gif(frames: int) -> Image.Image:
    pictures = [Image.fromarray(np.full((28, 28), 10 * i, np.uint8)) for i in range(frames)]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:])
    buffer.seek(0)
    return Image.open(buffer)


def half_transparent() -> Image.Image:
    pixels = np.full((28, 28, 4), 255, np.uint8)  # white and opaque
    pixels[14:, :, 3] = 0  # the bottom half transparent
    return Image.fromarray(pixels)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.fromarray(np.zeros((28, 28), np.uint8)), []),
        (Image.fromarray(np.full((28, 28, 3), 90, np.uint8)), []),  # grey stored as RGB
        (colour(), ["colour, made grey for this 28x28x1 model",
                    "resized (letterbox) from 64x48 to 28x28 (width x height)"]),
        (Image.fromarray(np.zeros((14, 14), np.uint8)),
         ["padded from 14x14 to 28x28 (width x height)"]),
        (Image.fromarray(np.zeros((24, 24), np.uint8)), []),  # a thin border, as 28 -> 32
        (gif(24), ["frame 0 of a 24-frame GIF image used"]),
        (half_transparent(),
         ["transparent pixels composited onto black, the training background"]),
    ],
)  # fmt: skip
def test_input_notes_say_what_fitting_changed(image, expected):
    assert input_notes(image, (28, 28, 1), "letterbox", background=0) == expected


def test_a_grey_image_for_a_colour_model_is_noted():
    grey = Image.fromarray(np.zeros((32, 32), np.uint8))
    assert input_notes(grey, (32, 32, 3), "letterbox", 255) == [
        "grayscale, copied into 3 channels for this 32x32x3 model"
    ]


@pytest.mark.parametrize(
    ("preprocessing", "background"),
    [
        ({"mean": MNIST_MEAN}, 0),
        ({"mean": [0.286]}, 0),  # Fashion-MNIST
        ({"mean": [0.485, 0.456, 0.406]}, 255),  # ImageNet photos
        ({"mean": [0.1307], "alpha_background": 255}, 255),  # recorded by an export: kept
    ],
)
def test_alpha_background_follows_the_training_data(preprocessing, background):
    assert alpha_background(preprocessing) == background


def test_transparent_pixels_become_the_digits_black_background(digits):
    classifier = load(digits)
    assert classifier.background == 0
    fitted = classifier.prepare(half_transparent())
    # The opaque top half stays white, the transparent bottom half is black, as MNIST's ground.
    assert (fitted[:14] == 255).all() and (fitted[14:] == 0).all()
    result = classifier.predict(half_transparent())[0]
    assert result["notes"] == ["transparent pixels composited onto black, the training background"]


def test_cli_predict_says_each_note_once(digits, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for number in range(3):
        colour().save(folder / f"{number}.png")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "digit.png")
    assert main(["predict", str(digits), str(folder)]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "note: 3 of 4 images: colour, made grey for this 28x28x1 model",
        "note: 3 of 4 images: resized (letterbox) from 64x48 to 28x28 (width x height)",
    ]


def test_cli_predict_json_carries_each_images_notes(digits, tmp_path, capsys):
    import json

    path = tmp_path / "anim.gif"
    path.write_bytes(gif(24).fp.getvalue())  # type: ignore[union-attr]
    assert main(["predict", str(digits), str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)[0]["notes"] == ["frame 0 of a 24-frame GIF image used"]
    assert err == f"note: {path}: frame 0 of a 24-frame GIF image used\n"
