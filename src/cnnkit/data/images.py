"""Decoding one image safely and fitting images to a model's input shape (H, W, C).

Training data and a photo given to `predict` go through the same two steps, so they match:
`to_array` (any Pillow mode -> uint8 (h, w, C)) then `fit_array` (pad or resize to (H, W)).
Channel policy, the course's choice: grayscale from RGB is (R+G+B)/3 (not ITU-R 601 luma);
RGB from grayscale replicates the one channel. Transparent pixels are composited on white.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from cnnkit.errors import ConfigError, DataError, ImageError

# Only these decoders ever run on user files: a smaller attack surface, and no Ghostscript for EPS.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# Data folders may also hold Netpbm files (PPM, PGM, PBM): the official GTSRB archives are PPM.
# Uploads to the server and photos given to `predict` keep the web formats above.
DATA_FORMATS = (*ALLOWED_FORMATS, "PPM")
DATA_EXTENSIONS = (*EXTENSIONS, ".ppm", ".pgm", ".pbm", ".pnm")
RESIZE_MODES = ("letterbox", "stretch", "crop")

# Magic numbers of formats people try, to name them in the refusal instead of "unrecognised".
_KNOWN_OTHERS = {
    b"%!PS": "PostScript/EPS",
    b"\xc5\xd0\xd3\xc6": "EPS",
    b"%PDF": "PDF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def open_image(
    path_or_fileobj: str | os.PathLike | BinaryIO, formats: tuple[str, ...] = ALLOWED_FORMATS
) -> Image.Image:
    """Open and fully decode one image of one of `formats`; raise ImageError naming the file.

    A declared size above PIL.Image.MAX_IMAGE_PIXELS is an error (Pillow only warns below twice
    the limit); the check reads the header only, so a bomb is refused without allocating it.
    """
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        name = str(path_or_fileobj)
        try:
            data = Path(path_or_fileobj).read_bytes()
        except OSError as error:
            raise ImageError(f"{name}: cannot read the file ({error.strerror})") from error
    else:
        name = str(getattr(path_or_fileobj, "name", "<image data>"))
        data = path_or_fileobj.read()
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes); replace it with a real image or remove it")
    try:
        image = Image.open(io.BytesIO(data), formats=formats)  # reads the header only
        limit = Image.MAX_IMAGE_PIXELS
        # Pillow raises above twice the limit and only warns between 1x and 2x; cnnkit refuses
        # both. Checked here rather than with warnings.catch_warnings, which is not thread-safe.
        if limit and image.width * image.height > limit:
            raise Image.DecompressionBombError(
                f"declared size {image.width}x{image.height} = {image.width * image.height:,} "
                f"pixels exceeds the limit of {limit:,}"
            )
        image.load()
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"{name}: refused as a possible decompression bomb ({error}); "
            f"if the image is genuine, shrink it or raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except Image.UnidentifiedImageError:
        kind = next((k for magic, k in _KNOWN_OTHERS.items() if data.startswith(magic)), None)
        what = f"a {kind} file" if kind else "not a recognisable image"
        raise ImageError(
            f"{name}: {what}; only {', '.join(formats)} are read; convert it to PNG or remove it"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(
            f"{name}: truncated or corrupt image data ({error}); re-export it or remove it"
        ) from None
    return image


def to_array(image: Image.Image, channels: int | None = None, background: int = 255) -> np.ndarray:
    """Any Pillow image -> uint8 (h, w, C) at its own size; C is `channels`, or 1/3 as stored.

    16-bit images are scaled to 8 bits, palette images expanded, alpha composited on
    `background` (255 white, as data folders are read; 0 black for white-on-black digits), and
    an EXIF orientation applied, as a phone photo is shown.
    """
    if image.getexif().get(0x0112, 1) != 1:  # 0x0112: EXIF Orientation; 1 means upright
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode.startswith("I"):  # "I;16", "I;16B", "I": 16-bit grayscale as Pillow opens it
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        pixels = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    elif mode == "F":
        pixels = np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8)
    elif mode in ("1", "L"):
        pixels = np.asarray(image.convert("L"))
    elif mode in ("LA", "La", "RGBA", "RGBa", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        under = Image.new("RGBA", rgba.size, (background, background, background, 255))
        pixels = np.asarray(Image.alpha_composite(under, rgba).convert("RGB"))
        if mode in ("LA", "La"):
            pixels = pixels[..., 0]  # gray stays gray: all three channels are equal
    else:
        pixels = np.asarray(image.convert("RGB") if mode != "RGB" else image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return convert_channels(pixels, channels or pixels.shape[-1])


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (..., C) -> (..., channels): gray->RGB replicates, RGB->gray is (R+G+B)/3."""
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    if have == 3 and channels == 1:
        total = images.astype(np.uint16).sum(axis=-1, keepdims=True)
        return ((total + 1) // 3).astype(np.uint8)  # rounds to nearest: thirds never tie
    raise DataError(
        f"cannot convert images with {have} channel(s) to {channels}; "
        f"cnnkit converts between 1 (grayscale) and 3 (RGB) channels only"
    )


def fit_array(pixels: np.ndarray, size: tuple[int, int], resize: str = "letterbox") -> np.ndarray:
    """One uint8 (h, w, C) image -> (H, W, C).

    A smaller image with the same aspect ratio is padded with zeros, centred (28x28 -> 32x32 adds
    2 px each side, as LeNet's input); otherwise it is resized with Pillow: `letterbox` keeps the
    aspect ratio and pads with zeros, `stretch` ignores it, `crop` fills and centre-crops.
    """
    height, width = size
    h, w, c = pixels.shape
    if (h, w) == (height, width):
        return pixels
    if height >= h and width >= w and h * width == w * height:
        top, left = (height - h) // 2, (width - w) // 2
        return np.pad(pixels, ((top, height - h - top), (left, width - w - left), (0, 0)))
    image = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
    if resize == "stretch":
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    elif resize == "crop":
        image = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    else:
        scale = min(width / w, height / h)
        inner = (max(1, round(w * scale)), max(1, round(h * scale)))
        canvas = Image.new(image.mode, (width, height), 0)
        canvas.paste(
            image.resize(inner, Image.Resampling.BILINEAR),
            ((width - inner[0]) // 2, (height - inner[1]) // 2),
        )
        image = canvas
    out = np.asarray(image)
    return out[..., None] if out.ndim == 2 else out


def check_shape(shape: tuple[int, int, int], resize: str) -> tuple[int, int, int]:
    """Validate a target (H, W, C) and resize mode; returns the shape as ints."""
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize={resize!r} is not known; use one of {', '.join(RESIZE_MODES)}")
    if len(shape) != 3 or min(shape[:2]) < 1 or shape[2] not in (1, 3):
        raise ConfigError(
            f"input shape {tuple(shape)!r} is not (height, width, channels) with positive sizes "
            f"and 1 or 3 channels; give e.g. (28, 28, 1) or (32, 32, 3)"
        )
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def preprocess_image(
    image: Image.Image,
    shape: tuple[int, int, int],
    resize: str = "letterbox",
    background: int = 255,
) -> np.ndarray:
    """One photo (any mode) -> uint8 (H, W, C), exactly as training images are fitted."""
    height, width, channels = check_shape(shape, resize)
    return fit_array(to_array(image, channels, background), (height, width), resize)


def fit_images(
    images: np.ndarray, shape: tuple[int, int, int], resize: str = "letterbox"
) -> np.ndarray:
    """uint8 (N, h, w, C) -> (N, H, W, C'): channel policy, then pad or resize as `fit_array`.

    Returns `images` itself when it already has the shape.
    """
    height, width, channels = check_shape(shape, resize)
    images = convert_channels(images, channels)
    n, h, w, _ = images.shape
    if (h, w) == (height, width):
        return images
    if height >= h and width >= w and h * width == w * height:
        top, left = (height - h) // 2, (width - w) // 2  # one vectorised pad for the whole split
        return np.pad(images, ((0, 0), (top, height - h - top), (left, width - w - left), (0, 0)))
    out = np.empty((n, height, width, channels), dtype=np.uint8)
    for i in range(n):
        out[i] = fit_array(images[i], (height, width), resize)
    return out
