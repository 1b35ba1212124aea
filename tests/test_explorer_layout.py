"""The explorer's layout on three model sizes at a laptop and a phone window, in Chromium.

LeNet (10 digits), a wide colour model (64x64x3, 64-128 filters, 6 long class names), a
43-class model (32x32x3, the course's traffic-sign size) and a 34-layer, 100-class one; models
in explorer_models.py. Checked through bounding boxes: the scores stay in the window,
no two pieces of text overlap, nothing but the layer strip scrolls sideways, and the strip shows
where it is. Also: errors replace stale results, the conv step opens on the channel that
contributes most, the page's colours are matplotlib's, and nothing is fetched off the machine
(test_serve_browser covers the trained LeNet, drawing, and the playground).
Screenshots go to artifacts/explorer_*.png.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from cnnkit.serve.app import create_app
from explorer_models import MODELS, untrained_run, upload_for
from serve_helpers import REPO, live_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "artifacts"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


class Offline:
    """Aborts and records every request that does not go to the served page's own origin."""

    def __init__(self, page, origin: str) -> None:
        self.foreign: list[str] = []
        self.problems: list[str] = []

        def route(route):
            if route.request.url.startswith(origin):
                route.continue_()
            else:
                self.foreign.append(route.request.url)
                route.abort()

        page.route("**/*", route)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"),
        )


def open_page(browser, url: str, viewport: dict) -> tuple:
    page = browser.new_page(viewport=viewport)
    offline = Offline(page, url)
    page.goto(url)
    page.wait_for_selector("#status:has-text('Give the model')")
    return page, offline


def analyse(page, upload: Path) -> None:
    page.set_input_files("#file", str(upload))
    # Selector waits, not wait_for_function: the page's CSP forbids the eval that polling uses.
    page.wait_for_selector("#bars li.best", timeout=60_000)
    page.wait_for_selector("#overview .layer-col", timeout=60_000)
    page.wait_for_selector("#cam-heat[src^='data:']", state="attached", timeout=60_000)


# Every leaf element holding text, with its box; run in the page.
TEXT_BOXES = """(selector) => [...document.querySelectorAll(selector)]
  .filter((node) => node.offsetParent !== null && node.textContent.trim()
    && ![...node.children].some((child) => child.textContent.trim()))
  .map((node) => {
    const box = node.getBoundingClientRect();
    return { text: node.textContent.trim().slice(0, 40), left: box.left, right: box.right,
             top: box.top, bottom: box.bottom, cut: node.scrollWidth > node.clientWidth + 1
             && getComputedStyle(node).overflowX !== "visible" };
  })"""


def overlaps(boxes: list[dict]) -> list[tuple[str, str]]:
    """Pairs of text boxes that overlap by more than half a pixel each way."""
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            dx = min(a["right"], b["right"]) - max(a["left"], b["left"])
            dy = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
            if dx > 0.5 and dy > 0.5:
                found.append((a["text"], b["text"]))
    return found


def check_layout(page, viewport: dict, classes: list[str]) -> None:
    width = viewport["width"]
    # Nothing but the layer strip scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # The top scores: whole names, inside the window, readable without horizontal scrolling.
    page.locator("#predict-card").scroll_into_view_if_needed()
    bars = page.locator("#bars li")
    assert bars.count() == min(5, len(classes))
    for index in range(bars.count()):
        for part in ("label", "prob", "track"):
            box = bars.nth(index).locator(f".{part}").bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (part, box)
            assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], (part, box)
        label = bars.nth(index).get_attribute("data-label")
        assert bars.nth(index).locator(".label").inner_text() == label
        assert label in classes
    # No two pieces of text overlap, and none is cut.
    for selector in (
        "#predict-card *",
        "#overview-card *",
        "header.top *",
        ".input-card *",
        "[aria-labelledby=cam-title] *",
    ):
        boxes = page.evaluate(TEXT_BOXES, selector)
        assert overlaps(boxes) == [], selector
        assert [box["text"] for box in boxes if box["cut"]] == [], selector
    # The rest of the classes on demand.
    if len(classes) > 5:
        page.click("#all-scores summary")
        assert page.locator("#all-scores-list li").count() == len(classes)
        boxes = page.evaluate(TEXT_BOXES, "#all-scores-list *")
        assert overlaps(boxes) == []
        assert max(box["right"] for box in boxes) <= width
        page.click("#all-scores summary")
    # The strip says where it is.
    position = page.locator("#strip-position")
    assert position.is_visible()
    assert re.fullmatch(
        r"layers (input|\d+)–\d+ of \d+|all \d+ layers in view", position.inner_text()
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_layout_at_two_sizes(browser, tmp_path, name):
    run = untrained_run(name)
    upload = upload_for(name, tmp_path)
    classes = MODELS[name][1]
    with live_server(create_app(run)) as url:
        for size, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
            page, offline = open_page(browser, url, viewport)
            analyse(page, upload)
            check_layout(page, viewport, classes)
            page.evaluate("window.scrollTo(0, 0)")
            page.locator("#score-pill").wait_for(state="hidden")
            page.screenshot(path=str(ARTIFACTS / f"explorer_{name}_{size}.png"), full_page=True)
            page.locator("#predict-card").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / f"explorer_{name}_{size}_view.png"))
            assert offline.foreign == [] and offline.problems == []
            page.close()


