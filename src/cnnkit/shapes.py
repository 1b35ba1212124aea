"""Output-size arithmetic of convolution and pooling, the course's formulas in one place.

Padding is `"valid"` (none), `"same"` (TensorFlow's SAME: out = ceil(n/s), extra pixel at the
bottom/right) or an int N (N zeros on every side: out = floor((n + 2N - f)/s) + 1).
Pure Python: the planner, `solve`, the NumPy reference and `build` all take their sizes from here.
"""

from __future__ import annotations

Padding = str | int  # "valid" | "same" | N


def pad_amounts(n: int, f: int, s: int, padding: Padding) -> tuple[int, int]:
    """Zeros added (before, after) along one axis of size n for filter f and stride s.

    >>> pad_amounts(5, 2, 2, "same")   # out = 3, total = (3-1)*2 + 2 - 5 = 1
    (0, 1)
    """
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        out = -(-n // s)
        total = max((out - 1) * s + f - n, 0)
        return (total // 2, total - total // 2)
    return (int(padding), int(padding))


def output_size(n: int, f: int, s: int, padding: Padding) -> int:
    """Output length along one axis; 0 or less means the filter does not fit.

    >>> output_size(32, 8, 2, 1)   # floor((32 - 8 + 2)/2) + 1
    14
    >>> output_size(32, 8, 2, "same"), output_size(32, 8, 2, "valid")   # ceil(32/2), ceil(25/2)
    (16, 13)
    """
    before, after = pad_amounts(n, f, s, padding)
    return (n + before + after - f) // s + 1


def fits_exactly(n: int, f: int, s: int, padding: Padding) -> bool:
    """True when the filter's last step lands on the padded edge: (n + 2p - f) divisible by s."""
    before, after = pad_amounts(n, f, s, padding)
    return (n + before + after - f) % s == 0


def padding_text(padding: Padding) -> str:
    """The notation's spelling of a padding: `valid`, `same` or `pN`."""
    return padding if isinstance(padding, str) else f"p{padding}"
