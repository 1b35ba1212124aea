"""A run watched as it trains: `cnnkit train --serve` on mnist-mini, the page in Chromium.

The page must show at least three different filter snapshots and curves that grow while the
run trains, then say that training has finished and become the normal explorer. Nothing is
fetched off the machine. Screenshot: artifacts/live_training.png.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from serve_helpers import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "artifacts"


@pytest.fixture
def training(tmp_path):
    """`cnnkit train --serve 0` in a subprocess: 2 epochs, 10 evaluations; yields its URL."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cnnkit", "train", "--data", "mnist-mini", "--epochs", "2"]
    command += ["--eval-every", "0.2", "--out", str(tmp_path / "run"), "--quiet", "--serve", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        url = None
        lines = []
        while url is None:
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"cnnkit train --serve ended before serving:\n{''.join(lines)}")
            lines.append(line)
            if line.startswith("watch it live at "):
                url = line.split()[-1]
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_watch_a_run_learn_then_explore_it(browser, training):
    url, process = training
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    foreign, problems = [], []

    def route(request_route):
        if request_route.request.url.startswith(url):
            request_route.continue_()
        else:
            foreign.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(url)
    page.wait_for_selector("#live-card:not([hidden])", timeout=60_000)
    filters, points = set(), []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = page.text_content("#live-status") or ""
        if "finished" in status:
            break
        step = page.get_attribute("#live-filters", "data-step")
        if step:
            filters.add(step)
        count = int(page.get_attribute("#live-curves", "data-points") or 0)
        if points and count < points[-1]:
            break  # the page reloaded itself: training has ended
        if not points or count != points[-1]:
            points.append(count)
        time.sleep(0.2)
    # The page reloads itself once training ends: the live card says so, the explorer works.
    page.wait_for_selector("#live-status:has-text('Training finished')", timeout=60_000)
    page.wait_for_selector("#status:has-text('Give the model')", timeout=60_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#live-card").screenshot(path=str(ARTIFACTS / "live_training.png"))
    assert len(filters) >= 3, filters
    assert len(points) >= 3 and points == sorted(points) and points[-1] > points[0], points
    assert page.get_attribute("#live-curves", "data-points") == "10"
    slider = page.get_attribute("#live-slider", "max")
    assert int(slider) >= 2  # 10 evaluations; a snapshot over its time budget is skipped
    assert page.locator("#live-curves svg polyline").count() == 5
    # The slider goes back to the first evaluation's snapshot (step 28: 0.2 of 140 steps).
    page.focus("#live-slider")
    page.keyboard.press("Home")
    page.wait_for_selector("#live-filters[data-step='28']", timeout=30_000)
    assert page.text_content("#live-step").startswith("step 28 (epoch 0.2)")
    assert not foreign and not problems, (foreign, problems)
    assert process.poll() is None  # still serving the trained model until Ctrl-C
    page.close()
