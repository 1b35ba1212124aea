"""NumPy reference of conv2d, max pooling and average pooling, forward and backward, via im2col.

Slow and plain on purpose: it is the independent check of the torch layers and the engine of
`cnnkit explain`. Arrays are float64 and channels-first: input (N, C, H, W), weight (K, C, Fh, Fw).
Padding is "valid", "same" (TensorFlow SAME, the extra pixel at the bottom/right) or an int N;
every size comes from `cnnkit.shapes`. Max pooling pads with -inf; average pooling excludes
the padding from the mean (divides by the count of real pixels in each window).
NumPy only: no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnkit.errors import ConfigError, SpecError
from cnnkit.shapes import Padding, output_size, pad_amounts, padding_text

IntPair = int | tuple[int, int]


# ----------------------------------------------------------------------------- arguments


def normalize_pair(value: IntPair, name: str) -> tuple[int, int]:
    """`stride=2` or `stride=(2, 1)` -> (2, 1) after checking both are positive integers."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair)
    ):
        raise ConfigError(f"{name}={value!r} must be an integer or a pair of integers, such as 2")
    if min(pair) < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer such as 1 or 2")
    return (int(pair[0]), int(pair[1]))


def normalize_padding(padding: Padding, kernel_size: tuple[int, int]) -> Padding:
    """Check `padding` ("valid", "same" or 0 <= N < filter) and return it; 0 becomes "valid"."""
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ConfigError(f"padding={padding!r} must be 'valid', 'same' or an integer N")
        return padding
    if not isinstance(padding, (int, np.integer)) or isinstance(padding, bool) or padding < 0:
        raise ConfigError(f"padding={padding!r} must be 'valid', 'same' or an integer N >= 0")
    # A border as wide as the filter gives windows that see only padding: useless for conv and
    # undefined for pooling, so the project's notation allows pN only for N < filter.
    if padding >= min(kernel_size):
        fh, fw = kernel_size
        raise ConfigError(
            f"padding={int(padding)} is not smaller than the {fh}x{fw} filter; "
            f"use padding below {min(kernel_size)} or 'same'"
        )
    return "valid" if padding == 0 else int(padding)


@dataclass(frozen=True)
class Geometry:
    """A checked layer on an (H, W) input: every size the forward and backward passes need."""

    in_hw: tuple[int, int]  # (H, W)
    kernel: tuple[int, int]  # (Fh, Fw)
    stride: tuple[int, int]  # (sh, sw)
    padding: Padding  # "valid" | "same" | N, with 0 < N < filter
    pads: tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))
    padded_hw: tuple[int, int]  # (H + top + bottom, W + left + right)
    out_hw: tuple[int, int]  # (Ho, Wo), from shapes.output_size


def geometry(
    hw: tuple[int, int], kernel_size: IntPair, stride: IntPair, padding: Padding
) -> Geometry:
    """Check a conv or pooling layer on an (H, W) input and work out its sizes.

    >>> geometry((5, 5), 3, 2, "same").out_hw
    (3, 3)
    """
    kernel = normalize_pair(kernel_size, "kernel_size")
    steps = normalize_pair(stride, "stride")
    padding = normalize_padding(padding, kernel)
    pads = tuple(pad_amounts(n, f, s, padding) for n, f, s in zip(hw, kernel, steps, strict=True))
    padded = tuple(n + sum(p) for n, p in zip(hw, pads, strict=True))
    if any(f > n for f, n in zip(kernel, padded, strict=True)):
        raise SpecError(
            f"the {kernel[0]}x{kernel[1]} filter is larger than the {hw[0]}x{hw[1]} input "
            f"padded to {padded[0]}x{padded[1]} (padding {padding_text(padding)}); "
            "use a smaller filter or more padding"
        )
    out_hw = tuple(output_size(n, f, s, padding) for n, f, s in zip(hw, kernel, steps, strict=True))
    return Geometry(tuple(hw), kernel, steps, padding, pads, padded, out_hw)  # type: ignore


# ----------------------------------------------------------------------------- im2col


def pad(x: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]], value: float = 0.0):
    """Pad the last two axes of (N, C, H, W) by ((top, bottom), (left, right)) with `value`."""
    return np.pad(x, ((0, 0), (0, 0), *pads), constant_values=value)


def windows(x_padded: np.ndarray, geo: Geometry) -> np.ndarray:
    """Every filter window of a padded input, as a read-only view.

    (N, C, Hp, Wp) -> (N, C, Ho, Wo, Fh, Fw); window [.., i, j, :, :] starts at (i*sh, j*sw).
    """
    view = np.lib.stride_tricks.sliding_window_view(x_padded, geo.kernel, axis=(2, 3))
    view = view[:, :, :: geo.stride[0], :: geo.stride[1]]
    assert view.shape[2:4] == geo.out_hw, (view.shape, geo)  # shapes.py and the view agree
    return view


def im2col(x_padded: np.ndarray, geo: Geometry) -> np.ndarray:
    """(N, C, Hp, Wp) -> (N, Ho*Wo, C*Fh*Fw): one row per output position, channel-major."""
    view = windows(x_padded, geo)
    n, c, ho, wo, fh, fw = view.shape
    return view.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho * wo, c * fh * fw)


