"""Evaluation plots: confusion matrices, per-class accuracy, top losses and training curves.

    report, images, log_probs = evaluate_with_outputs(classifier, images, labels)
    evaluation_plots(report, "eval/", images=images, labels=labels, log_probs=log_probs,
                     metrics=read_metrics(run))

`report` is `cnnkit.metrics.classification_report`'s dict (what Classifier.evaluate returns).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnkit.inspect import draw


def evaluate_with_outputs(
    classifier: Any, images: np.ndarray, labels: np.ndarray
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(report, images fitted to the model, log-probabilities (N, classes)) for the plots.

    Classifier.evaluate keeps only the report; top losses also need each image's output.
    """
    from cnnkit.data import fit_images
    from cnnkit.metrics import classification_report

    fitted = fit_images(np.asarray(images), classifier.input_shape, classifier.resize)
    log_probs = classifier.log_probabilities(fitted)
    report = classification_report(
        np.asarray(labels),
        log_probs.argmax(axis=1),
        class_names=classifier.class_names,
        log_probs=log_probs,
    )
    return report, fitted, log_probs


def top_losses(labels: np.ndarray, log_probs: np.ndarray, count: int = 16) -> list[dict[str, Any]]:
    """The most confidently wrong images: wrong predictions, highest predicted probability first."""
    predicted = log_probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = np.exp(log_probs[wrong, predicted[wrong]])
    order = wrong[np.argsort(-confidence, kind="stable")][:count]
    return [
        {
            "index": int(i),
            "true": int(labels[i]),
            "predicted": int(predicted[i]),
            "prob_predicted": float(np.exp(log_probs[i, predicted[i]])),
            "prob_true": float(np.exp(log_probs[i, labels[i]])),
            "loss": float(-log_probs[i, labels[i]]),
        }
        for i in order
    ]


