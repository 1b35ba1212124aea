"""classification_report against small examples computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnkit.errors import DataError
from cnnkit.metrics import classification_report, confusion_matrix, most_confused

# true:      a a a b b c
# predicted: a a b b c c
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]
NAMES = ["a", "b", "c"]


def test_counts_accuracy_and_confusion_matrix():
    report = classification_report(Y_TRUE, Y_PRED, class_names=NAMES)
    assert report["count"] == 6
    assert report["correct"] == 4
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["loss"] is None  # no probabilities given


def test_per_class_precision_recall_f1_by_hand():
    classes = classification_report(Y_TRUE, Y_PRED, class_names=NAMES)["classes"]
    # a: 2 of 2 predictions right, 2 of 3 found; b: 1 of 2, 1 of 2; c: 1 of 2, 1 of 1.
    expected = [
        ("a", 1.0, 2 / 3, 0.8, 3, 2),
        ("b", 0.5, 0.5, 0.5, 2, 2),
        ("c", 0.5, 1.0, 2 / 3, 1, 2),
    ]
    for entry, (name, precision, recall, f1, support, predicted) in zip(
        classes, expected, strict=True
    ):
        assert entry["name"] == name
        assert entry["precision"] == pytest.approx(precision)
        assert entry["recall"] == pytest.approx(recall)
        assert entry["f1"] == pytest.approx(f1)
        assert (entry["support"], entry["predicted"]) == (support, predicted)


def test_macro_and_weighted_averages():
    report = classification_report(Y_TRUE, Y_PRED, class_names=NAMES)
    assert report["macro"]["precision"] == pytest.approx(2 / 3)
    assert report["macro"]["recall"] == pytest.approx(13 / 18)
    assert report["macro"]["f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # supports 3, 2, 1
    assert report["weighted"]["precision"] == pytest.approx((3 * 1 + 2 * 0.5 + 0.5) / 6)
    assert report["weighted"]["recall"] == pytest.approx(4 / 6)  # weighted recall = accuracy


def test_most_confused_pairs_sorted_by_count_then_index():
    y_true = [0, 0, 0, 1, 1, 1, 1, 2, 2]
    y_pred = [1, 2, 0, 0, 0, 0, 2, 1, 2]
    report = classification_report(y_true, y_pred, class_names=NAMES)
    pairs = [(c["true"], c["predicted"], c["count"]) for c in report["confused"]]
    # b->a three times first; then the count-1 cells in (true, predicted) order.
    assert pairs == [("b", "a", 3), ("a", "b", 1), ("a", "c", 1), ("b", "c", 1), ("c", "b", 1)]
    assert report["confused"][0]["share"] == pytest.approx(3 / 4)
    assert [c["count"] for c in most_confused(np.array(report["confusion"]), NAMES, top=2)] == [
        3,
        1,
    ]


def test_loss_is_mean_negative_log_likelihood_of_the_true_class():
    probs = np.array(
        [
            [0.5, 0.25, 0.25],
            [0.5, 0.5, 0.0],
            [0.25, 0.75, 0.0],
            [0.0, 1.0, 0.0],
            [0.25, 0.25, 0.5],
            [0.0, 0.5, 0.5],
        ]
    )
    expected = -(3 * math.log(0.5) + math.log(0.25) + math.log(1.0) + math.log(0.25)) / 6
    report = classification_report(Y_TRUE, Y_PRED, probs, NAMES)
    assert report["loss"] == pytest.approx(expected)
    from_logs = classification_report(
        Y_TRUE, Y_PRED, class_names=NAMES, log_probs=np.log(np.maximum(probs, 1e-300))
    )
    assert from_logs["loss"] == pytest.approx(expected)


def test_a_zero_probability_for_the_truth_gives_a_large_finite_loss():
    report = classification_report([0], [1], np.array([[0.0, 1.0]]))
    assert math.isfinite(report["loss"]) and report["loss"] > 700


def test_classes_never_predicted_or_absent_score_zero_not_nan():
    report = classification_report([0, 0], [0, 1], class_names=NAMES)
    b, c = report["classes"][1], report["classes"][2]
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == (0.0, 0.0, 0.0, 0)
    assert (c["precision"], c["recall"], c["f1"]) == (0.0, 0.0, 0.0)
    # Only class a has images: the macro averages are a's alone (b and c are left out).
    assert report["macro"]["recall"] == pytest.approx(0.5)
    assert report["classes_without_images"] == 2


def test_macro_averages_leave_out_classes_without_images():
    # Every image right, one class absent: macro recall is 100%, not 2/3 (scikit-learn's 66.7%).
    report = classification_report([0, 1, 1], [0, 1, 1], class_names=NAMES)
    assert report["accuracy"] == 1.0 and report["classes_without_images"] == 1
    assert report["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_default_class_names_reach_the_largest_label():
    report = classification_report(np.array([0, 3]), np.array([0, 3]))
    assert [c["name"] for c in report["classes"]] == ["0", "1", "2", "3"]
    assert report["confused"] == []


def test_confusion_matrix_agrees_with_a_loop():
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    expected = np.zeros((5, 5), dtype=np.int64)
    for t, p in zip(true, pred, strict=True):
        expected[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(true, pred, 5), expected)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "probs", "names", "message"),
    [
        ([0, 1], [0], None, None, r"y_true has 2 labels but y_pred has 1"),
        ([], [], None, None, r"no samples to evaluate: y_true is empty"),
        (
            [0, 3],
            [0, 1],
            None,
            ["a", "b"],
            r"labels go up to 3 but there are 2 class names \(a, b\)",
        ),
        ([0, -1], [0, 0], None, None, r"y_true holds a negative class index \(-1\)"),
        (
            [0.5, 1.0],
            [0, 1],
            None,
            None,
            r"y_true must hold integer class indices, got dtype float64",
        ),
        (
            [[0, 1]],
            [[0, 1]],
            None,
            None,
            r"y_true must be one label per sample \(N,\), got shape \(1, 2\)",
        ),
        (
            [0, 1],
            [0, 1],
            np.ones((2, 3)),
            ["a", "b"],
            r"probs must be \(N, classes\) = \(2, 2\), got \(2, 3\)",
        ),
    ],
)
def test_bad_inputs_are_refused_with_what_was_received(y_true, y_pred, probs, names, message):
    with pytest.raises(DataError, match=message):
        classification_report(y_true, y_pred, probs, names)
