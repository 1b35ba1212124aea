"""`explain`: the course's worked examples, every step against the reference, errors, golden text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnkit import reference
from cnnkit.cli import main
from cnnkit.errors import ConfigError, SpecError
from cnnkit.explain import explain, explain_from_text, parse_padding
from cnnkit.render_explain import matrix, number, render_explanation
from conftest import assert_golden

COURSE = "[[0,1,0.5,10],[2,2.5,1,-8],[4,0,5,6],[15,1,2,3]]"


# ----------------------------------------------------------------------------- the course


def test_course_max_pooling() -> None:
    result = explain_from_text("maxpool", COURSE, size=2)
    assert result.output == [[2.5, 10], [15, 6]]
    assert [step.argmax for step in result.steps] == [(1, 1), (0, 1), (1, 0), (0, 1)]


def test_course_average_pooling() -> None:
    result = explain_from_text("avgpool", COURSE, size=2)
    assert result.output == [[1.375, 0.875], [5, 4]]
    assert [(step.sum, step.count) for step in result.steps] == [
        (5.5, 4),
        (3.5, 4),
        (20, 4),
        (16, 4),
    ]


def test_pool_window_as_filter_size() -> None:
    assert explain_from_text("maxpool", COURSE, filter_text="2x2").output == [[2.5, 10], [15, 6]]


def test_conv_by_hand() -> None:
    """A 2x2 diagonal-difference filter on the course matrix, stride 2, bias 1."""
    result = explain("conv", json.loads(COURSE), filter=[[1, 0], [0, -1]], stride=2, bias=1)
    assert result.output == [[-1.5, 9.5], [4, 3]]
    first = result.steps[0]
    assert first.patch == [[0, 1], [2, 2.5]]
    assert first.products == [[0, 0], [0, -2.5]]
    assert (first.sum, first.bias, first.value) == (-2.5, 1, -1.5)


def test_conv_output_14x14_for_the_course_layer() -> None:
    """32x32 input, F=8, S=2, P=1 -> floor((32 - 8 + 2)/2) + 1 = 14 (within explain's size cap)."""
    result = explain_from_text("conv", "32x32", filter_text="8x8", stride=2, padding_text="1")
    assert (len(result.output), len(result.output[0])) == (14, 14)
    assert len(result.steps) == 14 * 14


@pytest.mark.parametrize(("padding", "size"), [("same", 16), ("valid", 13)])
def test_tensorflow_same_and_valid_sizes(padding, size) -> None:
    result = explain_from_text("conv", "32x32", filter_text="8x8", stride=2, padding_text=padding)
    assert (len(result.output), len(result.output[0])) == (size, size)


# ----------------------------------------------------------------------------- against the reference


@pytest.mark.parametrize("padding", ["valid", "same", "1"])
@pytest.mark.parametrize("op", ["conv", "maxpool", "avgpool"])
def test_steps_rebuild_the_output(op, padding) -> None:
    """Each step's own arithmetic gives its output value, and the output is the reference's."""
    result = explain_from_text(op, "5x6x2", size=3, stride=2, padding_text=padding, seed=3)
    for step in result.steps:
        patch = np.array(step.patch, dtype=float)  # None (padding) -> NaN
        if op == "conv":
            assert np.array_equal(patch * np.array(step.filter), np.array(step.products))
            assert step.value == pytest.approx(np.sum(step.products) + step.bias)
        elif op == "maxpool":
            assert step.value == np.nanmax(patch) == patch[step.argmax]
        else:
            assert step.count == np.count_nonzero(~np.isnan(patch))
            assert step.value == pytest.approx(np.nansum(patch) / step.count)
        output = np.array(result.output)  # conv: (Ho, Wo); pooling: (C, Ho, Wo)
        index = step.position if op == "conv" else (step.channel, *step.position)
        assert output[index] == step.value
    assert np.array(result.padded_input, dtype=float).shape[0] == 2  # (C, Hp, Wp)


def test_conv_output_matches_reference_forward() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 6, 5)), rng.standard_normal((3, 2, 3))
    result = explain("conv", x, filter=w, stride=2, padding="same", bias=0.25)
    expected = reference.conv2d_forward(x[None], w[None], np.array([0.25]), 2, "same")[0, 0]
    np.testing.assert_allclose(result.output, expected, rtol=1e-12)


