"""Shared test fixtures: where the real data lies, and golden-file comparison."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
SHARED_DATA = REPO.parent / "shared" / "data"


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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repo, where the real MNIST IDX files lie (CNNKIT_DATA)."""
    if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte").exists():
        pytest.fail(
            f"real MNIST is missing at {SHARED_DATA}/mnist; the tests expect ../shared/data beside the repo"
        )
    return SHARED_DATA


CHROMIUM = "/usr/bin/chromium"
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
ARTIFACTS = REPO / "artifacts"


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright; fails (never skips) when it is missing.

    Module scope: Playwright's sync API keeps an event loop running in this thread until it
    stops, and a later module's asyncio.run() would then refuse to start.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing; install it with: apt-get update && apt-get install -y chromium"
        )
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
