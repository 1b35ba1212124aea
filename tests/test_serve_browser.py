"""The explorer page in headless Chromium, against a real uvicorn serving a freshly trained run.

Fails (never skips) when there is no Chromium: `make setup` provides one (the system's
chromium, else `python -m playwright install chromium`).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

from cnnkit.predict import load
from cnnkit.serve.app import create_app
from serve_helpers import REPO, live_server, mnist_test, png_bytes, trained_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "artifacts"
DOCS_IMG = REPO / "docs" / "img"


def confident_digit(run: Path) -> tuple[bytes, int]:
    """The first MNIST test digit the model gets right with p > 0.6, as PNG, and its label."""
    images, labels = mnist_test()
    classifier = load(run)
    results = classifier.predict(list(images[:100]), top_k=1)
    for image, label, result in zip(images, labels, results, strict=False):
        top = result["top"][0]
        if top["class"] == str(label) and top["prob"] > 0.6:
            return png_bytes(image), int(label)
    raise AssertionError(
        "the trained model got none of the first 100 test digits right with p > 0.6"
    )


class PageWatch:
    """Collects console errors, failed requests and error responses of one page."""

    def __init__(self, page) -> None:
        self.problems: list[str] = []
        page.on(
            "console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}")
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on(
            "response", lambda r: r.status >= 400 and self.problems.append(f"{r.status}: {r.url}")
        )


def test_explorer_page(browser, tmp_path):
    run = trained_run()
    digit, label = confident_digit(run)
    upload = tmp_path / "digit.png"
    upload.write_bytes(digit)
    ARTIFACTS.mkdir(exist_ok=True)
    DOCS_IMG.mkdir(parents=True, exist_ok=True)

    with live_server(create_app(run)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        watch = PageWatch(page)
        page.goto(url)
        # Selector waits, not wait_for_function: the page's CSP forbids the eval polling uses.
        page.wait_for_selector("#status:has-text('Give the model')")
        assert "conv" in page.locator("#model-notation").inner_text()
        assert page.locator("#draw-box").is_visible()  # a one-channel model gets the canvas

        # Upload a real test digit: the best bar and the status name its class.
        page.set_input_files("#file", str(upload))
        page.wait_for_selector(f"#bars li.best[data-label='{label}']")
        assert page.locator("#bars li.best .label").inner_text() == str(label)
        # conv2 shows its 8 most active maps of 16; "show all" brings map 3 whatever its rank.
        page.click(".show-all[data-layer='conv2']")
        page.wait_for_selector(".map[data-layer='conv2'][data-channel='3']")
        assert page.locator(".map[data-layer='conv2']").count() == 16
        assert page.locator(".layer-col").count() == 1 + len(load(run).model.plan.layers)
        page.wait_for_selector("#cam-heat[src^='data:image/png']", state="attached")

        # Open conv2's map 3 and click output pixel (y=4, x=5) of the 10x10 map.
        page.click(".map[data-layer='conv2'][data-channel='3']")
        page.wait_for_selector("#zoom.clickable")
        box = page.locator("#zoom").bounding_box()
        # locator.click waits for the smooth scroll to settle before clicking.
        with page.expect_response(lambda r: "/api/conv-step" in r.url) as answer:
            page.locator("#zoom").click(
                position={"x": box["width"] * 5.5 / 10, "y": box["height"] * 4.5 / 10}
            )
        step = answer.value.json()
        assert (step["layer"], step["channel"], step["y"], step["x"]) == ("conv2", 3, 4, 5)
        page.wait_for_selector("#conv-sum")
        for element, key in [
            ("conv-sum", "sum"),
            ("conv-bias", "bias"),
            ("conv-result", "result"),
            ("conv-activation", "activation"),
        ]:
            shown = page.locator(f"#{element}")
            assert shown.inner_text() == f"{step[key]:.4f}", element
            assert float(shown.get_attribute("data-value")) == step[key]
        assert abs(step["result"] - step["activation"]) < 1e-5
        # It opens on the input channel whose products add up to most, not on channel 0.
        sums = step["channel_sums"]
        best = max(range(len(sums)), key=lambda index: abs(sums[index]))
        assert page.locator("#conv-best").get_attribute("data-channel") == str(best)
        assert page.locator(".tab.active").get_attribute("data-channel") == str(best)
        cells = page.locator("table.products td")
        assert cells.count() == 25
        assert cells.nth(7).inner_text() == f"{step['products'][best][1][2]:.2f}"
        page.click(".tab[data-channel='4']")  # input channel 4 of the 6
        assert (
            page.locator("table.weights td").first.inner_text() == f"{step['weights'][4][0][0]:.2f}"
        )
        # The same request again, outside the page: the page showed the API's numbers.
        again = httpx.get(answer.value.url, timeout=10).json()
        assert again["sum"] == step["sum"] and again["activation"] == step["activation"]
        assert "14×14" in page.locator("#rf-note").inner_text()

        # Playground: (8 + 0 - 3)/2 is not whole -> flagged; 'same' gives out = n.
        warning = page.locator("#pg-warning")
        for name, value in [("n", "8"), ("f", "3"), ("p", "0"), ("s", "1")]:
            page.fill(f"#pg-{name}", value)
        assert warning.is_hidden()
        page.fill("#pg-s", "2")
        assert warning.is_visible()
        assert "not a whole number" in warning.inner_text() and "5/2" in warning.inner_text()
        # From the top: the score column is sticky, and a full-page shot draws it where it sits.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "explorer_laptop.png"), full_page=True)
        page.click("#pg-same")
        assert warning.is_hidden() and page.locator("#pg-out").inner_text() == "8"
        # A filter larger than the input: no output, said in words.
        for name, value in [("n", "5"), ("f", "7"), ("p", "0"), ("s", "1")]:
            page.fill(f"#pg-{name}", value)
        assert page.locator("#pg-out").inner_text() == "no output"
        assert "the 7×7 filter is larger than the 5×5 input (with padding 0)" in (
            warning.inner_text()
        )
        assert "none" not in page.locator("#pg-formula").inner_text()
        page.fill("#pg-n", "8")
        page.fill("#pg-f", "3")
        page.fill("#pg-s", "2")  # back to the flagged state for the phone screenshot's twin

        # Draw on the canvas: the bars update while drawing.
        page.locator("#draw").scroll_into_view_if_needed()
        canvas = page.locator("#draw").bounding_box()
        with page.expect_response(lambda r: "/api/predict" in r.url):
            page.mouse.move(canvas["x"] + 90, canvas["y"] + 30)
            page.mouse.down()
            page.mouse.move(canvas["x"] + 95, canvas["y"] + 150, steps=8)
            page.mouse.up()
        assert watch.problems == []

        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        phone_watch = PageWatch(phone)
        phone.goto(url)
        phone.wait_for_selector("#status:has-text('Give the model')")
        phone.set_input_files("#file", str(upload))
        phone.wait_for_selector(f"#bars li.best[data-label='{label}']")
        phone.click(".map[data-layer='conv1'][data-channel='0']")
        phone.wait_for_selector("#zoom.clickable")
        zoom = phone.locator("#zoom").bounding_box()
        with phone.expect_response(lambda r: "/api/conv-step" in r.url):
            phone.locator("#zoom").click(
                position={"x": zoom["width"] * 0.5, "y": zoom["height"] * 0.4}
            )
        phone.wait_for_selector("#conv-sum")
        # Nothing may overflow the phone's width except the scrolling layer strip.
        overflow = phone.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 390, overflow
        # From the top, where the scores card is in view and the best-class pill is not shown.
        phone.evaluate("window.scrollTo(0, 0)")
        phone.locator("#score-pill").wait_for(state="hidden")
        phone.screenshot(path=str(ARTIFACTS / "explorer_phone.png"), full_page=True)
        assert phone_watch.problems == []

    assert Image.open(io.BytesIO((ARTIFACTS / "explorer_laptop.png").read_bytes())).size[0] == 1280
    if os.environ.get("CNNKIT_UPDATE_SCREENSHOTS") == "1":
        # The README's pictures come from this test, but a plain test run leaves the tree clean.
        shutil.copyfile(ARTIFACTS / "explorer_laptop.png", DOCS_IMG / "explorer.png")
        shutil.copyfile(ARTIFACTS / "explorer_phone.png", DOCS_IMG / "explorer_phone.png")