def confusion_figure(matrix: np.ndarray, names: Sequence[str], normalised: bool) -> Image.Image:
    """Rows = true class, columns = predicted; normalised rows sum to 1 (recall on the diagonal)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    classes = len(matrix)
    if normalised:
        values = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        high, number_format, title = 1.0, "{:.2f}", "confusion matrix, normalised by true class"
    else:
        values = matrix
        high, number_format, title = (
            max(float(matrix.max()), 1.0),
            "{:.0f}",
            "confusion matrix, counts",
        )
    # Cells of 12 px at least, so that every class keeps a readable label, up to 100 classes.
    cell = 44 if classes <= 12 else 30 if classes <= 20 else max(12, 600 // classes)
    body = draw.heat_map(
        values,
        draw.SEQUENTIAL,
        0.0,
        high,
        cell,
        row_labels=list(map(str, names)),
        col_labels=list(map(str, names)),
        row_title="true class",
        col_title="predicted class",
        numbers=values if classes <= 20 else None,
        number_format=number_format,
    )
    note = f"{int(matrix.sum()):,} images; accuracy {np.trace(matrix) / max(matrix.sum(), 1):.4f}"
    return draw.framed(draw.titled(body, title, note))


def per_class_figure(report: dict[str, Any]) -> Image.Image:
    """Accuracy within each true class (its recall)."""
    classes = report["classes"]
    chart = draw.bar_chart(
        [c["name"] for c in classes],
        [c["recall"] for c in classes],
        "accuracy per class",
        "accuracy",
        (0.0, 1.0),
        x_title="true class",
    )
    note = f"overall {report['accuracy']:.4f} on {report['count']:,} images"
    return draw.framed(draw.titled(chart, "per-class accuracy", note))


def top_losses_figure(
    images: np.ndarray, losses: Sequence[dict[str, Any]], names: Sequence[str]
) -> Image.Image:
    if not losses:
        return draw.framed(draw.label("no wrong predictions: no top losses to show", 16))
    tiles = [draw.tile(images[item["index"]], 84) for item in losses]
    captions = [
        f"{names[item['predicted']]} {item['prob_predicted']:.2f}\ntrue {names[item['true']]}"
        for item in losses
    ]
    # Captions wrap to their column (grid), so long class names never run into the next one.
    body = draw.grid(tiles, min(8, len(tiles)), captions, gap=6, caption_width=110)
    note = "caption: predicted class and its probability, then the true class; most confident first"
    return draw.framed(draw.titled(body, "top losses", note))


CURVES = (  # (title, the records' fields, plotted as error rate 1 - value)
    ("loss", ("train_loss", "val_loss"), False),
    ("error rate (1 - accuracy)", ("train_acc", "val_acc"), True),
)


def x_key(runs: Sequence[Sequence[dict[str, Any]]]) -> str:
    """ "epoch" when every run records each epoch once, else "step" (records within epochs)."""
    for records in runs:
        epochs = [r.get("epoch") for r in records]
        if not (all(e is not None for e in epochs) and len(set(epochs)) == len(epochs)):
            return "step"
    return "epoch"


def curve(
    records: Sequence[dict[str, Any]], key: str, field: str, error: bool = False
) -> tuple[list[float], list[float]]:
    """(x, y) of one field over the records that have it; y is 1 - value for an error rate."""
    points = [
        (float(r.get(key) or 0), float(r[field])) for r in records if r.get(field) is not None
    ]
    return [p[0] for p in points], [1.0 - p[1] if error else p[1] for p in points]


def _curve_chart(
    lines: dict[str, tuple[list[float], list[float]]], title: str, key: str, error: bool
) -> Image.Image:
    y_title = "error rate, log scale" if error else "cross-entropy loss"
    return draw.line_chart(lines, title, key, y_title, log_y=error, percent=error)


def curves_figure(records: Sequence[dict[str, Any]]) -> Image.Image:
    """Loss, and the error rate (1 - accuracy) on a log axis, against epoch (or step, when
    records come more often than once per epoch).

    On a log axis 99.0% and 99.5% accuracy are as far apart as 80% and 90%: the differences that
    matter late in training stay visible.
    """
    key = x_key([records])
    charts = []
    for title, fields, error in CURVES:
        names = {f: f.split("_")[0] + (" error" if error else " loss") for f in fields}
        lines = {names[f]: curve(records, key, f, error) for f in fields}
        lines = {name: line for name, line in lines.items() if line[0]}
        if lines:
            charts.append(_curve_chart(lines, title, key, error))
    if not charts:
        return draw.framed(draw.label("metrics.jsonl has no loss or accuracy records", 16))
    return draw.framed(draw.titled(draw.stack(charts, vertical=False, gap=16), "training curves"))


def compare_figure(runs: Mapping[str, Sequence[dict[str, Any]]]) -> Image.Image:
    """Several runs' curves in one picture: loss and error rate, one line per run.

    Each run shows its validation curve, or its training curve when it has no validation.
    """
    key = x_key(list(runs.values()))
    charts = []
    for title, fields, error in CURVES:
        lines = {}
        for name, records in runs.items():
            for field in reversed(fields):  # val first
                xs, ys = curve(records, key, field, error)
                if xs:
                    lines[f"{name} ({field.split('_')[0]})"] = (xs, ys)
                    break
        if lines:
            charts.append(_curve_chart(lines, title, key, error))
    if not charts:
        return draw.framed(draw.label("none of these runs has loss or accuracy records", 16))
    body = draw.stack(charts, vertical=False, gap=16)
    return draw.framed(draw.titled(body, "training curves", ", ".join(runs)))


def evaluation_plots(
    report: dict[str, Any],
    out_dir: str | os.PathLike,
    *,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    log_probs: np.ndarray | None = None,
    metrics: Sequence[dict[str, Any]] | None = None,
    top: int = 16,
) -> dict[str, Path]:
    """Write the evaluation PNGs and evaluation.json into out_dir; returns name -> path.

    Always: confusion.png, confusion_normalised.png, per_class.png. With images, labels and
    log_probs (see evaluate_with_outputs): top_losses.png. With metrics records: curves.png.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [c["name"] for c in report["classes"]]
    figures = {
        "confusion": confusion_figure(np.array(report["confusion"]), names, normalised=False),
        "confusion_normalised": confusion_figure(
            np.array(report["confusion"]), names, normalised=True
        ),
        "per_class": per_class_figure(report),
    }
    numbers: dict[str, Any] = {"report": report}
    if images is not None and labels is not None and log_probs is not None:
        losses = top_losses(np.asarray(labels), np.asarray(log_probs), top)
        figures["top_losses"] = top_losses_figure(images, losses, names)
        numbers["top_losses"] = losses
    if metrics:
        figures["curves"] = curves_figure(metrics)
        numbers["metrics"] = list(metrics)
    paths = {}
    for name, image in figures.items():
        paths[name] = out / f"{name}.png"
        image.save(paths[name])
    paths["json"] = out / "evaluation.json"
    paths["json"].write_text(json.dumps(numbers, indent=1, default=float), encoding="utf-8")
    return paths
