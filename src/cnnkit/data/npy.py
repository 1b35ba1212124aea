"""Memory-mappable .npy files: a streaming writer, read-back as memory maps, and a memory budget.

A split past the RAM budget stays on disk as a `.npy` that `np.load(mmap_mode="r")` maps, so a
data set is capped by the disk rather than by RAM. NumPy only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

_COPY_ROWS = 4096  # rows per read when a writer is shrunk: a few MB at 96x96x3


class NpyWriter:
    """Rows appended in order to a preallocated `.npy.part` beside `path`; `commit` renames it.

    The file is preallocated (and its header written) by `np.lib.format.open_memmap`, then filled
    by plain sequential writes rather than through the map: pages written through a map stay in
    the process's resident set until unmapped, plain writes go to the page cache only.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(handle)
        self.temp = Path(temp)
        array = np.lib.format.open_memmap(self.temp, mode="w+", dtype=self.dtype, shape=shape)
        self.offset = array.offset
        del array  # closes the map; the header and the file's full size are on disk
        self.file = open(self.temp, "r+b")  # noqa: SIM115 - closed by commit/discard
        self.file.seek(self.offset)
        self.count = 0

    def write(self, rows: np.ndarray) -> None:
        """Append `rows` (k, *shape[1:]) after the rows written so far."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        self.file.write(rows.tobytes())  # copies one chunk of rows, never the array
        self.count += len(rows)

    def commit(self) -> Path:
        """Close, shrink to the rows written when fewer than allocated, and rename into place."""
        self.file.close()
        if self.count < self.shape[0]:  # rare (unreadable files were skipped): copy the prefix
            shrunk = NpyWriter(self.path, (self.count, *self.shape[1:]), self.dtype)
            row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
            with open(self.temp, "rb") as source:
                source.seek(self.offset)
                for start in range(0, self.count, _COPY_ROWS):
                    rows = min(_COPY_ROWS, self.count - start)
                    shrunk.file.write(source.read(rows * row_bytes))
            shrunk.count = self.count
            self.temp.unlink()
            return shrunk.commit()
        os.replace(self.temp, self.path)
        return self.path

    def discard(self) -> None:
        self.file.close()
        self.temp.unlink(missing_ok=True)


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write a small array (labels) atomically: a temporary file beside `path`, then a rename."""
    writer = NpyWriter(path, array.shape, array.dtype)
    try:
        writer.write(array)
        writer.commit()
    except BaseException:
        writer.discard()
        raise


def load_npy(path: Path) -> np.ndarray:
    """A read-only memory map of `path`: nothing is read until indexed."""
    return np.load(path, mmap_mode="r", allow_pickle=False)
