"""The NumPy reference against torch in float64: forward and every gradient within 1e-10."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import reference
from cnnkit.errors import ConfigError, SpecError
from cnnkit.shapes import output_size, pad_amounts

PADDINGS = ["valid", "same", 1, 2]


def assert_close(actual: np.ndarray, expected: torch.Tensor) -> None:
    expected = expected.detach().numpy()
    assert actual.shape == expected.shape
    # Relative to the largest entry: entries near zero would make a per-element ratio meaningless.
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * scale)


def torch_pad(x: torch.Tensor, kernel, stride, padding, value: float = 0.0) -> torch.Tensor:
    """SAME and pN as an explicit F.pad, so torch sees the same (asymmetric) border."""
    (top, bottom), (left, right) = (
        pad_amounts(n, f, s, padding) for n, f, s in zip(x.shape[2:], kernel, stride, strict=True)
    )
    return F.pad(x, (left, right, top, bottom), value=value)


def allowed(paddings, filter_size):
    """The notation's paddings for a filter: valid, same and pN with N < filter."""
    return [p for p in paddings if isinstance(p, str) or p < filter_size]


def check_conv(x, k, fh, fw, stride, padding, rng) -> None:
    weight = rng.standard_normal((k, x.shape[1], fh, fw))
    bias = rng.standard_normal(k)
    out = reference.conv2d_forward(x, weight, bias, stride, padding)
    grad_out = rng.standard_normal(out.shape)
    grad_x, grad_w, grad_b = reference.conv2d_backward(grad_out, x, weight, stride, padding)

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    t_out = F.conv2d(torch_pad(tx, (fh, fw), (stride, stride), padding), tw, tb, stride=stride)
    t_out.backward(torch.tensor(grad_out))
    assert_close(out, t_out)
    assert_close(grad_x, tx.grad)
    assert_close(grad_w, tw.grad)
    assert_close(grad_b, tb.grad)


def check_pool(x, f, stride, padding, rng) -> None:
    kernel, strides = (f, f), (stride, stride)
    out_max = reference.max_pool2d_forward(x, f, stride, padding)
    out_avg = reference.avg_pool2d_forward(x, f, stride, padding)
    grad_out = rng.standard_normal(out_max.shape)

    tx = torch.tensor(x, requires_grad=True)
    t_max = F.max_pool2d(torch_pad(tx, kernel, strides, padding, -np.inf), f, stride)
    t_max.backward(torch.tensor(grad_out))
    assert_close(out_max, t_max)
    assert_close(reference.max_pool2d_backward(grad_out, x, f, stride, padding), tx.grad)

    tx = torch.tensor(x, requires_grad=True)
    ones = torch.ones_like(tx)
    # Padding excluded from the mean: divide by the window's share of real pixels.
    t_avg = F.avg_pool2d(torch_pad(tx, kernel, strides, padding), f, stride) / F.avg_pool2d(
        torch_pad(ones, kernel, strides, padding), f, stride
    )
    t_avg.backward(torch.tensor(grad_out))
    assert_close(out_avg, t_avg)
    assert_close(reference.avg_pool2d_backward(grad_out, x, f, stride, padding), tx.grad)


CONV_CASES = [
    (c, k, fh, fw, stride, padding)
    for c, k, fh, fw in [(1, 1, 3, 3), (3, 2, 2, 3), (2, 4, 5, 3), (4, 3, 1, 1)]
    for stride in (1, 2, 3)
    for padding in allowed(PADDINGS, min(fh, fw))
]
POOL_CASES = [
    (c, f, stride, padding)
    for c, f in [(1, 2), (3, 3), (2, 4)]
    for stride in (1, 2, 3)
    for padding in allowed(PADDINGS, f)
]


@pytest.mark.parametrize(("c", "k", "fh", "fw", "stride", "padding"), CONV_CASES)
def test_conv_matches_torch(c, k, fh, fw, stride, padding) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, c, 9, 7))
    check_conv(x, k, fh, fw, stride, padding, rng)


@pytest.mark.parametrize(("c", "f", "stride", "padding"), POOL_CASES)
def test_pool_matches_torch(c, f, stride, padding) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, c, 8, 7))
    check_pool(x, f, stride, padding, rng)


def test_conv_same_matches_torch_same_for_odd_filters() -> None:
    """For an odd filter at stride 1 SAME is symmetric, so torch's own padding='same' agrees."""
    rng = np.random.default_rng(0)
    x, weight = rng.standard_normal((1, 2, 6, 5)), rng.standard_normal((3, 2, 3, 5))
    expected = F.conv2d(torch.tensor(x), torch.tensor(weight), padding="same")
    assert_close(reference.conv2d_forward(x, weight, None, 1, "same"), expected)