def tiff_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="TIFF")
    return buffer.getvalue()


def assert_no_result(page) -> None:
    """Nothing of an earlier image is left: its picture, scores, maps, detail and Grad-CAM."""
    assert page.locator("#seen").get_attribute("data-empty") == "true"
    assert page.locator("#bars li.best").count() == 0
    assert page.locator("#all-scores").is_hidden()
    assert page.locator("#overview .layer-col").count() == 0
    assert page.locator("#strip-nav").is_hidden()
    assert page.locator("#detail").is_hidden()
    for image in ("cam-input", "cam-heat", "cam-saliency"):
        assert page.locator(f"#{image}").get_attribute("src") is None
    assert page.locator("#cam-class").is_disabled()
    assert page.locator("#score-pill").is_hidden()


def test_error_replaces_the_stale_result(browser, tmp_path):
    run = untrained_run("signs")
    good = upload_for("signs", tmp_path)
    tiff = tmp_path / "sign.tiff"
    tiff.write_bytes(tiff_bytes())
    with live_server(create_app(run)) as url:
        page, offline = open_page(browser, url, PHONE)
        # Empty: the page says what to do, and shows no result.
        assert "Give the model an image" in page.locator("#bars").inner_text()
        assert_no_result(page)
        # Loading: held back at the network, the page says it is working.
        held = []

        def hold(route) -> None:
            held.append(route)

        page.route("**/api/activations*", hold)
        page.set_input_files("#file", str(good))
        page.wait_for_selector("#predict-card[aria-busy='true']")
        assert "Running the network" in page.locator("#bars").inner_text()
        assert "Running the network" in page.locator("#status").inner_text()
        page.screenshot(path=str(ARTIFACTS / "explorer_loading_phone.png"))
        page.unroute("**/api/activations*", hold)
        held[0].continue_()
        page.wait_for_selector("#predict-card[aria-busy='false']")
        page.wait_for_selector("#cam-heat[src^='data:']", state="attached")
        page.click(".map[data-layer='conv1']")
        page.wait_for_selector("#detail:not([hidden])")
        # A refused upload: the error replaces the old image and its prediction.
        page.set_input_files("#file", str(tiff))
        page.wait_for_selector("#status.error")
        message = page.locator("#status").inner_text()
        assert "TIFF" in message or "PNG, JPEG" in message, message
        assert message in page.locator("#bars").inner_text()
        assert "No result" in page.locator("#overview").inner_text()
        assert_no_result(page)
        page.screenshot(path=str(ARTIFACTS / "explorer_error_phone.png"), full_page=True)
        # A good upload afterwards gives a whole result again.
        analyse(page, good)
        assert page.locator("#status.error").count() == 0
        assert page.locator("#seen").get_attribute("data-empty") == "false"
        assert offline.foreign == []
        assert [p for p in offline.problems if "415" not in p] == []
        page.close()


