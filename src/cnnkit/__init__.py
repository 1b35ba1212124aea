"""cnnkit: design, train, inspect and serve convolutional neural networks.

The planner (`parse`, `plan`, presets) is pure Python and imports no torch, so
`cnnkit plan` starts instantly; the torch-backed parts are imported on first use.
"""

from cnnkit.errors import CheckpointError, CnnkitError, ConfigError, DataError, ImageError, SpecError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CnnkitError",
    "ConfigError",
    "DataError",
    "ImageError",
    "SpecError",
    "__version__",
]
