"""Budgets on what a stranger can hand cnnkit: spec and manifest documents, and model sizes.

Pure Python (no torch, no numpy), so the planner's fast path can use it. Issue 11 measured why
each cap exists: a 600-byte YAML bomb took over 30 s and 665 MB, a 3.6 MB JSON spec took 64 s,
a spec or manifest nested 5,000 deep raised a RecursionError of 3,000 lines, a 5,000-digit integer
raised a ValueError, and `fc 2147483647` tried to allocate 960 GB before anything checked it.

    >>> quote(list(range(1000)))
    '[0, 1, 2, 3, 4, 5, ...]'
"""

from __future__ import annotations

import math
import os
import re
import reprlib
import stat
from typing import Any

from cnnkit.errors import ConfigError, SpecError

MAX_SPEC_BYTES = 1 << 20  # a spec file or notation; the largest preset's YAML is under 4 KB
MAX_DEPTH = 64  # nesting of a spec file or manifest; cnnkit writes at most 4 levels
MAX_DIGITS = 12  # digits of a whole number in a spec; every size is under 2^31 (10 digits)
MAX_LAYERS = 1_000  # layers of one spec; the deepest preset has under 100
MAX_NODES = 200_000  # values (scalars and containers) in one spec file or manifest
MAX_PARAMS = 2**31  # parameters of one model: 8 GB of float32 weights, before any gradient
QUOTE_CHARS = 80  # the most of a bad value an error message echoes
# Training keeps, per parameter, its weight, its gradient and up to two optimizer moments
# (Adam), and per activation its value and its gradient: float32 all.
_BYTES_PER_PARAM = 4 * 4
_BYTES_PER_ACTIVATION = 4 * 2


# ----------------------------------------------------------------------------- quoting


class _Short(reprlib.Repr):
    """reprlib with bounded levels and lengths, and whole numbers too long for repr()."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple = 3, 4, 6, 6
        self.maxstring, self.maxother = QUOTE_CHARS, QUOTE_CHARS

    def repr_int(self, value: int, level: int) -> str:
        digits = _digits(value)
        # repr() itself raises ValueError past 4,300 digits (Python's int-to-str limit).
        return repr(value) if digits <= 20 else f"<a {digits:,}-digit number>"


_SHORT = _Short()


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """repr(value) in at most about `limit` characters, for echoing a bad value in an error.

    Bounded in time too: a YAML alias bomb's shared lists are not expanded.
    """
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` itself when short, else its first characters and '...' (no quotes added)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _digits(value: int) -> int:
    """Decimal digits of `value`, without converting it to text (which fails past 4,300)."""
    magnitude = abs(value)
    if magnitude < 10**18:
        return len(str(magnitude))
    estimate = int(magnitude.bit_length() * math.log10(2))  # exact or one short
    return estimate + 1 if magnitude >= 10**estimate else estimate


# ----------------------------------------------------------------------------- documents


def check_document(
    data: Any,
    what: str,
    error: type[Exception] = SpecError,
    max_digits: int = MAX_DIGITS,
) -> None:
    """Refuse a parsed YAML/JSON document nested over MAX_DEPTH, of over MAX_NODES values, with a
    whole number of over `max_digits` digits, or with a list or mapping used twice (a YAML alias,
    which is how a 600-byte bomb expands to gigabytes). One pass, without recursion."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise error(f"{what} holds over {MAX_NODES:,} values; no spec or run needs as many")
        if type(value) is int and _digits(value) > max_digits:
            raise error(
                f"{what} holds a whole number of {_digits(value):,} digits, over the "
                f"{max_digits}-digit cap; use a smaller number"
            )
        if not isinstance(value, (dict, list)):
            continue
        if id(value) in seen:
            raise error(
                f"{what} reuses a value (a YAML anchor and alias, *name); write each value out"
            )
        seen.add(id(value))
        if depth > MAX_DEPTH:
            raise error(
                f"{what} is nested over {MAX_DEPTH} levels deep; cnnkit writes 4 (check the brackets)"
            )
        items = value.values() if isinstance(value, dict) else value
        stack.extend((item, depth + 1) for item in items)


_LONG_NUMBER = re.compile(rf"\d{{{MAX_DIGITS + 1},}}")
_LONG_TOKEN = re.compile(rf"\S{{{QUOTE_CHARS + 1},}}")


