"""Classification metrics from labels and predictions: NumPy only, plain dicts out.

Conventions follow scikit-learn's `classification_report` with `zero_division=0`: a class never
predicted has precision 0 and a class never present has recall 0. Unlike scikit-learn, the macro
averages leave out the classes without images: with them, a test set holding 2 of 3 classes
printed a 66.7% macro recall next to 100% accuracy ("classes_without_images" counts them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.errors import DataError


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """int64 (classes, classes): row = true class, column = predicted class."""
    # One bincount over flat (true, predicted) indices instead of a Python loop over samples.
    flat = np.bincount(y_true * classes + y_pred, minlength=classes * classes)
    return flat.reshape(classes, classes)


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    probs: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    *,
    log_probs: np.ndarray | None = None,
    top_confused: int = 10,
) -> dict[str, Any]:
    """Accuracy, loss, per-class precision/recall/F1, the confusion matrix and its worst cells.

    Args:
        y_true, y_pred: (N,) class indices.
        probs: (N, classes) probabilities; gives "loss", the mean negative log-likelihood.
        class_names: one name per class; default "0", "1", ... up to the largest label.
        log_probs: (N, classes) log-probabilities, preferred over `probs` for the loss because a
            probability that underflowed to 0 would make the loss infinite.
        top_confused: how many of the most frequent (true, predicted) mistakes to list.

    >>> classification_report([0, 1, 1], [0, 1, 0])["accuracy"]
    0.6666666666666666
    """
    true = _labels(y_true, "y_true")
    pred = _labels(y_pred, "y_pred")
    if len(true) != len(pred):
        raise DataError(f"y_true has {len(true)} labels but y_pred has {len(pred)}")
    if len(true) == 0:
        raise DataError("no samples to evaluate: y_true is empty")
    names = _class_names(class_names, int(max(true.max(), pred.max())))
    classes = len(names)
    matrix = confusion_matrix(true, pred, classes)
    hits = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)  # how often each class is the truth
    predicted = matrix.sum(axis=0)  # how often each class is the answer
    precision = _divide(hits, predicted)
    recall = _divide(hits, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    present = support > 0  # classes with images: the only ones the macro averages count
    scores = (precision, recall, f1)
    return {
        "count": len(true),
        "correct": int(hits.sum()),
        "accuracy": float(hits.sum() / len(true)),
        "loss": _loss(true, probs, log_probs, classes),
        "classes": _per_class(names, precision, recall, f1, support, predicted),
        "macro": _average(present / present.sum(), *scores),
        "classes_without_images": int(classes - present.sum()),
        "weighted": _average(support / support.sum(), *scores),
        "confusion": matrix.tolist(),
        "confused": most_confused(matrix, names, top_confused),
    }


def _class_names(class_names: Sequence[str] | None, largest: int) -> list[str]:
    """The given names, or "0", "1", ... up to the largest label; DataError for too few."""
    if class_names is None:
        return [str(i) for i in range(largest + 1)]
    names = [str(n) for n in class_names]
    if largest >= len(names):
        raise DataError(
            f"labels go up to {largest} but there are {len(names)} class names "
            f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); "
            f"the data has classes the model does not know"
        )
    return names


def _average(
    weights: np.ndarray, precision: np.ndarray, recall: np.ndarray, f1: np.ndarray
) -> dict[str, float]:
    """The scores averaged with `weights` (summing to 1) over the classes."""
    return {
        "precision": float(weights @ precision),
        "recall": float(weights @ recall),
        "f1": float(weights @ f1),
    }


def _per_class(
    names: Sequence[str],
    precision: np.ndarray,
    recall: np.ndarray,
    f1: np.ndarray,
    support: np.ndarray,
    predicted: np.ndarray,
) -> list[dict[str, Any]]:
    """One row per class, plain Python numbers."""
    return [
        {
            "name": names[i],
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i in range(len(names))
    ]


def most_confused(matrix: np.ndarray, names: Sequence[str], top: int = 10) -> list[dict[str, Any]]:
    """The largest off-diagonal cells: most frequent first, ties by true then predicted index."""
    off = np.array(matrix, dtype=np.int64)
    np.fill_diagonal(off, 0)
    true_idx, pred_idx = np.nonzero(off)
    counts = off[true_idx, pred_idx]
    order = np.lexsort((pred_idx, true_idx, -counts))[: max(top, 0)]
    row_totals = np.asarray(matrix).sum(axis=1)
    return [
        {
            "true": names[t],
            "predicted": names[p],
            "count": int(off[t, p]),
            "share": float(off[t, p] / row_totals[t]),  # of the true class's samples
            "true_index": int(t),
            "predicted_index": int(p),
        }
        for t, p in zip(true_idx[order], pred_idx[order], strict=True)
    ]


def _labels(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{what} must be one label per sample (N,), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{what} must hold integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise DataError(f"{what} holds a negative class index ({int(array.min())})")
    return array


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    out = np.zeros(np.shape(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _loss(
    true: np.ndarray, probs: np.ndarray | None, log_probs: np.ndarray | None, classes: int
) -> float | None:
    """Mean negative log-likelihood of the true classes, or None without probabilities."""
    given = log_probs if log_probs is not None else probs
    if given is None:
        return None
    values = np.asarray(given, dtype=np.float64)
    if values.shape != (len(true), classes):
        which = "log_probs" if log_probs is not None else "probs"
        raise DataError(
            f"{which} must be (N, classes) = ({len(true)}, {classes}), got {values.shape}"
        )
    picked = values[np.arange(len(true)), true]
    if log_probs is None:
        # float64's smallest normal: a certain mistake costs ~708 nats instead of infinity.
        picked = np.log(np.maximum(picked, np.finfo(np.float64).tiny))
    return float(-picked.mean())
