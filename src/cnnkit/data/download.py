"""Finding, verifying and downloading a registry data set's files.

Search order for each file: --data-dir (and --data-dir/<name>/), $CNNKIT_DATA/<name>/, then
~/.cache/cnnkit/<name>/ ($CNNKIT_CACHE replaces ~/.cache/cnnkit). A file under its standard name,
gzipped or not, is used with no network at all. Otherwise it is downloaded into a temporary file
beside its final place, checked, then renamed into place, so a failure leaves nothing behind.
$CNNKIT_MIRROR=URL is tried before the canonical URLs (URL/<name>/<file>), for private mirrors.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import DataError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of a registry data set."""

    name: str  # standard name of the decompressed file, e.g. "train-images-idx3-ubyte"
    urls: tuple[str, ...]  # canonical downloads, tried in order
    sha256: str | None = None  # of the decompressed content, so raw and gzipped copies both verify
    # The publisher's MD5 of the gzipped download: confirms a byte-identical .gz, nothing more.
    md5_gz: str | None = None


def cache_root() -> Path:
    """Where downloads and decoded folders are cached: $CNNKIT_CACHE or ~/.cache/cnnkit."""
    return Path(os.environ.get("CNNKIT_CACHE") or Path.home() / ".cache" / "cnnkit")


def search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for data set `name`, in order."""
    dirs = []
    if data_dir is not None:
        dirs += [Path(data_dir), Path(data_dir) / name]
    if os.environ.get("CNNKIT_DATA"):
        dirs.append(Path(os.environ["CNNKIT_DATA"]) / name)
    dirs.append(cache_root() / name)
    return dirs


def find_local(file: RemoteFile, dirs: list[Path]) -> Path | None:
    """The first copy of `file` under its standard name, raw or .gz, in `dirs`."""
    for directory in dirs:
        for candidate in (directory / file.name, directory / f"{file.name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_verified(path: Path, file: RemoteFile) -> tuple[bytearray, dict[str, Any]]:
    """The decompressed content of `path` and a {path, sha256, verified, check | note} record.

    A checksum mismatch raises DataError (see `refusal`); a copy with no known checksum is
    returned unverified, for the caller to check its structure.
    """
    raw = bytearray(path.stat().st_size)  # read straight into a writable buffer: no copy
    with path.open("rb") as handle:
        handle.readinto(raw)
    content, record, problem = check_content(raw, file)
    if problem:
        raise refusal(path, problem)
    record["path"] = str(path)
    return content, record


def refusal(path: Path, problem: str) -> DataError:
    """The error for a bad copy at `path`; a file in cnnkit's own cache is deleted first
    (it is ours to fetch again), a file the user placed is left for the user to replace.
    """
    owned = cache_root().resolve() in path.resolve().parents
    if owned:
        path.unlink(missing_ok=True)
    action = (
        "deleted it; run again to download a fresh copy"
        if owned
        else "left it in place; delete or replace it with a good copy"
    )
    return DataError(f"{path}: {problem}; {action}")


def check_content(raw: bytearray, file: RemoteFile) -> tuple[bytearray, dict[str, Any], str | None]:
    """(decompressed content, {sha256, verified, check | note}, problem or None) for one file.

    The decompressed content is what is verified, so a genuine copy that a distributor
    recompressed (other gzip bytes, same content) is accepted. The publisher's MD5 of the gzip
    can only confirm a byte-identical download; a mismatch there proves nothing, so it is not
    a refusal: the copy is returned unverified, for the caller's structural check.
    """
    gzipped = raw[:2] == b"\x1f\x8b"
    try:
        content = _gunzip(raw) if gzipped else raw
    except (OSError, EOFError, struct.error) as error:
        return raw, {}, f"not a valid gzip file ({error}); it is truncated or corrupt"
    digest = hashlib.sha256(content).hexdigest()
    record: dict[str, Any] = {"sha256": digest, "verified": False}
    if file.sha256:
        if digest != file.sha256:
            problem = (
                f"checksum mismatch: expected {file.sha256}, got {digest} (SHA-256 of the "
                f"decompressed content); the file is corrupt or not the original"
            )
            return content, record, problem
        record |= {"verified": True, "check": "SHA-256 of the decompressed content"}
    elif file.md5_gz and gzipped and _md5(raw) == file.md5_gz:
        record |= {"verified": True, "check": "the publisher's MD5 of the gzipped file"}
    else:
        why = "no SHA-256 of the content is known"
        if file.md5_gz and gzipped:
            why += " and the gzip is not byte-identical to the publisher's (recompressed?)"
        record["note"] = f"content not verified: {why}; structure checked"
    return content, record, None


def _md5(raw: bytearray) -> str:
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


def _gunzip(raw: bytearray) -> bytearray:
    """Decompress into one preallocated buffer (the gzip trailer holds the size mod 2**32)."""
    size = struct.unpack("<I", raw[-4:])[0]
    buffer = bytearray(size)
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
        got = stream.readinto(buffer)
        if got == size and not stream.read(1):
            return buffer
    return bytearray(gzip.decompress(raw))  # a >4 GB or multi-member file: the slow way


def mirror_urls(dataset: str, file: RemoteFile) -> list[str]:
    urls = list(file.urls)
    mirror = os.environ.get("CNNKIT_MIRROR")
    if mirror:
        urls.insert(0, f"{mirror.rstrip('/')}/{dataset}/{urls[0].rsplit('/', 1)[-1]}")
    return urls


class Offline(DataError):
    """No URL of a file could be reached at all (as opposed to a refused or bad download)."""


def download(
    dataset: str, file: RemoteFile, dest_dir: Path, *, progress: bool = True, timeout: float = 30
) -> Path:
    """Fetch `file` into `dest_dir`, verified, trying each URL; returns the final path.

    Raises Offline when no URL could be reached, else DataError naming every URL tried and why.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    offline = True
    for url in mirror_urls(dataset, file):
        final = dest_dir / url.rsplit("/", 1)[-1]
        try:
            _fetch(url, final, file, progress=progress, timeout=timeout)
            return final
        except urllib.error.HTTPError as error:
            offline = False
            failures.append(f"{url}: HTTP {error.code} {error.reason}")
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            failures.append(f"{url}: {getattr(error, 'reason', error)}")
        except DataError as error:
            offline = False
            failures.append(str(error))
    if offline:
        raise Offline(failures[-1])
    raise DataError(f"{dataset}: could not download {file.name}: " + "; ".join(failures))


