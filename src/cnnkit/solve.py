"""Which (filter, stride, padding) maps one shape onto another: the course's quiz run backwards.

    solve("4x4x1", "2x2x3")[0]   # Solution(filter=1, stride=2, padding='valid', filters=3, ...)

Every size comes from `cnnkit.shapes.output_size`. Pure Python: `cnnkit solve` starts instantly,
so this module imports neither NumPy nor torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cnnkit.errors import ConfigError, SpecError
from cnnkit.shapes import Padding, fits_exactly, output_size, padding_text
from cnnkit.spec import parse_shape

KINDS = ("conv", "pool")
MAX_FILTER_LIMIT = 64  # the search is filters x strides x paddings: ~64^3 cases stay instant


@dataclass(frozen=True)
class Solution:
    """One layer that maps IN onto OUT: F x F filter, stride S, padding, K filters."""

    filter: int
    stride: int
    padding: str  # "valid" | "same" | "pN"
    filters: int  # K: conv filters (OUT's depth), or the unchanged depth for pooling
    params: int  # conv: (F*F*C + 1) * K, weights plus one bias per filter; pooling: 0
    exact: bool  # the last window ends on the padded edge; else rows/cols are dropped

    def to_dict(self) -> dict[str, Any]:
        """The `--json` form of one solution."""
        return asdict(self)


def solve(
    in_shape: str | tuple[int, int, int],
    out_shape: str | tuple[int, int, int],
    kind: str = "conv",
    max_filter: int = 11,
) -> list[Solution]:
    """Every square filter F <= max_filter, stride S and padding that maps IN's HxW onto OUT's.

    Shapes are `HxWxC` strings or (H, W, C). Padding is valid, same or pN with 0 < N < F;
    strides run from 1 to max_filter (no further than IN's larger side, past which every stride
    gives the same single output). Sorted by filter, then stride, then padding (valid, same, p1, ...).
    """
    (h, w, c), (out_h, out_w, out_c) = _shape(in_shape, "IN"), _shape(out_shape, "OUT")
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} must be conv or pool")
    if isinstance(max_filter, bool) or not isinstance(max_filter, int):
        raise ConfigError(f"--max-filter {max_filter!r} must be an integer such as 11")
    if not 1 <= max_filter <= MAX_FILTER_LIMIT:
        raise ConfigError(
            f"--max-filter {max_filter} must be between 1 and {MAX_FILTER_LIMIT}, such as 11"
        )
    if kind == "pool" and out_c != c:
        raise SpecError(
            f"pooling keeps the depth, but IN has depth {c} and OUT has {out_c}; "
            f"give OUT a depth of {c}, or use --kind conv to change the depth"
        )
    solutions = []
    for f in range(1, max_filter + 1):
        for s in range(1, min(max_filter, max(h, w)) + 1):
            for padding in _paddings(f):
                if output_size(h, f, s, padding) != out_h or output_size(w, f, s, padding) != out_w:
                    continue
                exact = fits_exactly(h, f, s, padding) and fits_exactly(w, f, s, padding)
                params = (f * f * c + 1) * out_c if kind == "conv" else 0
                solutions.append(Solution(f, s, padding_text(padding), out_c, params, exact))
    return solutions


def _paddings(f: int) -> list[Padding]:
    """valid, same, then p1 .. p(F-1): a border of F or more gives windows of padding alone."""
    return ["valid", "same", *range(1, f)]


def _shape(shape: str | tuple[int, int, int], role: str) -> tuple[int, int, int]:
    if not isinstance(shape, str):
        return tuple(shape)  # type: ignore[return-value]
    try:
        return parse_shape(shape)
    except SpecError as error:
        # The spec parser draws a caret under the bad text on extra lines; the CLI wants one
        # line, and here the shape is IN or OUT rather than a spec's input.
        first = str(error).splitlines()[0]
        raise SpecError(first.replace("input shape", f"{role} shape", 1)) from None