def test_same_padding_puts_extra_pixel_bottom_right() -> None:
    result = explain_from_text("avgpool", "5x5", size=2, padding_text="same")
    assert result.pads == ((0, 1), (0, 1))
    last = result.steps[-1]
    assert last.patch[0][1] is None and last.patch[1] == [None, None]
    assert last.count == 1 and last.value == last.sum  # padding left out of the mean


def test_seeded_values_repeat() -> None:
    first = explain_from_text("conv", "4x4", filter_text="3x3", seed=7)
    again = explain_from_text("conv", "4x4", filter_text="3x3", seed=7)
    assert first == again
    values = np.array(first.padded_input)
    assert values.min() >= 0 and values.max() <= 9 and set(np.ravel(first.filter)) <= {-1, 0, 1}


def test_json_shape() -> None:
    data = explain_from_text("conv", "5x5", filter_text="3x3", stride=2, padding_text="1").to_dict()
    assert list(data) == [
        "op", "input_shape", "kernel_size", "stride", "padding", "padded_input", "filter",
        "bias", "steps", "output",
    ]  # fmt: skip
    assert list(data["steps"][0]) == [
        "position", "rows", "cols", "patch", "filter", "products", "sum", "bias", "value",
    ]  # fmt: skip
    assert data["padding"] == "p1" and len(data["padded_input"]) == 7
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN or Infinity anywhere


def test_pool_padding_is_null_in_json() -> None:
    data = explain_from_text("maxpool", "3x3", size=2, padding_text="same").to_dict()
    json.dumps(data, allow_nan=False)
    assert data["padded_input"][-1] == [None] * 4
    assert list(data["steps"][0]) == ["position", "rows", "cols", "patch", "argmax", "value"]


# ----------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    ("value", "text"),
    [(2.0, "2"), (-0.0, "0"), (1.375, "1.375"), (1 / 3, "0.333333"), (-8.0, "-8"), (None, ".")],
)
def test_numbers_are_compact(value, text) -> None:
    assert number(value) == text


def test_matrix_columns_align_right() -> None:
    assert matrix([[0, 1.5], [10, -2]]) == ["   0  1.5", "  10   -2"]