def notation_problem(text: str) -> tuple[str, int, int] | None:
    """What `>` notation must not hold, found before parsing, as (message, start, end) for
    spec.parse's caret: a number of over MAX_DIGITS digits (int() refuses 4,300) or a token
    longer than an error message quotes. A text over MAX_SPEC_BYTES or over MAX_LAYERS layers
    (an inception holds two more '>') is refused here at once: parsing it would be slow."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(
            f"the spec is {len(text):,} characters long, over the cap of {MAX_SPEC_BYTES:,}; "
            f"no network needs as many"
        )
    if text.count(">") > 3 * MAX_LAYERS:
        check_layer_count(text.count(">"), "the spec")
    for pattern, problem in (
        (_LONG_NUMBER, f"has over {MAX_DIGITS} digits; every size is under 2^31 (10 digits)"),
        (_LONG_TOKEN, f"is over {QUOTE_CHARS} characters long; no layer option is"),
    ):
        found = pattern.search(text)
        if found:
            return f"{quote(found.group())} {problem}", found.start(), found.end()
    return None


def load_yaml(text: str, name: str) -> Any:
    """The document of a YAML or JSON spec file (JSON is YAML), within MAX_SPEC_BYTES; every
    failure is a SpecError. from_dict then checks it with check_document."""
    import yaml  # imported here so that plain notation never pays for it

    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{name} is {len(text):,} characters long, over the cap of {MAX_SPEC_BYTES:,}; "
            f"no network needs as many"
        )
    # libyaml's loader where installed: the pure-Python one took 64 s over a 3.6 MB JSON spec.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    except RecursionError:  # the pure-Python loader on deep nesting (libyaml caps it itself)
        raise SpecError(f"{name} is nested too deep; a spec needs 4 levels") from None
    except ValueError as error:  # int() past 4,300 digits
        raise SpecError(f"{name} holds a number that cannot be read ({clip(str(error))})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = clip(getattr(error, "problem", None) or "invalid syntax")
        raise SpecError(
            f"{name} is not valid YAML/JSON{where}: {problem}; check the indentation and brackets"
        ) from None


def check_layer_count(count: int, where: str) -> None:
    if count > MAX_LAYERS:
        raise SpecError(
            f"{where} has {count:,} layers, over the cap of {MAX_LAYERS:,}; "
            f"no network needs as many (ResNet-152 has 152)"
        )


# ----------------------------------------------------------------------------- files


def read_regular(
    path: str | os.PathLike, max_bytes: int, what: str, error: type[Exception] = SpecError
) -> bytes:
    """The bytes of `path`, read only if it is a regular file of at most `max_bytes`.

    A FIFO would block a plain open() until a writer comes, and /dev/zero never ends: both are
    refused from fstat before anything is read (as data.images does for image files). OSError
    (a missing file, no permission) passes through to the caller.
    """
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(
                f"{what} {os.fspath(path)!r} is not a regular file (a FIFO, device or socket); "
                f"give the file itself"
            )
        if info.st_size > max_bytes:
            raise error(
                f"{what} {os.fspath(path)!r} is {info.st_size:,} bytes, over the cap of "
                f"{max_bytes:,}; it is not a file cnnkit wrote"
            )
        # read(n) allocates n bytes up front: ask for what fstat saw, plus one to see growth.
        data = file.read(info.st_size + 1)
    if len(data) > max_bytes or len(data) > info.st_size:  # it grew while being read
        raise error(f"{what} {os.fspath(path)!r} is over the cap of {max_bytes:,} bytes")
    return data


# ----------------------------------------------------------------------------- model size


def check_model(network_plan: Any) -> None:
    """Refuse a model of more than MAX_PARAMS parameters, from its plan (cnnkit.plan.Plan),
    before torch allocates anything."""
    params = network_plan.totals["params"]
    if params > MAX_PARAMS:
        raise SpecError(
            f"the model has {params:,} parameters "
            f"({_size(params * 4)} of float32 weights), over the budget of 2^31 "
            f"({MAX_PARAMS:,}); use fewer or narrower layers, or downsample before flatten"
        )


def training_bytes(network_plan: Any, batch_size: int) -> int:
    """Memory that one training step of `batch_size` images needs, at the least.

    Weights, gradients and two optimizer moments per parameter; each layer's output and its
    gradient per image; the input batch itself. float32 throughout.
    """
    totals = network_plan.totals
    height, width, channels = network_plan.input_shape
    per_image = totals["activation_bytes"] * 2 + height * width * channels * 4
    return totals["params"] * _BYTES_PER_PARAM + per_image * batch_size


def check_training(network_plan: Any, batch_size: int, available: int | None = None) -> None:
    """check_model, then refuse a training step that needs more memory than is available."""
    check_model(network_plan)
    available = available_memory() if available is None else available
    needed = training_bytes(network_plan, batch_size)
    if available is not None and needed > available:
        raise ConfigError(
            f"one training step of {batch_size} images of {_shape(network_plan.input_shape)} "
            f"needs at least {_size(needed)}, more than the {_size(available)} of memory "
            f"available; use a smaller --input, --batch-size or model"
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable); None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(count: int) -> str:
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count / 10**3:,.1f} kB"


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)
