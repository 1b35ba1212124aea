"""Decoding one image safely and fitting images to a model's input shape (H, W, C).

Training data and a photo given to `predict` go through the same two steps, so they match:
`to_array` (any Pillow mode -> uint8 (h, w, C)) then `fit_array` (pad or resize to (H, W)).
Channel policy, the course's choice: grayscale from RGB is (R+G+B)/3 (not ITU-R 601 luma);
RGB from grayscale replicates the one channel. Transparent pixels are composited on white.
"""

from __future__ import annotations

import io
import os
import stat
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from cnnkit.errors import ConfigError, DataError, ImageError, ImageTooLarge

# Only these decoders ever run on user files: a smaller attack surface, and no Ghostscript for EPS.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# Data folders may also hold Netpbm files (PPM, PGM, PBM): the official GTSRB archives are PPM.
# Uploads to the server and photos given to `predict` keep the web formats above.
DATA_FORMATS = (*ALLOWED_FORMATS, "PPM")
DATA_EXTENSIONS = (*EXTENSIONS, ".ppm", ".pgm", ".pbm", ".pnm")
RESIZE_MODES = ("letterbox", "stretch", "crop")
# Decoded pixels an image may declare: 40 MP is a 7300x5500 photo; its RGBA decode is 160 MB.
DEFAULT_MAX_PIXELS = 40_000_000

# Above this many pixels, images are reduced in strips before fitting (see preprocess_image).
SHRINK_PIXELS = 4_000_000
# EXIF orientation -> the transpose that shows the photo upright (as ImageOps.exif_transpose).
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Magic numbers of formats people try, to name them in the refusal instead of "unrecognised".
_KNOWN_OTHERS = {
    b"%!PS": "PostScript/EPS",
    b"\xc5\xd0\xd3\xc6": "EPS",
    b"%PDF": "PDF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def open_image(
    path_or_fileobj: str | os.PathLike | BinaryIO,
    formats: tuple[str, ...] = ALLOWED_FORMATS,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
    decode: bool = True,
) -> Image.Image:
    """Open and fully decode one image of one of `formats`; raise ImageError naming the file.

    Args:
        max_pixels: declared width x height above this is refused (ImageTooLarge) from the
            header, before a pixel is decoded; None: only Pillow's own bomb limit applies.
        draft: (height, width) the image will be fitted to; a JPEG is then decoded at the
            smallest 1/2, 1/4 or 1/8 scale that is still at least that large.
        decode: False returns the image with only its header read (for its size and mode).

    A path is opened only when it is a regular file no larger than a raw image of `max_pixels`
    could be: a FIFO or /dev/zero behind an image name must not hang or fill memory.
    """
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        name = str(path_or_fileobj)
        stream: BinaryIO = _open_regular(name, max_pixels)
    else:
        name = str(getattr(path_or_fileobj, "name", "<image data>"))
        stream = path_or_fileobj
        if not stream.seekable():
            stream = io.BytesIO(stream.read())
    try:
        return _open_stream(stream, name, formats, max_pixels, draft, decode)
    finally:
        if stream is not path_or_fileobj:
            stream.close()


