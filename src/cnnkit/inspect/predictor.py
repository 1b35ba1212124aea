"""The model side of `cnnkit serve` for predictions only: any classifier, no torch.

    predictor = model_side(load_onnx("model.onnx"))      # Predictor: no torch imported
    predictor = model_side(load("runs/lenet"))           # Explorer: predictions and the views

`Explorer` (torch) extends `Predictor` with the views that need the network's inside
(activations, Grad-CAM, conv-step). An ONNX model offers only its outputs, so it is served by a
Predictor, whose `views` is False and whose routes answer `views_unavailable(...)`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from cnnkit.plan import Plan

FULL_EXTRA = "pip install 'cnnkit[full]'"


def views_unavailable(view: str) -> str:
    """Why `view` (e.g. '/api/activations') cannot be answered for a model without its network."""
    return (
        f"{view} needs the network's layers, which an .onnx model does not give: install the "
        f"full cnnkit ({FULL_EXTRA}) and serve the run directory (cnnkit serve RUN); this "
        f"server answers /api/model and /api/predict"
    )


class Predictor:
    """A loaded classifier (`Classifier` or `OnnxClassifier`) answering predictions only.

    The classifier needs `class_names` and `log_probabilities(uint8 (N, H, W, C))`; `plan` is
    the planner's Plan of its network, None for an ONNX model that cnnkit did not export.
    """

    views: ClassVar[bool] = False  # True where activations, Grad-CAM and conv-step are answered

    def __init__(self, classifier: Any, plan: Plan | None) -> None:
        self.classifier = classifier
        self.plan = plan
        self.conv_names: tuple[str, ...] = ()
        # One forward at a time: Explorer's views hook the shared modules, and a predict batch
        # running beside a Grad-CAM would fire them.
        self.lock = threading.Lock()

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Fitted uint8 images (H, W, C) -> each one's probabilities (classes,) float64."""
        with self.lock:
            log_probs = self.classifier.log_probabilities(np.stack(images))  # (B, classes)
        return list(np.exp(log_probs))

    def top(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        """The k likeliest classes as {"index", "label", "probability"}, likeliest first."""
        # Stable sort of -p, as Classifier.predict: equal probabilities keep class order.
        order = np.argsort(-probs, kind="stable")[: min(k, len(probs))]
        names = self.classifier.class_names
        return [{"index": int(c), "label": names[c], "probability": float(probs[c])} for c in order]


def model_side(classifier: Any) -> Predictor:
    """The Explorer of a torch `Classifier`; a Predictor for an `OnnxClassifier` (no torch)."""
    from cnnkit.onnx_runtime import OnnxClassifier

    if isinstance(classifier, OnnxClassifier):
        return Predictor(classifier, classifier.plan)
    from cnnkit.inspect.explorer import Explorer

    return Explorer(classifier)