def fetch_missing(
    dataset: str, files: list[RemoteFile], dest_dir: Path, *, progress: bool = True
) -> dict[str, Path]:
    """Download every file in `files`; with no network, one error naming all of them and where."""
    paths = {}
    for file in files:
        try:
            paths[file.name] = download(dataset, file, dest_dir, progress=progress)
        except Offline as error:
            names = ", ".join(f.name for f in files if f.name not in paths)
            raise DataError(
                f"{dataset}: not on this machine and no network to download it ({error}); "
                f"place these files, gzipped or not, in {dest_dir}/ (or pass --data-dir DIR): "
                f"{names}; from {file.urls[0].rsplit('/', 1)[0]}/"
            ) from None
    return paths


def _fetch(url: str, final: Path, file: RemoteFile, *, progress: bool, timeout: float) -> None:
    """Stream `url` into a temporary file beside `final`, verify it, then rename it into place."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    temp = Path(temp_name)
    try:
        with (
            os.fdopen(handle, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as response,
        ):
            total = int(response.headers.get("Content-Length") or 0)
            bar = Progress(final.name, total) if progress else None
            received = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
                if bar:
                    bar.update(received)
            if bar:
                bar.close()
        if total and received != total:
            raise DataError(
                f"{url}: the connection dropped after {received:,} of {total:,} bytes; "
                f"deleted the partial file; run again to retry"
            )
        problem = check_content(bytearray(temp.read_bytes()), file)[2]
        if problem:
            raise DataError(f"{url}: {problem}; deleted the download")
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        temp.unlink(missing_ok=True)


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str, total: int, unit: str = "MB", scale: float = 1e6) -> None:
        self.label, self.total, self.unit, self.scale, self.last = label, total, unit, scale, 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done != self.total:
            return
        self.last = now
        if self.unit == "MB" and self.total < 1e6:
            self.unit, self.scale = "kB", 1e3  # small files: "0.0/0.0 MB" says nothing
        if self.total:
            filled = int(30 * done / self.total)
            bar = "#" * filled + "-" * (30 - filled)
            text = f"{self.label} [{bar}] {done / self.scale:,.1f}/{self.total / self.scale:,.1f}"
        else:
            text = f"{self.label} {done / self.scale:,.1f}"
        text += f" {self.unit}"
        sys.stderr.write(f"\r{text}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()