def test_avg_pool_symmetric_padding_matches_count_include_pad_false() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 7, 7))
    expected = F.avg_pool2d(torch.tensor(x), 3, 2, padding=1, count_include_pad=False)
    assert_close(reference.avg_pool2d_forward(x, 3, 2, 1), expected)


@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    fh=st.integers(1, 4),
    fw=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same", 1, 2, 3]),
)
def test_random_shapes_match_torch(data, c, h, w, fh, fw, stride, padding) -> None:
    if not isinstance(padding, str) and padding >= min(fh, fw):
        padding = "valid"
    hp = h + sum(pad_amounts(h, fh, stride, padding))
    wp = w + sum(pad_amounts(w, fw, stride, padding))
    if fh > hp or fw > wp:
        with pytest.raises(SpecError, match="filter is larger than"):
            reference.conv2d_forward(
                np.zeros((1, c, h, w)), np.zeros((1, c, fh, fw)), None, stride, padding
            )
        return
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((2, c, h, w))
    check_conv(x, data.draw(st.integers(1, 3)), fh, fw, stride, padding, rng)
    if fh <= hp and fh <= wp:
        check_pool(x, fh, stride, padding, rng)


# ----------------------------------------------------------------------------- course examples

COURSE_MATRIX = [[0, 1, 0.5, 10], [2, 2.5, 1, -8], [4, 0, 5, 6], [15, 1, 2, 3]]


def test_course_max_and_average_pooling() -> None:
    x = np.array(COURSE_MATRIX, dtype=float)[None, None]
    assert reference.max_pool2d_forward(x, 2).tolist() == [[[[2.5, 10], [15, 6]]]]
    assert reference.avg_pool2d_forward(x, 2).tolist() == [[[[1.375, 0.875], [5, 4]]]]


@pytest.mark.parametrize(
    ("n", "f", "s", "padding", "expected"),
    [
        (32, 8, 2, 1, 14),  # the course: floor((32 - 8 + 2*1)/2) + 1
        (32, 8, 2, "same", 16),  # TensorFlow SAME: ceil(32/2)
        (32, 8, 2, "valid", 13),  # TensorFlow VALID: ceil((32 - 8 + 1)/2)
        (28, 5, 1, "same", 28),
        (28, 5, 1, "valid", 24),
        (5, 2, 2, "same", 3),
    ],
)
def test_course_output_sizes(n, f, s, padding, expected) -> None:
    assert output_size(n, f, s, padding) == expected
    out = reference.conv2d_forward(np.zeros((1, 1, n, n)), np.zeros((1, 1, f, f)), None, s, padding)
    assert out.shape == (1, 1, expected, expected)


def test_same_puts_the_extra_pixel_bottom_right() -> None:
    """5 wide, filter 2, stride 2: SAME adds one zero on the right only, so the last window is [4, pad]."""
    x = np.arange(5.0).reshape(1, 1, 1, 5)
    out = reference.conv2d_forward(x, np.ones((1, 1, 1, 2)), None, (1, 2), "same")
    assert out.tolist() == [[[[1.0, 5.0, 4.0]]]]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stride": 0}, ConfigError, r"stride=0 must be a positive integer such as 1 or 2"),
        ({"stride": -2}, ConfigError, r"stride=-2 must be a positive integer"),
        ({"stride": 1.5}, ConfigError, r"stride=1.5 must be an integer or a pair"),
        (
            {"padding": 3},
            ConfigError,
            r"padding=3 is not smaller than the 3x3 filter; use padding below 3 or 'same'",
        ),
        (
            {"padding": "full"},
            ConfigError,
            r"padding='full' must be 'valid', 'same' or an integer N",
        ),
        ({"padding": -1}, ConfigError, r"padding=-1 must be 'valid', 'same' or an integer N >= 0"),
    ],
)
def test_bad_arguments(kwargs, error, match) -> None:
    args = {"stride": 1, "padding": "valid", **kwargs}
    with pytest.raises(error, match=match):
        reference.max_pool2d_forward(np.zeros((1, 1, 5, 5)), 3, **args)


def test_filter_larger_than_padded_input() -> None:
    with pytest.raises(
        SpecError,
        match=r"the 5x5 filter is larger than the 2x2 input padded to 4x4 \(padding p1\); use a smaller filter or more padding",
    ):
        reference.conv2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 5, 5)), padding=1)


def test_weight_channels_must_match() -> None:
    with pytest.raises(
        SpecError, match=r"weight of shape \(1, 2, 3, 3\) must be \(K, C, Fh, Fw\) with C=1"
    ):
        reference.conv2d_forward(np.zeros((1, 1, 4, 4)), np.zeros((1, 2, 3, 3)))