GOLDEN_CASES = {
    "explain_maxpool.txt": ("maxpool", COURSE, {"size": 2}),
    "explain_avgpool.txt": ("avgpool", COURSE, {"size": 2}),
    "explain_avgpool_same.txt": ("avgpool", "5x5", {"size": 2, "padding_text": "same"}),
    "explain_conv.txt": (
        "conv",
        "5x5",
        {"filter_text": "3x3", "stride": 2, "padding_text": "1", "seed": 0},
    ),
    "explain_conv_channels.txt": ("conv", "3x3x2", {"filter_text": "2x2", "bias": 0.5}),
    "explain_maxpool_channels.txt": (
        "maxpool",
        "3x4x2",
        {"size": 2, "padding_text": "1", "seed": 1},
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_text(name) -> None:
    op, input_text, kwargs = GOLDEN_CASES[name]
    assert_golden(name, render_explanation(explain_from_text(op, input_text, **kwargs)))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"op": "relu"}, ConfigError, r"unknown op 'relu'; choose one of conv, maxpool, avgpool"),
        (
            {"input_text": "[[1,2],[3"},
            SpecError,
            r"--input '\[\[1,2\],\[3' is neither a size nor valid JSON \(Expecting ',' delimiter "
            r"at character 9\); give a matrix such as \[\[0,1\],\[2,3\]\] or a size such as 4x4",
        ),
        (
            {"input_text": "[[1,2],[3]]"},
            SpecError,
            r"the input is not rectangular: \[1\] = \[3\] is a row of 1 but \[0\] = \[1, 2\] is "
            r"a row of 2; every row needs the same length",
        ),
        (
            {"input_text": '[[1,"a"]]'},
            SpecError,
            r'the input has "a" at \[0\]\[1\]; every entry must be a number',
        ),
        (
            {"input_text": "[1,2]"},
            SpecError,
            r"the input \[1, 2\] has 1 dimension\(s\); give a matrix such as \[\[0,1\],\[2,3\]\]",
        ),
        ({"input_text": "[[1,NaN]]"}, SpecError, r"the input has NaN at \[0\]\[1\]"),
        ({"input_text": "[[]]"}, SpecError, r"the input has an empty list at \[0\]; give numbers"),
        (
            {"filter_text": "5x5"},
            SpecError,
            r"the 5x5 filter is larger than the 4x4 input padded to 4x4 \(padding valid\); "
            r"use a smaller filter or more padding",
        ),
        (
            {"padding_text": "3"},
            ConfigError,
            r"padding=3 is not smaller than the 3x3 filter; use padding below 3 or 'same'",
        ),
        (
            {"padding_text": "1x"},
            ConfigError,
            r"--padding '1x' must be valid, same, or a number of pixels such as 1 \(or p1\)",
        ),
        ({"stride": 0}, ConfigError, r"stride=0 must be a positive integer such as 1 or 2"),
        ({"stride": -1}, ConfigError, r"stride=-1 must be a positive integer"),
        (
            {"input_text": "64x64"},
            ConfigError,
            r"the input is 64x64x1: explain prints every step, so it is meant for small layers "
            r"up to 32x32x8; use a smaller input",
        ),
        (
            {"input_text": "4x4x9"},
            ConfigError,
            r"the input is 4x4x9: explain prints every step",
        ),
        ({"input_text": "0x2"}, ConfigError, r"--input '0x2': every size must be at least 1"),
        (
            {"input_text": "3x3x2", "filter_text": "[[1,0],[0,1]]"},
            SpecError,
            r"the filter has 1 channel\(s\) but the input has 2; give the filter as a 3-D list",
        ),
        (
            {"filter_text": "2x2x3"},
            ConfigError,
            r"--filter '2x2x3': give the filter size as FhxFw; its channels follow the input's",
        ),
        (
            {"filter_text": "2x2", "size": 2},
            ConfigError,
            r"give either --filter 2x2 or --size 2, not both",
        ),
        (
            {"op": "maxpool", "filter_text": "[[1]]"},
            ConfigError,
            r"maxpool has no weights: --filter '\[\[1\]\]' must be a window size such as 2x2",
        ),
        (
            {"op": "avgpool", "bias": 1.0},
            ConfigError,
            r"avgpool has no bias; --bias applies to conv only",
        ),
    ],
)
def test_errors(kwargs, error, match) -> None:
    args = {"op": "conv", "input_text": "4x4", **kwargs}
    with pytest.raises(error, match=match):
        explain_from_text(args.pop("op"), args.pop("input_text"), **args)


def test_parse_padding() -> None:
    assert [parse_padding(t) for t in ("valid", "SAME", "2", "p1")] == ["valid", "same", 2, 1]


# ----------------------------------------------------------------------------- CLI


def test_cli_text(capsys) -> None:
    assert main(["explain", "maxpool", "--input", COURSE, "--size", "2"]) == 0
    assert capsys.readouterr().out == render_explanation(
        explain_from_text("maxpool", COURSE, size=2)
    )


def test_cli_json(capsys) -> None:
    argv = ["explain", "conv", "--input", "5x5", "--filter", "3x3", "--stride", "2"]
    assert main([*argv, "--padding", "1", "--seed", "0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["steps"]) == 9 and np.array(data["output"]).shape == (3, 3)
    assert data["steps"][0]["position"] == [0, 0]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["explain", "relu", "--input", "2x2"], "unknown op 'relu'"),
        (["explain", "conv", "--input", "[[1,2],[3]]"], "the input is not rectangular"),
        (["explain", "conv", "--input", "4x4", "--filter", "5x5"], "filter is larger than"),
        (["explain", "conv", "--input", "4x4", "--padding", "3"], "padding=3 is not smaller"),
        (
            ["explain", "maxpool", "--input", "4x4", "--stride", "0"],
            "stride=0 must be a positive integer",
        ),
        (["explain", "avgpool", "--input", "40x40"], "meant for small layers"),
    ],
)
def test_cli_errors_are_one_line(capsys, argv, match) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnkit: error: ") and match in lines[0]
