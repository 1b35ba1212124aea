"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class CnnkitError(Exception):
    """Base of every error that is the user's to fix; its message says what and how."""


class SpecError(CnnkitError, ValueError):
    """An architecture spec (notation, YAML or JSON) that cannot be planned."""


class DataError(CnnkitError):
    """A data source that cannot be read, verified or fitted to the model."""


class CheckpointError(CnnkitError):
    """A run directory or weights file that is missing, modified or foreign."""


class ConfigError(CnnkitError, ValueError):
    """A bad option value: an unknown optimizer, a negative learning rate, ..."""


class ImageError(CnnkitError):
    """An image file that cannot be decoded (not an image, truncated, too large, disallowed format)."""


class MissingExtraError(CnnkitError):
    """An optional package that a command needs is not installed; the message names the extra."""


class ImageTooLarge(ImageError):
    """An image whose declared pixel count is over the decoding budget (refused before decoding)."""
