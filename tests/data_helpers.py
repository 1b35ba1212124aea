"""Helpers for the data tests: an isolated environment, and small image folders made on the fly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MNIST_FILES, need_mnist  # noqa: F401 - re-exported to the data tests


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Every data test gets its own cache and no inherited data dir, mirror or network hints."""
    monkeypatch.setenv("CNNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CNNKIT_DATA", raising=False)
    monkeypatch.delenv("CNNKIT_MIRROR", raising=False)


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_like(value: int, size: int = 12, channels: int = 1) -> np.ndarray:
    """A small image whose pixels encode `value`, so tests can check which image went where."""
    rng = np.random.default_rng(value)
    image = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    image[0, 0] = value
    return image[..., 0] if channels == 1 else image


def make_folder(root: Path, classes: dict[str, int], *, size: int = 12, channels: int = 1) -> Path:
    """root/<class>/<i>.png with `classes[name]` images each; returns root."""
    for label, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            array = digit_like(label * 100 + i, size, channels)
            (root / name / f"{i:03d}.png").write_bytes(png_bytes(array))
    return root


def bomb_png() -> bytes:
    """A tiny PNG whose header declares 30000x30000 pixels (900 M, far above Pillow's limit)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        buffer, format="JPEG"
    )
    return buffer.getvalue()[:600]
