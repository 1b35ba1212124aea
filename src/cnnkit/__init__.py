"""cnnkit: design, train, inspect and serve convolutional neural networks.

    import cnnkit
    cnnkit.plan("28x28x1 > conv 8@3x3 same > relu > pool 2 > flatten > fc 10")  # shapes, params
    model = cnnkit.build("lenet5")                        # the torch module of a spec
    result = cnnkit.fit("mnist-mini", epochs=1)           # train into runs/digits-mnist-mini
    result = cnnkit.fit((x, y), model="digits")           # or arrays (N, H, W[, C]) in memory
    cnnkit.evaluate(result.run)                           # accuracy and per-class scores
    cnnkit.predict(result.run, ["seven.png"], top_k=3)    # top classes of image files
    classifier = cnnkit.load(result.run)                  # keep a model for many predictions

The planner (`parse`, `plan`, presets) is pure Python and imports no torch, so `cnnkit plan`
starts instantly. `build`, `fit`, `load`, `evaluate` and `predict` import torch on first call;
`load` and `predict` of an .onnx file run on ONNX Runtime and never import torch.
"""

import sys as _sys
import types as _types

from cnnkit.api import build, evaluate, fit, load, predict
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
    "evaluate",
    "fit",
    "load",
    "parse",
    "plan",
    "predict",
    "resolve",
]


class _Package(_types.ModuleType):
    """`cnnkit.predict` and `cnnkit.plan` stay the functions once their modules are imported.

    Importing a submodule sets it as an attribute of its package, which would replace the
    function of the same name; the modules stay importable (`from cnnkit.predict import
    Classifier`) from sys.modules.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("plan", "predict") and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
