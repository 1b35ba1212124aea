"""`cnnkit report`, the drawing half: a ReportData -> one self-contained HTML page.

No scripts, no external URLs, no fonts to fetch: images are embedded as data URIs, so the file
opens offline in any browser. Sections: the plan table, training curves, evaluation, filters,
feature maps of a few test images, top patches, Grad-CAM examples and accuracy against shift.
Nothing here runs the model: `report.collect` has computed every array drawn here.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

from PIL import Image

from cnnkit.inspect import draw, figures, plots
from cnnkit.inspect.report import EvaluatedData, GradCamExample, ReportData
from cnnkit.plan import Plan
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
PLAN_HEADERS = ["layer", "kind", "spec", "output", "params", "MACs", "RF", "jump"]


def png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(image: Image.Image, alt: str) -> str:
    return f'<img src="{png_uri(image)}" alt="{html.escape(alt)}" width="{image.width}">'


def _muted(text: str) -> str:
    return f'<p class="muted">{html.escape(text)}</p>'


def plan_table(network_plan: Plan) -> str:
    rows = []
    for layer in network_plan.layers:
        shape = layer.output_shape
        field = layer.receptive_field
        rows.append(
            [
                layer.name,
                layer.kind,
                layer.text,
                str(shape[2]) if layer.flat else "x".join(map(str, shape)),
                count(layer.params),
                count(layer.macs),
                "all" if field is None else "x".join(map(str, field)),
                "" if layer.jump is None else str(layer.jump[0]),
            ]
        )
    totals = network_plan.totals
    rows.append(["total", "", "", "", count(totals["params"]), count(totals["macs"]), "", ""])
    head = "".join(f"<th>{h}</th>" for h in PLAN_HEADERS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def gradcam_examples(
    examples: Sequence[GradCamExample], names: Sequence[str], layer: str
) -> Image.Image:
    """Input and Grad-CAM overlay side by side for a few images, captioned truth / prediction."""
    tiles, captions = [], []
    for example in examples:
        result = example.result
        tiles += [
            draw.tile(example.image, 96),
            draw.tile(figures._overlay(example.image, result.cam), 96),
        ]
        prob = result.probabilities[result.predicted]
        captions += [f"true {names[example.label]}", f"pred {names[result.predicted]} {prob:.2f}"]
    body = draw.grid(tiles, 8, captions)
    return draw.framed(
        draw.titled(body, "Grad-CAM examples", f"for the predicted class, at {layer}")
    )


def _evaluation_section(data: EvaluatedData, names: Sequence[str]) -> list[str]:
    report = data.report
    confusion = plots.confusion_figure(report["confusion"], names, True)
    return [
        f"<h2>Evaluation</h2><p>{html.escape(data.source)}: accuracy "
        f"<b>{report['accuracy']:.4f}</b> on {report['count']:,} images, "
        f"loss {report['loss']:.4f}</p>",
        '<div class="figures">',
        _img(confusion, "confusion"),
        _img(plots.per_class_figure(report), "per-class accuracy"),
        "</div>",
        _img(plots.top_losses_figure(data.images, data.top_losses, names), "top losses"),
    ]


def _image_sections(data: EvaluatedData, names: Sequence[str]) -> list[str]:
    """Feature maps, top patches, Grad-CAM and invariance: the sections drawn on images."""
    parts = [
        "<h2>Feature maps</h2>",
        *(
            _img(figures.features_figure(image, maps), "feature maps")
            for image, maps in data.feature_maps
        ),
    ]
    if data.patches is not None:
        parts += [
            "<h2>Top patches</h2>",
            _muted(f"over {data.patch_images:,} images"),
            _img(figures.patches_figure(data.patches), "top patches"),
        ]
    parts += [
        "<h2>Grad-CAM</h2>",
        _img(gradcam_examples(data.gradcam, names, data.gradcam_layer), "Grad-CAM"),
        "<h2>Translation invariance</h2>",
        _img(figures.shift_accuracy_figure(data.shift), "shift"),
    ]
    return parts


def render(data: ReportData) -> str:
    """The whole page as one HTML string."""
    title = f"cnnkit report: {data.run}"
    names = data.class_names
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">{html.escape(data.notation)}<br>'
        f"{len(names)} classes; created {html.escape(data.created)}; "
        f"{count(data.network_plan.totals['params'])} parameters</p>",
        "<h2>Plan</h2>",
        plan_table(data.network_plan),
        "<h2>Training curves</h2>",
        _img(plots.curves_figure(data.metrics), "training curves")
        if data.metrics
        else _muted("no metrics.jsonl records in this run"),
    ]
    if data.evaluation is not None:
        parts += _evaluation_section(data.evaluation, names)
    parts += [
        "<h2>Filters</h2>",
        _img(figures.filters_figure(data.filters), "filters")
        if data.filters is not None
        else _muted("the model has no conv layer"),
    ]
    if data.evaluation is not None:
        parts += _image_sections(data.evaluation, names)
    else:
        parts.append(
            _muted("no --data: evaluation, feature maps, patches and Grad-CAM need images")
        )
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # An empty icon: otherwise a browser asks for /favicon.ico, a request that fails offline.
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
