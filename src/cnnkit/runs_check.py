"""A run manifest checked field by field before anything uses it (runs.read_manifest, save_model).

Issue 11 edited manifests by hand: `resize: "../../x"` loaded, then every request answered 422;
a mean of 1e308 with a std of 1e-300 printed `nan%`; a class name holding a newline broke
`report`; `weights` as a string raised AttributeError. Each rule is one `if ...: raise`, naming
the field and quoting at most 80 characters of what it holds. Keys not named here (such as
`from`, the lineage another part of cnnkit adds) are left alone.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from cnnkit.budgets import check_document, quote
from cnnkit.errors import CheckpointError
from cnnkit.spec import check_shape
from cnnkit.train_config import RESIZE_MODES

FORMAT = "cnnkit-run"
FORMAT_VERSION = 1
REQUIRED = ("spec", "class_names", "input_shape", "preprocessing", "weights")
MAX_MANIFEST_BYTES = 16 << 20  # cnnkit writes under 100 kB; a 1 MB spec plus 100,000 names fit
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_NAME_CHARS = 200  # a class name is printed in tables and on plots
# 18 digits: weights' byte counts and MACs are whole numbers that outgrow a spec's 12.
MAX_MANIFEST_DIGITS = 18
# In [0, 1] pixel units. A std of 1e-300 turns every pixel into inf (issue 11); cnnkit's own
# channel_stats never writes under 1/255 divided by the square root of the pixel count.
STD_RANGE = (1e-6, 1e6)
MAX_ABS_MEAN = 1e6
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_manifest(manifest: Any, path: Path, version: str) -> None:
    """Refuse a manifest that cnnkit could not have written; `version` is cnnkit's, for the
    message about newer formats."""
    _check_format(manifest, path, version)
    check_document(manifest, str(path), CheckpointError, MAX_MANIFEST_DIGITS)
    missing = [key for key in REQUIRED if key not in manifest]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; the run is damaged; retrain it")
    if not isinstance(manifest["spec"], dict):
        raise CheckpointError(
            f"{path}: spec must be a mapping with input and layers, got {quote(manifest['spec'])}"
        )
    check_class_names(manifest["class_names"], f"{path}: class_names")
    shape = manifest["input_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(n) is int for n in shape)):
        raise CheckpointError(f"{path}: input_shape must be [H, W, C], got {quote(shape)}")
    try:
        check_shape(tuple(shape), f"{path}: input_shape")
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    _check_preprocessing(manifest["preprocessing"], shape[2], path)
    _check_weights_record(manifest["weights"], path)


def _check_format(manifest: Any, path: Path, version: str) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(
            f"{path} is not a cnnkit run manifest (format {quote(found)}, expected {FORMAT!r})"
        )
    number = manifest.get("format_version")
    if type(number) is int and number > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {quote(number)}, newer than this cnnkit ({version}) reads "
            f"(up to {FORMAT_VERSION}); upgrade cnnkit to load it"
        )
    if type(number) is not int or number < 1:
        raise CheckpointError(
            f"{path} has format_version {quote(number)}, which no cnnkit writes; "
            f"the manifest is damaged"
        )


def check_class_names(names: Any, where: str, error: type[Exception] = CheckpointError) -> None:
    """A list of 1 to MAX_CLASSES short, printable names: tables and plots show them."""
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise error(f"{where} must be a list of names, got {quote(names)}")
    if len(names) > MAX_CLASSES:
        raise error(f"{where} has {len(names):,} names, over the cap of {MAX_CLASSES:,}")
    for name in names:
        if not name.strip() or len(name) > MAX_NAME_CHARS or _CONTROL.search(name):
            raise error(
                f"{where}: class name {quote(name)} must be 1 to {MAX_NAME_CHARS} printable "
                f"characters, without newlines or other control characters; rename the class"
            )


def _check_preprocessing(pre: Any, channels: int, path: Path) -> None:
    expected = f"{{resize, mean, std}} with one mean and std per channel ({channels})"
    if not (
        isinstance(pre, dict)
        and all(isinstance(pre.get(k), list) and len(pre[k]) == channels for k in ("mean", "std"))
        and all(type(v) in (int, float) for k in ("mean", "std") for v in pre[k])
    ):
        raise CheckpointError(f"{path}: preprocessing must be {expected}, got {quote(pre)}")
    if pre.get("resize", "letterbox") not in RESIZE_MODES:
        raise CheckpointError(
            f"{path}: preprocessing resize {quote(pre.get('resize'))} is not one of "
            f"{', '.join(RESIZE_MODES)}; the manifest was edited; restore it"
        )
    if not all(math.isfinite(m) and abs(m) <= MAX_ABS_MEAN for m in pre["mean"]):
        raise CheckpointError(
            f"{path}: preprocessing mean {quote(pre['mean'])} must be finite numbers of at most "
            f"{MAX_ABS_MEAN:g} in size (pixels are in [0, 1]); the manifest was edited"
        )
    low, high = STD_RANGE
    if not all(math.isfinite(s) and low <= s <= high for s in pre["std"]):
        raise CheckpointError(
            f"{path}: preprocessing std {quote(pre['std'])} must be finite numbers from {low:g} "
            f"to {high:g} (dividing by less overflows); the manifest was edited"
        )


def _check_weights_record(record: Any, path: Path) -> None:
    """A mapping; read_verified checks its sha256 and bytes against the file itself."""
    if not isinstance(record, dict):
        raise CheckpointError(
            f"{path}: weights must be {{file, sha256, bytes}} as cnnkit writes them, got "
            f"{quote(record)}; the run is damaged or was not written by cnnkit; retrain it"
        )
