"""open_image's refusals, to_array's modes, and fitting images to a model's input shape."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from cnnkit.data import fit_images, open_image, preprocess_image
from cnnkit.data.images import convert_channels, to_array
from cnnkit.errors import ConfigError, DataError, ImageError
from data_helpers import bomb_png, isolated_env, png_bytes, truncated_jpeg  # noqa: F401


# --- open_image: each bad file gives a message naming the file and the reason -----------------
@pytest.mark.parametrize(
    "name, data, match",
    [
        ("empty.png", b"", r"empty\.png: empty file \(0 bytes\); replace it"),
        (
            "notes.png",
            b"just some text, not pixels\n",
            r"notes\.png: not a recognisable image; only PNG, JPEG",
        ),
        ("cut.jpg", truncated_jpeg(), r"cut\.jpg: truncated or corrupt image data"),
        ("bomb.png", bomb_png(), r"bomb\.png: refused as a possible decompression bomb"),
        (
            "figure.eps",
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
            r"figure\.eps: a PostScript/EPS file; only PNG",
        ),
    ],
)
def test_open_image_refuses_bad_files(tmp_path, name, data, match):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError, match=match):
        open_image(path)


def test_bomb_is_refused_from_the_header_without_allocating(monkeypatch):
    # Decoding would need 900 MB; fail the test if anything tries to decode at all.
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: pytest.fail("the bomb was decoded")
    )
    with pytest.raises(ImageError, match=r"<image data>: .*decompression bomb .*900000000 pixels"):
        open_image(io.BytesIO(bomb_png()))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bomb_between_one_and_two_times_the_limit_is_an_error_too(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would only warn at 144
    with pytest.raises(ImageError, match=r"12x12 = 144 pixels exceeds the limit of 100"):
        open_image(io.BytesIO(png_bytes(np.zeros((12, 12), np.uint8))))


def test_missing_file():
    with pytest.raises(ImageError, match=r"nowhere\.png: cannot read the file"):
        open_image("nowhere.png")


# --- to_array: every mode becomes uint8 (h, w, C) ----------------------------------------------
def test_rgba_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red; transparent black becomes white
    out = to_array(Image.fromarray(rgba, "RGBA"))
    assert out.shape == (2, 2, 3)
    assert out[0, 0].tolist() == [255, 0, 0] and out[1, 1].tolist() == [255, 255, 255]


def test_sixteen_bit_grayscale_is_scaled_to_eight():
    wide = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    image = Image.open(io.BytesIO(png_bytes(wide)))
    assert image.mode.startswith("I")
    assert to_array(image)[..., 0].tolist() == [[0, 100, 255]]


def test_palette_expands_to_rgb():
    image = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    assert to_array(image).tolist() == [[[10, 20, 30], [200, 100, 50]]]


def test_exif_orientation_is_applied():
    image = Image.fromarray(np.array([[1, 2, 3]], np.uint8))  # 1 row, 3 columns
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    out = to_array(Image.open(buffer))
    assert out.shape == (3, 1, 1)


def test_gray_from_rgb_is_the_plain_mean():
    rgb = np.array([[[30, 60, 91]]], np.uint8)  # mean 60.33 -> 60; ITU-R 601 luma would give 55
    assert convert_channels(rgb, 1).item() == 60
    assert convert_channels(np.array([[[7]]], np.uint8), 3).tolist() == [[[7, 7, 7]]]


def test_four_channels_cannot_be_converted():
    with pytest.raises(DataError, match=r"cannot convert images with 4 channel\(s\) to 1"):
        convert_channels(np.zeros((1, 1, 4), np.uint8), 1)


# --- fit_images: a table of (input, target, mode) -> expected ----------------------------------
@pytest.mark.parametrize(
    "shape_in, target, resize",
    [
        ((28, 28, 1), (32, 32, 1), "letterbox"),  # LeNet: pad 2 px each side
        ((28, 28, 1), (28, 28, 3), "letterbox"),
        ((32, 32, 3), (28, 28, 1), "letterbox"),
        ((20, 40, 3), (32, 32, 3), "letterbox"),
        ((20, 40, 3), (32, 32, 3), "stretch"),
        ((20, 40, 3), (32, 32, 3), "crop"),
        ((64, 64, 1), (16, 16, 1), "letterbox"),
    ],
)
def test_fit_images_shapes(shape_in, target, resize):
    images = np.random.default_rng(0).integers(0, 256, (3, *shape_in), dtype=np.uint8)
    out = fit_images(images, target, resize)
    assert out.shape == (3, *target) and out.dtype == np.uint8


def test_pad_to_size_is_zeros_around_the_original():
    images = np.full((2, 28, 28, 1), 9, np.uint8)
    out = fit_images(images, (32, 32, 1))
    assert (out[:, 2:30, 2:30] == 9).all()
    assert out.sum() == 9 * 2 * 28 * 28  # the border is exactly zero


def test_letterbox_keeps_aspect_and_pads_with_zeros():
    images = np.full((1, 10, 20, 1), 200, np.uint8)
    out = fit_images(images, (20, 20, 1))[0, :, :, 0]
    assert (out[:5] == 0).all() and (out[15:] == 0).all() and (out[6:14] == 200).all()


def test_fit_images_returns_the_same_array_when_nothing_to_do():
    images = np.zeros((2, 28, 28, 1), np.uint8)
    assert fit_images(images, (28, 28, 1)) is images


def test_preprocess_matches_training_fit():
    """A photo at predict time goes through the same steps as a training image."""
    rgb = np.random.default_rng(1).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    photo = Image.fromarray(rgb)
    expected = fit_images(rgb[None], (32, 32, 1))[0]
    assert np.array_equal(preprocess_image(photo, (32, 32, 1)), expected)


@pytest.mark.parametrize(
    "shape, resize, match",
    [
        (
            (28, 28, 1),
            "squash",
            r"resize='squash' is not known; use one of letterbox, stretch, crop",
        ),
        ((28, 28, 2), "letterbox", r"input shape \(28, 28, 2\) is not \(height, width, channels\)"),
        ((0, 28, 1), "letterbox", r"input shape \(0, 28, 1\) is not"),
    ],
)
def test_fit_rejects_bad_targets(shape, resize, match):
    with pytest.raises(ConfigError, match=match):
        fit_images(np.zeros((1, 4, 4, 1), np.uint8), shape, resize)
