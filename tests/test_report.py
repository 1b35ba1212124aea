"""`cnnkit report`: one self-contained HTML file that opens offline, checked in Chromium."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit.inspect.plots import evaluation_plots, top_losses
from conftest import ARTIFACTS, assert_golden


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    """A report of a small run trained briefly on mnist-mini (runs fixture of test_inspect)."""
    import torch

    from cnnkit.data import open_source
    from cnnkit.network import build
    from cnnkit.runs import append_metrics, make_manifest, save_model
    from cnnkit.spec import parse

    spec = parse(
        "28x28x1 > conv 6@5x5 > relu > maxpool 2 > conv 12@5x5 > relu > maxpool 2 > flatten > fc 10"
    )
    data = open_source("mnist-mini").splits["train"]
    model = build(spec, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        pick = torch.randint(0, len(data), (64,), generator=generator).numpy()
        x = torch.from_numpy(data.images[pick]).float().permute(0, 3, 1, 2) / 255
        loss = torch.nn.functional.cross_entropy(
            model((x - 0.1307) / 0.3081), torch.from_numpy(data.labels[pick])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    run = tmp_path_factory.mktemp("report") / "run"
    run.mkdir()
    save_model(
        run, model.eval(), make_manifest(spec, [str(i) for i in range(10)], [0.1307], [0.3081])
    )
    for epoch in (1, 2, 3):
        append_metrics(
            run,
            {
                "epoch": epoch,
                "step": 20 * epoch,
                "elapsed_s": epoch,
                "train_loss": 2.0 / epoch,
                "train_acc": 0.3 * epoch,
                "val_loss": 2.1 / epoch,
                "val_acc": 0.28 * epoch,
                "lr": 0.05,
            },
        )
    out = run / "report.html"
    assert (
        main(["report", str(run), "--data", "mnist-mini", "--images", "1000", "--out", str(out)])
        == 0
    )
    return out


@pytest.mark.slow
def test_report_is_self_contained(report_file):
    page = report_file.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page)  # every src/href a data URI
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for section in (
        "Plan",
        "Training curves",
        "Evaluation",
        "Filters",
        "Feature maps",
        "Top patches",
        "Grad-CAM",
    ):
        assert f"<h2>{section}</h2>" in page or f"<h2>{section}" in page, section
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) >= 8
    for uri in uris:
        image = Image.open(io.BytesIO(base64.b64decode(uri)))
        assert image.width > 100 and image.height > 50
        assert len(np.unique(np.asarray(image.convert("L")))) > 5  # a picture, not a blank
    assert "<td>conv2</td>" in page and "<td>16x16</td>" in page  # the plan table with its RF


class Skeleton(HTMLParser):
    """The page's elements, one a line and indented by depth: the tag, its class, an image's
    alt text and a heading's words; a table is one line with its headers and its row count.
    No image bytes and no measured numbers, which change with the machine's arithmetic."""

    VOID = {"meta", "link", "img", "br"}
    TABLE = {"thead", "tbody", "tr", "th", "td"}

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.depth = 0
        self.text: list[str] | None = None  # collecting a heading's or a header cell's words
        self.headers: list[str] = []
        self.rows = 0

    def handle_decl(self, decl: str) -> None:
        self.lines.append(f"<!{decl}>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.TABLE:
            self.rows += tag == "tr"
            self.text = [] if tag == "th" else None
            return
        found = dict(attrs)
        extra = "".join(f' {k}="{found[k]}"' for k in ("class", "alt", "lang") if found.get(k))
        self.lines.append("  " * self.depth + f"<{tag}{extra}>")
        self.text = [] if tag in ("h1", "h2", "title") else None
        self.depth += tag not in self.VOID

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self.text is not None:
            self.headers.append(" ".join(self.text))
        elif tag == "table":
            rows = self.rows - 1  # the header row
            self.lines.append("  " * self.depth + f"{', '.join(self.headers)}; {rows} rows")
        elif self.text and tag in ("h1", "h2", "title"):
            self.lines.append("  " * self.depth + " ".join(self.text))
        if tag not in self.TABLE:
            self.depth -= 1
        self.text = None

    def handle_data(self, data: str) -> None:
        if self.text is not None and data.strip():
            self.text.append(data.strip())


def skeleton(page: str, run: str) -> str:
    parser = Skeleton()
    parser.feed(page.replace(run, "RUN"))
    return "\n".join(parser.lines) + "\n"


def test_report_html_skeleton_is_the_golden_one(report_file):
    page = report_file.read_text(encoding="utf-8")
    assert_golden("report_skeleton.txt", skeleton(page, str(report_file.parent)))


def test_report_without_data_renders_the_sections_it_can(report_file):
    from cnnkit.inspect.report import collect
    from cnnkit.inspect.report_html import render
    from cnnkit.predict import load
    from cnnkit.runs import read_metrics

    run = report_file.parent
    data = collect(load(run), str(run), read_metrics(run), None)
    assert data.evaluation is None and data.filters is not None and len(data.metrics) == 3
    assert_golden("report_skeleton_no_data.txt", skeleton(render(data), str(run)))


def test_evaluation_plots_write_pngs_and_json(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    log_probs = np.log(rng.dirichlet(np.ones(3), 60))
    from cnnkit.metrics import classification_report

    report = classification_report(
        labels, log_probs.argmax(1), class_names=["a", "b", "c"], log_probs=log_probs
    )
    images = rng.integers(0, 255, (60, 28, 28, 1), dtype=np.uint8)
    metrics = [
        {
            "epoch": e,
            "step": e * 10,
            "train_loss": 1 / e,
            "val_loss": 1.2 / e,
            "train_acc": 0.2 * e,
            "val_acc": 0.2 * e,
        }
        for e in (1, 2, 3)
    ]
    paths = evaluation_plots(
        report, tmp_path, images=images, labels=labels, log_probs=log_probs, metrics=metrics
    )
    assert set(paths) == {
        "confusion",
        "confusion_normalised",
        "per_class",
        "top_losses",
        "curves",
        "json",
    }
    for name, path in paths.items():
        if name != "json":
            image = Image.open(path)
            assert image.width > 200 and len(np.unique(np.asarray(image.convert("L")))) > 5
    losses = top_losses(labels, log_probs, 5)
    confidences = [item["prob_predicted"] for item in losses]
    assert confidences == sorted(confidences, reverse=True)
    assert all(item["predicted"] != item["true"] for item in losses)
    assert losses[0]["prob_predicted"] == pytest.approx(
        np.exp(log_probs[labels != log_probs.argmax(1)].max(1)).max()
    )


@pytest.mark.slow
@pytest.mark.browser
def test_report_opens_in_chromium_without_errors(report_file, browser):
    # The browser fixture fails (never skips) without Chromium: a report must open in one.
    failed, errors = [], []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.on("requestfailed", lambda request: failed.append(request.url[:100]))
        page.on(
            "console",
            lambda message: errors.append(message.text) if message.type == "error" else None,
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report_file.as_uri(), wait_until="load")
        loaded = page.evaluate(
            "[...document.images].every(img => img.complete && img.naturalWidth > 0)"
        )
        count = page.evaluate("document.images.length")
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    finally:
        page.close()
    assert failed == [] and errors == []
    assert loaded and count >= 8
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


@pytest.mark.slow
def test_evaluate_plots_draws_every_chart(report_file, tmp_path, capsys):
    out = tmp_path / "plots"
    run = str(report_file.parent)
    assert main(["evaluate", run, "--data", "mnist-mini", "--plots", str(out)]) == 0
    names = {"confusion", "confusion_normalised", "per_class", "top_losses", "curves"}
    assert {p.stem for p in out.glob("*.png")} == names
    for name in names:
        image = Image.open(out / f"{name}.png")
        assert image.width > 200 and len(np.unique(np.asarray(image.convert("L")))) > 5
    assert "plots: " in capsys.readouterr().out


def test_gradcam_examples_spread_over_the_classes_right_and_wrong():
    from cnnkit.inspect.report import spread_examples

    labels = np.repeat([0, 1, 2], 4)  # 0 0 0 0 1 1 1 1 2 2 2 2
    predicted = labels.copy()
    predicted[[1, 5]] = 2  # one mistake in class 0 (index 1) and one in class 1 (index 5)
    picked = spread_examples(labels, predicted, 6)
    # Round 0: class 0 right, class 1 wrong, class 2 right; round 1: 0 wrong, 1 right, 2 wrong
    # (class 2 has no mistake: its next right image instead).
    assert picked == [0, 5, 8, 1, 4, 9]
    assert sorted(labels[picked]) == [0, 0, 1, 1, 2, 2]
    assert sorted(spread_examples(labels, predicted, 50)) == list(range(12))  # all, once each
