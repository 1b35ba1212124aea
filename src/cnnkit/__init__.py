"""cnnkit: design, train, inspect and serve convolutional neural networks.

The planner (`parse`, `plan`, presets) is pure Python and imports no torch, so
`cnnkit plan` starts instantly; the torch-backed parts (`build`, `load`) are imported on first use; `load` of an .onnx
file runs on ONNX Runtime and never imports torch.
"""

from cnnkit.errors import (
    CheckpointError,
    CnnkitError,
    ConfigError,
    DataError,
    ImageError,
    SpecError,
)
from cnnkit.plan import Plan, plan
from cnnkit.presets import resolve
from cnnkit.spec import Spec, parse

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CnnkitError",
    "ConfigError",
    "DataError",
    "ImageError",
    "Plan",
    "Spec",
    "SpecError",
    "__version__",
    "build",
    "load",
    "parse",
    "plan",
    "resolve",
]


def __getattr__(name: str):
    # torch-backed entry points, imported only when asked for (PEP 562).
    if name == "build":
        from cnnkit.network import build

        return build
    if name == "load":
        from cnnkit.onnx_runtime import load

        return load
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