def col2im(grad_windows: np.ndarray, geo: Geometry) -> np.ndarray:
    """Sum window gradients back onto the unpadded input: (N, C, Ho, Wo, Fh, Fw) -> (N, C, H, W)."""
    n, c, ho, wo, fh, fw = grad_windows.shape
    sh, sw = geo.stride
    grad = np.zeros((n, c, *geo.padded_hw))
    # One strided slice per filter offset: Fh*Fw NumPy ops instead of Ho*Wo Python steps.
    for a in range(fh):
        for b in range(fw):
            grad[:, :, a : a + sh * ho : sh, b : b + sw * wo : sw] += grad_windows[..., a, b]
    # Padding cells collect gradient too; cropping drops it, as padding is not an input.
    (top, bottom), (left, right) = geo.pads
    hp, wp = geo.padded_hw
    return grad[:, :, top : hp - bottom, left : wp - right]


def real_counts(geo: Geometry) -> np.ndarray:
    """Number of real (unpadded) pixels in each window: (Ho, Wo)."""
    ones = pad(np.ones((1, 1, *geo.in_hw)), geo.pads)
    return windows(ones, geo).sum(axis=(4, 5))[0, 0]


def _as_input(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4:
        raise SpecError(f"input of shape {x.shape} must be 4-D (N, C, H, W)")
    return x


# ----------------------------------------------------------------------------- convolution


def _as_weight(weight: np.ndarray, x: np.ndarray) -> np.ndarray:
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4 or weight.shape[1] != x.shape[1]:
        raise SpecError(
            f"weight of shape {weight.shape} must be (K, C, Fh, Fw) with C={x.shape[1]}, "
            "the input's channels"
        )
    return weight


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntPair = 1,
    padding: Padding = "valid",
) -> np.ndarray:
    """Cross-correlation as torch's conv2d; zero padding.

    x (N, C, H, W), weight (K, C, Fh, Fw), bias (K,) or None -> (N, K, Ho, Wo).
    """
    x = _as_input(x)
    weight = _as_weight(weight, x)
    geo = geometry(x.shape[2:], weight.shape[2:], stride, padding)
    k = weight.shape[0]
    cols = im2col(pad(x, geo.pads), geo)  # (N, Ho*Wo, C*Fh*Fw)
    out = cols @ weight.reshape(k, -1).T  # (N, Ho*Wo, K)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64).reshape(k)
    return out.transpose(0, 2, 1).reshape(x.shape[0], k, *geo.out_hw)


def conv2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: IntPair = 1,
    padding: Padding = "valid",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of conv2d_forward: grad_out (N, K, Ho, Wo) -> (d x, d weight, d bias)."""
    x = _as_input(x)
    weight = _as_weight(weight, x)
    geo = geometry(x.shape[2:], weight.shape[2:], stride, padding)
    n, c = x.shape[:2]
    k, _, fh, fw = weight.shape
    ho, wo = geo.out_hw
    cols = im2col(pad(x, geo.pads), geo)  # (N, Ho*Wo, C*Fh*Fw)
    grad = np.asarray(grad_out, dtype=np.float64).reshape(n, k, ho * wo).transpose(0, 2, 1)
    grad_weight = np.einsum("npk,npq->kq", grad, cols).reshape(weight.shape)
    grad_bias = grad.sum(axis=(0, 1))  # (K,)
    grad_cols = grad @ weight.reshape(k, -1)  # (N, Ho*Wo, C*Fh*Fw)
    grad_windows = grad_cols.reshape(n, ho, wo, c, fh, fw).transpose(0, 3, 1, 2, 4, 5)
    return col2im(grad_windows, geo), grad_weight, grad_bias


# ----------------------------------------------------------------------------- pooling


def max_pool2d_forward(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None, padding: Padding = "valid"
) -> np.ndarray:
    """Max of each window, padding with -inf; stride defaults to the window.

    (N, C, H, W) -> (N, C, Ho, Wo).
    """
    x = _as_input(x)
    geo = geometry(x.shape[2:], kernel_size, kernel_size if stride is None else stride, padding)
    return windows(pad(x, geo.pads, -np.inf), geo).max(axis=(4, 5))


def max_pool2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = "valid",
) -> np.ndarray:
    """Route each output gradient to its window's argmax (the first, as torch): -> (N, C, H, W)."""
    x = _as_input(x)
    geo = geometry(x.shape[2:], kernel_size, kernel_size if stride is None else stride, padding)
    view = windows(pad(x, geo.pads, -np.inf), geo)
    flat = view.reshape(*view.shape[:4], -1)  # (N, C, Ho, Wo, Fh*Fw)
    hot = np.zeros_like(flat)
    np.put_along_axis(hot, flat.argmax(axis=-1)[..., None], 1.0, axis=-1)
    grad = np.asarray(grad_out, dtype=np.float64)[..., None, None]
    return col2im(hot.reshape(view.shape) * grad, geo)


def avg_pool2d_forward(
    x: np.ndarray, kernel_size: IntPair, stride: IntPair | None = None, padding: Padding = "valid"
) -> np.ndarray:
    """Mean of the real pixels of each window (padding excluded); stride defaults to the window.

    (N, C, H, W) -> (N, C, Ho, Wo).
    """
    x = _as_input(x)
    geo = geometry(x.shape[2:], kernel_size, kernel_size if stride is None else stride, padding)
    return windows(pad(x, geo.pads), geo).sum(axis=(4, 5)) / real_counts(geo)


def avg_pool2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: Padding = "valid",
) -> np.ndarray:
    """Spread each output gradient evenly over its window's real pixels: -> (N, C, H, W)."""
    x = _as_input(x)
    geo = geometry(x.shape[2:], kernel_size, kernel_size if stride is None else stride, padding)
    share = np.asarray(grad_out, dtype=np.float64) / real_counts(geo)  # (N, C, Ho, Wo)
    return col2im(np.broadcast_to(share[..., None, None], (*share.shape, *geo.kernel)), geo)
