"""IDX files (MNIST and its look-alikes): header check and a zero-copy view as uint8 arrays.

An IDX file is a 4-byte magic (0, 0, dtype code, number of dimensions), one big-endian uint32 per
dimension, then the values. Only unsigned bytes (code 0x08) occur in the data sets we read.
"""

from __future__ import annotations

import struct

import numpy as np

from cnnkit.errors import DataError

_UBYTE = 0x08


def parse_idx(data: bytes | bytearray | memoryview, name: str, ndim: int) -> np.ndarray:
    """The array stored in one IDX file's bytes; `name` is only used in error messages.

    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]), "labels", 1)
    array([7, 9], dtype=uint8)
    """
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{name}: {len(data)} bytes is too short for an IDX file with {ndim} dimension(s) "
            f"(the header alone is {header} bytes); the file is truncated"
        )
    zero, code, dims = struct.unpack(">HBB", bytes(data[:4]))
    if zero != 0 or code != _UBYTE or dims != ndim:
        raise DataError(
            f"{name}: wrong IDX magic number 0x{bytes(data[:4]).hex()}, expected "
            f"0x000008{ndim:02x} (unsigned bytes, {ndim} dimension(s)); "
            f"this is not the IDX file it is named after"
        )
    shape = struct.unpack(f">{ndim}I", bytes(data[4:header]))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise DataError(
            f"{name}: wrong size {len(data):,} bytes; its header declares shape {shape}, "
            f"which needs {expected:,} bytes; the file is truncated or corrupt"
        )
    # frombuffer shares the caller's buffer: no copy of a 47 MB image file.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
