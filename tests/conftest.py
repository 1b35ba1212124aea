"""Shared test fixtures: the real MNIST, golden-file comparison and a headless Chromium."""

from __future__ import annotations

import atexit
import contextlib
import functools
import gzip
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
ARTIFACTS = REPO / "artifacts"
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# The user's own data settings, read before any test's monkeypatch hides them: the data tests
# run with an empty cache and no CNNKIT_DATA, yet find the real MNIST where the user keeps it.
_USER_ENV = {
    name: os.environ.get(name) for name in ("CNNKIT_DATA", "CNNKIT_CACHE", "CNNKIT_MIRROR")
}


def assert_golden(name: str, text: str) -> None:
    """Compare `text` with tests/golden/NAME; CNNKIT_REGEN_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / name
    if os.environ.get("CNNKIT_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), (
        f"golden file {path} is missing; run with CNNKIT_REGEN_GOLDEN=1 to create it"
    )
    assert text == path.read_text(encoding="utf-8"), (
        f"output differs from {path} (CNNKIT_REGEN_GOLDEN=1 to accept)"
    )


def need_mnist() -> Path:
    """A folder holding mnist/ with the four raw IDX files of the real MNIST.

    Found the way a user's `cnnkit train --data mnist` finds it: $CNNKIT_DATA, then the cache,
    then a checked download. Without any of them the test fails (never skips) with one line.
    """
    found = _real_mnist()
    if isinstance(found, str):
        pytest.fail(
            f"REAL MNIST MISSING: set CNNKIT_DATA to a folder holding mnist/ with the four IDX "
            f"files (gzipped or not), or allow the download; cnnkit said: {found}",
            pytrace=False,
        )
    return found


@functools.cache
def _real_mnist() -> Path | str:
    """need_mnist's folder, or why cnnkit could not get one (cached: one try per session)."""
    from cnnkit.data.registry import load_registry
    from cnnkit.errors import DataError

    with _user_environment():
        try:
            dataset = load_registry("mnist", ("train", "test"), progress=False)
        except DataError as error:
            return str(error)
    paths = [Path(record["path"]) for record in dataset.files]
    folder = paths[0].parent
    if folder.name == "mnist" and {str(path) for path in paths} == {
        str(folder / name) for name in MNIST_FILES
    }:
        return folder.parent  # raw files in one <root>/mnist/: use them where they lie
    # Gzipped copies (a download lands gzipped in the cache): one raw copy for this session.
    root = Path(tempfile.mkdtemp(prefix="cnnkit-test-mnist-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    (root / "mnist").mkdir()
    for path in paths:
        content = path.read_bytes()
        raw = gzip.decompress(content) if path.suffix == ".gz" else content
        (root / "mnist" / path.name.removesuffix(".gz")).write_bytes(raw)
    return root


@contextlib.contextmanager
def _user_environment() -> Iterator[None]:
    """os.environ's CNNKIT_DATA, CNNKIT_CACHE and CNNKIT_MIRROR as the session started."""
    saved = {name: os.environ.get(name) for name in _USER_ENV}
    _set_environment(_USER_ENV)
    try:
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# Without the background-networking flags Chromium keeps dialling out, and this machine refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright; fails (never skips) when there is none.

    A system Chromium (`chromium` on PATH) is preferred, else Playwright's own download, which
    `make setup` fetches when there is no system one.
    Module scope: Playwright's sync API keeps an event loop running in this thread until it
    stops, and a later module's asyncio.run() would then refuse to start.
    """
    from playwright.sync_api import sync_playwright

    system = shutil.which("chromium") or shutil.which("chromium-browser")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        if system is None and not Path(playwright.chromium.executable_path).exists():
            pytest.fail(
                "no Chromium for the browser tests: run `make setup`, which runs "
                "`python -m playwright install chromium`, or install your system's chromium",
                pytrace=False,
            )
        chromium = playwright.chromium.launch(executable_path=system, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
