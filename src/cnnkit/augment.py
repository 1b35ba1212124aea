"""Augmentation choices, as data: parsed from "translate=2,flip,cutout=8" and applied by the loader.

Pure Python (no NumPy, no torch), so that TrainConfig can check `--augment` when `cnnkit` starts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from cnnkit.errors import ConfigError


@dataclass(frozen=True)
class Augment:
    """Batch augmentations, applied on the device by DeviceLoader; all off by default."""

    translate: int = 0  # random shift by up to ±translate pixels, zeros (black) shifted in
    flip: bool = False  # random horizontal flip; off by default since it changes digits' meaning
    crop: int = 0  # random crop after reflect-padding by `crop` pixels (the CIFAR recipe)
    cutout: int = 0  # zero a random cutout x cutout square, after normalisation (DeVries, 2017)
    # Brightness and contrast: each image scaled about its mean by 1 ± jitter and shifted by
    # ± jitter (in units of its normalised values), for photos; draws follow all the others,
    # so runs without jitter keep their batches bitwise.
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in ("translate", "crop", "cutout"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"augment {name}={value!r} must be a whole number of pixels >= 0")
        if isinstance(self.jitter, bool) or not 0 <= self.jitter < 1:
            raise ConfigError(f"augment jitter={self.jitter!r} must be a fraction in [0, 1)")
        if self.translate and self.crop:
            raise ConfigError(
                f"augment translate={self.translate} and crop={self.crop}: both shift the image "
                f"(translate fills with black, crop with the mirror image); choose one"
            )

    def __str__(self) -> str:
        parts = [
            f.name if f.type in (bool, "bool") else f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name)
        ]
        return ",".join(parts) or "none"


_HELP = "translate=N, flip, crop=N, cutout=N, jitter=F, or none (e.g. 'translate=2,flip')"


def parse_augment(text: str) -> Augment:
    """`"translate=2,flip,cutout=8"` -> Augment(translate=2, flip=True, cutout=8); "none" -> Augment()."""
    values: dict[str, int | bool | float] = {}
    for part in (p.strip() for p in text.split(",")):
        if part in ("", "none"):
            continue
        key, has_value, value = part.partition("=")
        key = key.strip()
        if key == "flip":
            if has_value and value.strip() not in ("1", "true", "0", "false"):
                raise ConfigError(
                    f"--augment {text!r}: flip={value!r} must be true or false; use {_HELP}"
                )
            values["flip"] = not has_value or value.strip() in ("1", "true")
        elif key == "jitter":
            try:
                values["jitter"] = float(value)
            except ValueError:
                raise ConfigError(
                    f"--augment {text!r}: jitter needs a fraction such as 0.2, got {value!r}"
                ) from None
        elif key in ("translate", "crop", "cutout"):
            try:
                number = int(value)
            except ValueError:
                raise ConfigError(
                    f"--augment {text!r}: {key} needs a whole number of pixels, got {value!r}; "
                    f"use e.g. {key}=2"
                ) from None
            if number < 0:
                raise ConfigError(f"--augment {text!r}: {key}={number} must not be negative")
            values[key] = number
        else:
            raise ConfigError(f"--augment {text!r}: unknown augmentation {key!r}; use {_HELP}")
    return Augment(**values)  # type: ignore[arg-type]
