"""Argument types shared by the subcommands: a bad value is a one-line usage error, exit 2."""

from __future__ import annotations

import argparse
import re


def non_negative_int(text: str) -> int:
    """A seed or count that may be 0: `--seed -1` is refused before anything runs."""
    match = re.fullmatch(r"\s*[+-]?([0-9]+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{_quote(text)} is not a whole number")
    if len(match[1]) > 18:  # int() refuses 4,300 digits; no count or seed needs 19
        raise argparse.ArgumentTypeError(f"{_clip(text)} has too many digits; use a smaller number")
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; use 0 or more")
    return value


def finite_float(text: str) -> float:
    """A number such as 0.5; nan and inf are refused, as they are in matrix literals."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_quote(text)} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{_quote(text)} is not a finite number")
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
        help="CPU threads (default: the cores other running threads leave free, or OMP_NUM_THREADS)",
    )


# torch.manual_seed overflows past 64 bits and numpy wants a non-negative seed; 32 bits is what
# every generator accepts.
MAX_SEED = 2**32 - 1
# Past float32's 3.4e38 torch's optimizer raises a RuntimeError (--lr 1e308, issue 11). Below
# the cap a huge rate diverges, and training reports the nan itself (1e6 in tests/test_train.py).
MAX_LR = 1e9


def seed_int(text: str) -> int:
    """A random seed in [0, 2^32): `--seed -1` and `--seed 99999999999999999999999` are refused."""
    value = non_negative_int(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"{_clip(text)} is over 2^32 - 1 ({MAX_SEED:,}); use a seed from 0 to {MAX_SEED}"
        )
    return value


def learning_rate(text: str) -> float:
    """A finite learning rate of at most MAX_LR: `--lr 1e308` is refused (train.validate
    refuses 0 and negative rates, for the API too)."""
    value = finite_float(text)
    if value > MAX_LR:
        raise argparse.ArgumentTypeError(
            f"{_clip(text)} is over {MAX_LR:g}, past any learning rate that trains; "
            f"use one such as 0.1"
        )
    return value


def _clip(text: str) -> str:
    from cnnkit.budgets import clip

    return clip(text)


def _quote(text: str) -> str:
    from cnnkit.budgets import quote

    return quote(text)


def add_foreign_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    """--input and --classes, for an .onnx model without cnnkit's metadata (predict, serve)."""
    for flag, text in (("--input", "HxWxC, e.g. 28x28x1"), ("--classes", "a,b,c or a file")):
        parser.add_argument(flag, help=f"{text}: for an .onnx model not made by 'cnnkit export'")


def only_for_onnx(args: argparse.Namespace) -> None:
    """ConfigError when --input or --classes is given for a run directory (predict, serve)."""
    from cnnkit.errors import ConfigError

    if args.input is not None or args.classes is not None:
        raise ConfigError(
            f"--input and --classes are for an .onnx model; {args.run} is a run, which records both"
        )
