"""Argument types shared by the subcommands: a bad value is a one-line usage error, exit 2."""

from __future__ import annotations

import argparse


def non_negative_int(text: str) -> int:
    """A seed or count that may be 0: `--seed -1` is refused before anything runs."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; use 0 or more")
    return value


def finite_float(text: str) -> float:
    """A number such as 0.5; nan and inf are refused, as they are in matrix literals."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """A count of at least 1 (`--threads 0` is refused before anything runs)."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def add_threads(parser: argparse.ArgumentParser) -> None:
    """--threads N for train, evaluate and predict; the default is `cnnkit.threads`'s rule."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads (default: the cores the load average leaves free, or OMP_NUM_THREADS)",
    )