def _open_regular(path: str, max_pixels: int | None) -> BinaryIO:
    """The file at `path`, opened for reading only if it is a regular file of bounded size."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise ImageError(f"{path}: cannot read the file ({error.strerror})") from error
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ImageError(
            f"{path}: not a regular file (a FIFO, device or socket); images are read only from "
            f"regular files: replace it with the image itself or remove it"
        )
    # The largest honest file: 4 bytes a pixel (an uncompressed RGBA BMP) plus metadata.
    limit = 4 * max_pixels + (16 << 20) if max_pixels else None
    if limit and info.st_size > limit:
        os.close(fd)
        raise ImageTooLarge(
            f"{path}: {info.st_size:,} bytes is more than an image of the {max_pixels:,}-pixel "
            f"budget can hold ({limit:,}); shrink the image, or raise --max-pixels"
        )
    return os.fdopen(fd, "rb")


def _open_stream(
    stream: BinaryIO,
    name: str,
    formats: tuple[str, ...],
    max_pixels: int | None,
    draft: tuple[int, int] | None,
    decode: bool,
) -> Image.Image:
    head = stream.read(16)
    stream.seek(0)
    if not head:
        raise ImageError(f"{name}: empty file (0 bytes); replace it with a real image or remove it")
    try:
        image = Image.open(stream, formats=formats)  # reads the header only
        _check_pixels(image, name, max_pixels)
        if draft is not None and image.format == "JPEG":
            declared = image.size  # kept for notes that name the size the user gave
            image.draft(image.mode, (draft[1], draft[0]))  # DCT scaling: no full-size buffer
            image.info["declared_size"] = declared
        if decode:
            # Counted before the file closes: a note names the frame used of an animation.
            frames = getattr(image, "n_frames", 1)
            image.load()
            image.info["frames"] = frames
    except Image.DecompressionBombError as error:
        # Pillow refuses past twice its limit inside Image.open, before the size is ours to see;
        # an ImageTooLarge all the same (the server answers 413).
        raise ImageTooLarge(
            f"{name}: refused as a possible decompression bomb ({error}); "
            f"if the image is genuine, shrink it or raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except Image.UnidentifiedImageError:
        kind = next((k for magic, k in _KNOWN_OTHERS.items() if head.startswith(magic)), None)
        what = f"a {kind} file" if kind else "not a recognisable image"
        raise ImageError(
            f"{name}: {what}; only {', '.join(formats)} are read; convert it to PNG or remove it"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(
            f"{name}: truncated or corrupt image data ({error}); re-export it or remove it"
        ) from None
    return image


def _check_pixels(image: Image.Image, name: str, max_pixels: int | None) -> None:
    """Refuse a declared size over the budget, or over Pillow's limit, before decoding."""
    pixels = image.width * image.height
    if max_pixels and pixels > max_pixels:
        raise ImageTooLarge(
            f"{name}: {image.width}x{image.height} = {pixels:,} pixels is over the budget of "
            f"{max_pixels:,}; shrink the image, or raise --max-pixels"
        )
    limit = Image.MAX_IMAGE_PIXELS
    # Pillow raises above twice the limit and only warns between 1x and 2x; cnnkit refuses
    # both. Checked here rather than with warnings.catch_warnings, which is not thread-safe.
    if limit and pixels > limit:
        raise Image.DecompressionBombError(
            f"declared size {image.width}x{image.height} = {pixels:,} "
            f"pixels exceeds the limit of {limit:,}"
        )


def to_array(image: Image.Image, channels: int | None = None, background: int = 255) -> np.ndarray:
    """Any Pillow image -> uint8 (h, w, C) at its own size; C is `channels`, or 1/3 as stored.

    16-bit images are scaled to 8 bits, palette images expanded, alpha composited on
    `background` (255 white, as data folders are read; 0 black for white-on-black digits), and
    an EXIF orientation applied, as a phone photo is shown.
    """
    if image.getexif().get(0x0112, 1) != 1:  # 0x0112: EXIF Orientation; 1 means upright
        image = ImageOps.exif_transpose(image)
    pixels = _uint8_pixels(image, background)
    return convert_channels(pixels, channels or pixels.shape[-1])


def _uint8_pixels(image: Image.Image, background: int = 255) -> np.ndarray:
    """Any Pillow mode -> uint8 (h, w, 1 or 3), as stored (alpha on `background`); no EXIF
    orientation applied."""
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
    return pixels[..., None] if pixels.ndim == 2 else pixels


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
    """One photo (any mode) -> uint8 (H, W, C), exactly as training images are fitted.

    An image over SHRINK_PIXELS is first box-reduced, strip by strip, to at least twice the
    target size, so no full-size float, RGBA or RGB copy of it is ever made.
    """
    height, width, channels = check_shape(shape, resize)
    factor = min(image.width, image.height) // (2 * max(height, width))
    if image.width * image.height > SHRINK_PIXELS and factor >= 2:
        pixels = convert_channels(_reduced(image, factor, background), channels)
    else:
        pixels = to_array(image, channels, background)
    return fit_array(pixels, (height, width), resize)


def _reduced(image: Image.Image, factor: int, background: int = 255) -> np.ndarray:
    """uint8 (h / factor, w / factor, C): `to_array`'s pixels, box-averaged by `factor`.

    Converted a strip of rows at a time: a 40 MP RGBA image costs its decode plus ~8 MB,
    where converting it whole would copy it four times (RGBA, white, composite, RGB).
    """
    rows = factor * max(1, (1 << 20) // (image.width * factor))  # ~1 MP a strip, whole boxes
    strips = []
    for top in range(0, image.height, rows):
        box = (0, top, image.width, min(top + rows, image.height))
        strip = _uint8_pixels(image.crop(box), background)
        small = Image.fromarray(strip[..., 0] if strip.shape[2] == 1 else strip).reduce(factor)
        strips.append(np.asarray(small))
    reduced = Image.fromarray(np.concatenate(strips))
    orientation = image.getexif().get(0x0112, 1)  # applied to the small image: same result
    if orientation in _ORIENTATIONS:
        reduced = reduced.transpose(_ORIENTATIONS[orientation])
    pixels = np.asarray(reduced)
    return pixels[..., None] if pixels.ndim == 2 else pixels


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
