"""`cnnkit report`: one self-contained HTML page about a run, images embedded as data URIs.

No scripts, no external URLs, no fonts to fetch: the file opens offline in any browser.
Sections: the plan table, training curves, evaluation, filters, feature maps of a few test
images, top patches, Grad-CAM examples and accuracy against shift.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cnnkit.inspect import draw, figures, plots
from cnnkit.inspect.gradcam import choose_layer, gradcam
from cnnkit.inspect.invariance import dataset_invariance
from cnnkit.inspect.patches import top_patches
from cnnkit.inspect.views import feature_maps, filters, normaliser
from cnnkit.render import count

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1180px; padding: 0 1em; color: #1a1a1a; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.muted { color: #666; } img { max-width: 100%; height: auto; display: block; margin: .6em 0; }
table { border-collapse: collapse; font: 13px ui-monospace, Menlo, Consolas, monospace; }
th, td { padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee; }
th:nth-child(-n+3), td:nth-child(-n+3) { text-align: left; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
"""


@dataclass
class Evaluation:
    """The images a report evaluates on, already fitted to the model, with their labels."""

    source: str  # e.g. "mnist:test (test split)"
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # (N,) indices into the run's classes


def png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(image: Image.Image, alt: str) -> str:
    return f'<img src="{png_uri(image)}" alt="{html.escape(alt)}" width="{image.width}">'


def plan_table(network_plan: Any) -> str:
    headers = ["layer", "kind", "spec", "output", "params", "MACs", "RF", "jump"]
    rows = []
    for layer in network_plan.layers:
        shape = layer.output_shape
        rows.append(
            [
                layer.name,
                layer.kind,
                layer.text,
                str(shape[2]) if layer.flat else "x".join(map(str, shape)),
                count(layer.params),
                count(layer.macs),
                "all"
                if layer.receptive_field is None
                else "x".join(map(str, layer.receptive_field)),
                "" if layer.jump is None else str(layer.jump[0]),
            ]
        )
    totals = network_plan.totals
    rows.append(["total", "", "", "", count(totals["params"]), count(totals["macs"]), "", ""])
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def gradcam_examples(
    classifier: Any, images: np.ndarray, labels: np.ndarray, layer: str | None = None
) -> Image.Image:
    """Input and Grad-CAM overlay side by side for a few images, captioned prediction / truth."""
    names = classifier.class_names
    tiles, captions = [], []
    for image, label in zip(images, labels, strict=True):
        result = gradcam(classifier.model, normaliser(classifier)(image[None]), layer=layer)
        tiles += [draw.tile(image, 96), draw.tile(figures._overlay(image, result.cam), 96)]
        prob = result.probabilities[result.predicted]
        captions += [f"true {names[int(label)]}", f"pred {names[result.predicted]} {prob:.2f}"]
    body = draw.grid(tiles, 8, captions)
    layer_name = choose_layer(classifier.model, layer)
    return draw.framed(
        draw.titled(body, "Grad-CAM examples", f"for the predicted class, at {layer_name}")
    )


def build_report(
    classifier: Any,
    run: str,
    metrics: Sequence[dict[str, Any]],
    evaluation: Evaluation | None,
    patch_images: int = 5000,
    examples: int = 8,
) -> str:
    """The whole page as one HTML string."""
    model, manifest = classifier.model, classifier.manifest
    network_plan = model.plan
    title = f"cnnkit report: {run}"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">{html.escape(manifest.get("notation", str(network_plan.spec)))}<br>'
        f"{len(classifier.class_names)} classes; created {html.escape(str(manifest.get('created', '?')))}; "
        f"{count(network_plan.totals['params'])} parameters</p>",
        "<h2>Plan</h2>",
        plan_table(network_plan),
        "<h2>Training curves</h2>",
        _img(plots.curves_figure(metrics), "training curves")
        if metrics
        else '<p class="muted">no metrics.jsonl records in this run</p>',
    ]
    if evaluation is not None:
        report, fitted, log_probs = plots.evaluate_with_outputs(
            classifier, evaluation.images, evaluation.labels
        )
        losses = plots.top_losses(evaluation.labels, log_probs)
        names = classifier.class_names
        parts += [
            f"<h2>Evaluation</h2><p>{html.escape(evaluation.source)}: accuracy "
            f"<b>{report['accuracy']:.4f}</b> on {report['count']:,} images, loss {report['loss']:.4f}</p>",
            '<div class="figures">',
            _img(plots.confusion_figure(np.array(report["confusion"]), names, True), "confusion"),
            _img(plots.per_class_figure(report), "per-class accuracy"),
            "</div>",
            _img(plots.top_losses_figure(fitted, losses, names), "top losses"),
        ]
    has_conv = any(layer.kind == "conv" for layer in network_plan.layers)
    parts.append("<h2>Filters</h2>")
    parts.append(
        _img(figures.filters_figure(filters(model)), "filters")
        if has_conv
        else '<p class="muted">the model has no conv layer</p>'
    )
    if evaluation is not None:
        sample = evaluation.images[:examples]
        parts.append("<h2>Feature maps</h2>")
        for image in sample[:2]:
            maps = feature_maps(model, normaliser(classifier)(image[None]))
            parts.append(_img(figures.features_figure(image, maps), "feature maps"))
        if has_conv:
            layers = top_patches(model, evaluation.images[:patch_images], normaliser(classifier))
            parts += [
                "<h2>Top patches</h2>",
                f'<p class="muted">over {min(patch_images, len(evaluation.images)):,} images</p>',
                _img(figures.patches_figure(layers), "top patches"),
            ]
        parts += [
            "<h2>Grad-CAM</h2>",
            _img(gradcam_examples(classifier, sample, evaluation.labels[:examples]), "Grad-CAM"),
        ]
        shifted = dataset_invariance(
            model, evaluation.images[:300], evaluation.labels[:300], normaliser(classifier)
        )
        parts += [
            "<h2>Translation invariance</h2>",
            _img(figures.shift_accuracy_figure(shifted), "shift"),
        ]
    else:
        parts.append(
            '<p class="muted">no --data: evaluation, feature maps, patches and Grad-CAM need images</p>'
        )
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # An empty icon: otherwise a browser asks for /favicon.ico, a request that fails offline.
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