def test_wide_model_strip_subset_and_conv_step(browser, tmp_path):
    run = untrained_run("wide")
    upload = upload_for("wide", tmp_path)
    with live_server(create_app(run)) as url:
        page, offline = open_page(browser, url, LAPTOP)
        analyse(page, upload)
        # Most active first: 8 of conv2's 64 maps, ranked by mean |value|; "show all" shows 64.
        conv2 = page.locator(".map[data-layer='conv2']")
        assert conv2.count() == 8
        page.click(".show-all[data-layer='conv2']")
        assert page.locator(".map[data-layer='conv2']").count() == 64
        note = page.locator(".layer-col[data-layer='conv3'] .subset .hint").inner_text()
        assert "of 128" in note  # the server sends 64 of conv3's 128 maps, and the page says so
        # The strip scrolls sideways, and says which layers are in view.
        position = page.locator("#strip-position")
        first = position.get_attribute("data-first")
        assert (
            position.get_attribute("data-last") != "15"
            and page.locator("#strip-prev").is_disabled()
        )
        page.click("#strip-next")
        page.wait_for_function(
            "() => document.getElementById('strip-position').dataset.first !== '0'"
        )
        assert position.get_attribute("data-first") != first
        assert not page.locator("#strip-prev").is_disabled()
        # The conv step opens on the input channel with the largest |sum of products|.
        page.click(".map[data-layer='conv2'][data-channel='5']")
        page.wait_for_selector("#zoom.clickable")
        box = page.locator("#zoom").bounding_box()
        with page.expect_response(lambda r: "/api/conv-step" in r.url) as answer:
            page.locator("#zoom").click(
                position={"x": box["width"] * 0.4, "y": box["height"] * 0.45}
            )
        step = answer.value.json()
        assert (step["layer"], step["channel"]) == ("conv2", 5)
        assert (step["y"], step["x"]) == (int(0.45 * 64), int(0.4 * 64))
        sums = step["channel_sums"]
        best = max(range(len(sums)), key=lambda index: abs(sums[index]))
        assert len(sums) == 64
        page.wait_for_selector("#conv-channel")
        assert page.locator("#conv-channel").input_value() == str(best)
        assert page.locator("#conv-best").get_attribute("data-channel") == str(best)
        assert f"(channel {best})" in page.locator(".grids").inner_text()
        shown = page.locator("table.products td").first.get_attribute("data-value")
        assert float(shown) == step["products"][best][0][0]
        # Every colour scale on the page states its range.
        for scale in page.locator(".scale").all()[:10]:
            assert float(scale.get_attribute("data-low")) <= float(scale.get_attribute("data-high"))
            assert scale.locator(".ticks span").count() >= 2
        page.locator("#detail").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "explorer_wide_conv_step.png"))
        check_page_colours(page)
        assert offline.foreign == [] and offline.problems == []
        page.close()


def check_page_colours(page) -> None:
    """The page's colourAt between its stops stays within 5/255 of matplotlib's own maps."""
    where = np.linspace(0.0, 1.0, 256)
    ours = page.evaluate(
        """async (where) => {
            const maps = await import("/static/maps.js");
            const stops = await import("/static/colours.js");
            const signed = maps.rangeOf(-2, 1);
            return {
                RdBu_r: where.map((t) => maps.colourAt(stops.RDBU_R, t)),
                inferno: where.map((t) => maps.colourAt(stops.INFERNO, t)),
                signed: [signed.low, signed.high, maps.colour(signed, 0)],
            };
        }""",
        where.tolist(),
    )
    for name in ("RdBu_r", "inferno"):
        expected = colormaps[name](where)[:, :3] * 255
        assert np.abs(np.array(ours[name]) - expected).max() <= 5, name
    low, high, zero = ours["signed"]
    assert (low, high) == (-2, 2)  # symmetric about 0
    assert np.abs(np.array(zero) - np.array(colormaps["RdBu_r"](0.5)[:3]) * 255).max() <= 1


def test_phone_keeps_the_best_class_in_view(browser, tmp_path):
    run = untrained_run("wide")
    upload = upload_for("wide", tmp_path)
    with live_server(create_app(run)) as url:
        page, offline = open_page(browser, url, PHONE)
        analyse(page, upload)
        best = page.locator("#bars li.best").get_attribute("data-label")
        page.locator("#cam-class").scroll_into_view_if_needed()
        pill = page.locator("#score-pill")
        pill.wait_for(state="visible")
        assert best in pill.inner_text()
        box = pill.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert box["y"] + box["height"] <= PHONE["height"]
        page.screenshot(path=str(ARTIFACTS / "explorer_wide_phone_scrolled.png"))
        pill.click()  # back to the scores
        page.locator("#predict-card").wait_for(state="visible")
        pill.wait_for(state="hidden")
        assert offline.foreign == [] and offline.problems == []
        page.close()
