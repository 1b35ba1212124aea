"""`cnnkit report`, the computing half: everything the page shows, gathered in a ReportData.

    data = collect(classifier, run, read_metrics(run), Evaluation(source, images, labels))
    page = report_html.render(data)  # or build_report(...), which does both

Here the model runs (evaluation, feature maps, top patches, Grad-CAM, shifted copies); nothing
is drawn. `report_html` draws the figures from these arrays and writes the HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnkit.inspect import plots
from cnnkit.inspect.gradcam import GradCam, choose_layer, gradcam
from cnnkit.inspect.invariance import ShiftAccuracy, dataset_invariance
from cnnkit.inspect.patches import LayerPatches, top_patches
from cnnkit.inspect.views import FeatureMap, Filters, feature_maps, filters, normaliser
from cnnkit.plan import Plan


@dataclass
class Evaluation:
    """The images a report evaluates on, already fitted to the model, with their labels."""

    source: str  # e.g. "mnist:test (test split)"
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # (N,) indices into the run's classes


@dataclass
class GradCamExample:
    image: np.ndarray  # uint8 (H, W, C), fitted to the model
    label: int  # the true class
    result: GradCam  # for the predicted class


@dataclass
class EvaluatedData:
    """What the report shows about the run on its images."""

    source: str  # where the images came from, as the user named them
    report: dict[str, Any]  # metrics.classification_report, with confusion and loss
    images: np.ndarray  # uint8 (N, H, W, C), fitted to the model
    top_losses: list[dict[str, Any]]  # plots.top_losses: most confident mistakes first
    feature_maps: list[tuple[np.ndarray, list[FeatureMap]]]  # (image, its maps), a few images
    patch_images: int  # how many images the top patches were searched in
    patches: list[LayerPatches] | None  # None: the model has no conv layer
    gradcam_layer: str
    gradcam: list[GradCamExample]
    shift: ShiftAccuracy  # accuracy against a shift of the images


@dataclass
class ReportData:
    """Everything on the page, computed; `report_html.render` only draws and formats it."""

    run: str  # the run directory, as given
    network_plan: Plan
    notation: str  # the spec as the manifest wrote it
    created: str  # when the run was created, from the manifest ('?' when unknown)
    class_names: list[str]
    metrics: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl records
    filters: Filters | None = None  # None: the model has no conv layer
    evaluation: EvaluatedData | None = None  # None: no --data


def has_conv(network_plan: Plan) -> bool:
    return any(layer.kind == "conv" for layer in network_plan.layers)


def evaluate(
    classifier: Any, evaluation: Evaluation, patch_images: int = 5000, examples: int = 8
) -> EvaluatedData:
    """Run the model over the evaluation images for every section that needs images."""
    model, normalise = classifier.model, normaliser(classifier)
    images, labels = evaluation.images, evaluation.labels
    report, fitted, log_probs = plots.evaluate_with_outputs(classifier, images, labels)
    sample = images[:examples]
    layer = choose_layer(model, None)
    picked = spread_examples(labels, log_probs.argmax(axis=1), examples)
    return EvaluatedData(
        source=evaluation.source,
        report=report,
        images=fitted,
        top_losses=plots.top_losses(labels, log_probs),
        feature_maps=[(image, feature_maps(model, normalise(image[None]))) for image in sample[:2]],
        patch_images=min(patch_images, len(images)),
        patches=top_patches(model, images[:patch_images], normalise)
        if has_conv(model.plan)
        else None,
        gradcam_layer=layer,
        gradcam=[
            GradCamExample(
                fitted[i], int(labels[i]), gradcam(model, normalise(fitted[i : i + 1]), layer=layer)
            )
            for i in picked
        ],
        shift=dataset_invariance(model, images[:300], labels[:300], normalise),
    )


def spread_examples(labels: np.ndarray, predicted: np.ndarray, count: int) -> list[int]:
    """Indices of `count` images spread over the true classes, right and wrong ones mixed.

    Round-robin over the classes in order; in round r, class c offers a right prediction when
    r + c is even and a wrong one when odd, falling back to the other kind, so that 8 examples
    of 10 classes show 8 classes, half of them mistakes (where there are mistakes). Within a
    class and kind, images keep their order in the data.
    """
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    queues = {}  # class -> (right indices, wrong indices), each consumed from the front
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        right = predicted[members] == cls
        queues[int(cls)] = (list(members[right]), list(members[~right]))
    picked: list[int] = []
    for round_number in range(len(labels)):
        for position, (right, wrong) in enumerate(queues.values()):
            if len(picked) == count:
                return picked
            first, second = (right, wrong) if (round_number + position) % 2 == 0 else (wrong, right)
            if first or second:
                picked.append(int((first or second).pop(0)))
        if all(not r and not w for r, w in queues.values()):
            break
    return picked


def collect(
    classifier: Any,
    run: str,
    metrics: Sequence[dict[str, Any]],
    evaluation: Evaluation | None,
    patch_images: int = 5000,
    examples: int = 8,
) -> ReportData:
    """The report's contents: the plan, the curves' records, filters, and with images the rest."""
    model, manifest = classifier.model, classifier.manifest
    return ReportData(
        run=run,
        network_plan=model.plan,
        notation=manifest.get("notation", str(model.plan.spec)),
        created=str(manifest.get("created", "?")),
        class_names=list(classifier.class_names),
        metrics=list(metrics),
        filters=filters(model) if has_conv(model.plan) else None,
        evaluation=None
        if evaluation is None
        else evaluate(classifier, evaluation, patch_images, examples),
    )


def build_report(
    classifier: Any,
    run: str,
    metrics: Sequence[dict[str, Any]],
    evaluation: Evaluation | None,
    patch_images: int = 5000,
    examples: int = 8,
) -> str:
    """The whole page as one HTML string: `collect`, then `report_html.render`."""
    from cnnkit.inspect.report_html import render

    return render(collect(classifier, run, metrics, evaluation, patch_images, examples))
