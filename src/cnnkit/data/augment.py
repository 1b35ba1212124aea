"""The augmentation choices live in `cnnkit.augment` (pure Python, so TrainConfig needs no NumPy);
the loader and older imports find them here too."""

from cnnkit.augment import Augment, parse_augment

__all__ = ["Augment", "parse_augment"]
