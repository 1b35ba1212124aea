"""TrainConfig: every choice of a training run, the recipes, and the learning-rate schedules.

Pure Python (no torch, no NumPy), so that `cnnkit train --help` builds its options from these
names and `cnnkit plan` stays instant. The loop that uses them is in `cnnkit.train`.

    config = TrainConfig.for_model("lenet5", epochs=2)     # defaults, then the recipe, then yours
    learning_rate(config, step=0, total_steps=1000)        # the schedule: a pure function
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit import presets
from cnnkit.augment import parse_augment
from cnnkit.errors import ConfigError
from cnnkit.threads import check_threads

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "constant")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
RESIZE_MODES = ("letterbox", "stretch", "crop")
DATA_MEMORY = ("auto", "ram", "disk")
ARRAYS_PREFIX = "<arrays"  # `data` of a run trained from arrays in memory: "<arrays 1000x28x28x1>"

# ----------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Every choice of a training run. The defaults are the tuned `digits` recipe for MNIST:
    99.0% test accuracy after 10.6-14.9 s of training on 2 CPU cores (bench/results_train.md)."""

    model: str = presets.DEFAULT_PRESET  # preset name, '>' notation, or .yaml/.json spec file
    data: str = "mnist-mini"  # data source: mnist-mini (embedded), mnist, a folder, an .npz file
    data_dir: str | None = None  # where downloaded data sets are kept (None: CNNKIT_DATA, cache)
    data_memory: str = "auto"  # ram | disk (batches read from the memory-mapped cache) | auto:
    # ram when a split fits half the available memory; disk gives bitwise the same batches
    input: str | None = None  # HxWxC: train the model on this input shape instead of its own
    resize: str | None = None  # letterbox|stretch|crop for another aspect ratio (None: refuse)
    epochs: int = 1  # passes over the training split (MNIST: 99.17-99.35% test after one)
    # Seconds of training: a few timed steps size a one-cycle to fit (epochs is then the most).
    time: float | None = None  # None: train `epochs`
    patience: int | None = None  # stop after N evaluations without a better val acc; keep the best
    batch_size: int = 64  # images per step; 64 reached 99% in fewer images than 128 or 256
    lr: float = 0.2  # peak learning rate (for batch 64 with batch norm; 0.3 and 0.4 were slower)
    optimizer: str = "sgd"  # sgd (Nesterov, momentum 0.9) | adam | adamw
    schedule: str = "onecycle"  # onecycle | cosine | step | constant
    warmup: float = 0.2  # onecycle: fraction of the steps spent rising linearly to lr
    weight_decay: float = 5e-4  # L2 penalty (decoupled for adamw)
    # Target 1 - s on the label, s spread evenly. 99% after 0.50-0.67 epochs with 0.1, 0.67-0.85
    # with 0 (GPU sweep, 3 seeds).
    label_smoothing: float = 0.1  # s: 0 is plain cross-entropy
    augment: str = "none"  # "translate=2", "translate=2,flip", "crop=4,cutout=8", "none"
    val_split: float = 0.1  # fraction of train held out (stratified) for validation
    val: str | None = None  # "test" or "val": validate on that split instead of val_split
    target_acc: float | None = None  # stop as soon as validation accuracy reaches this
    eval_every: float | None = None  # epochs between evaluations (None: 1, or 0.2 with target)
    checkpoint_every: int | None = None  # steps between saves (None: every ~10 s and each epoch)
    channels_last: bool = True  # NHWC: measured 14% more images/s on 2 CPU cores (mkldnn)
    seed: int = 0  # weights, validation split, batch order and augmentation
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on cuda, fp32 on cpu) | fp32 | bf16
    compile: bool = False  # torch.compile the model (slow start, faster steps on GPUs)
    # ddp: batch norm over the global batch, not each rank's shard; unmeasured, so off (DDP's
    # default): it costs one all-reduce per BN layer per step, and shards of >= 32 images
    # normalise nearly as the whole batch does.
    sync_bn: bool = False
    out: str | None = None  # run directory (None: runs/<model>-<data>)
    overwrite: bool = False  # replace an existing run at `out`
    quiet: bool = False  # no download progress
    # Building on a run, threads and in-memory data (cnnkit.transfer, cnnkit.threads, cnnkit.fit).
    from_run: str | None = None  # start from this run's weights (the head is new if classes differ)
    freeze: bool = False  # with from_run: conv/BN layers fixed (no grads, BN kept in eval mode)
    threads: int | None = None  # torch CPU threads (None: the cores others leave free)
    # cnnkit.data.arrays.ArraysSource for data given as arrays; never saved (`data` names it).
    arrays: Any = dataclasses.field(default=None, repr=False, compare=False)
    given: tuple[str, ...] = ()  # the options the user chose; model 'auto' fills in the others

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def for_model(cls, model: str = presets.DEFAULT_PRESET, **options: Any) -> TrainConfig:
        """The config for `model`: the defaults, then its RECIPES entry, then `options`."""
        given = tuple(name for name in options if name not in ("quiet", "given"))
        return cls(**{"model": model, **RECIPES.get(model, {}), **options, "given": given})

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready fields; in-memory arrays are left out (`data` names them)."""
        saved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        saved.pop("arrays")
        return saved


# Per-preset departures from the defaults; `cnnkit train --model lenet5` starts from these.
RECIPES: dict[str, dict[str, Any]] = {
    # Measured on MNIST (GPU sweep, fp32, 3 seeds, 10% held out, test accuracy): 99.11-99.20%
    # after 4 epochs, 99.20-99.25% after 6. Batch norm-free networks diverge at the digits lr.
    "lenet5": {"lr": 0.05, "epochs": 6, "batch_size": 128},
    # Not tuned: lenet5's rate, for the other presets without batch norm after every conv.
    "tf-mnist": {"lr": 0.05, "epochs": 3, "batch_size": 128},
    "tinyvgg": {"lr": 0.05, "epochs": 3, "batch_size": 128},
    "inception-demo": {"lr": 0.05, "epochs": 3, "batch_size": 128},
}


# ----------------------------------------------------------------------------- auto

# Model 'auto' (no --model): 28x28x1 digits 0-9 keep `digits` and the defaults above; any other
# data gets the auto family (presets.auto_notation) and `auto_recipe`. The budgets bound the
# bare command on a 2-core CPU (the goals: a photo folder in <= 90 s, Fashion-MNIST in
# <= 3 min); `epochs` caps them where steps are fast (a GPU).
AUTO_TIME_SMALL = 60.0  # seconds, under AUTO_LARGE training images
# Seconds from AUTO_LARGE training images on. Fashion-MNIST's auto member steps at ~1,880
# images/s on a quiet 2-core machine (estimated: 1.98x digits' step time, 1 thread, same
# process, digits at 3,720), so 0.9 x 170 s of steps is ~4.8 epochs, evaluations included
# within the 3 minutes.
AUTO_TIME_LARGE = 170.0
AUTO_LARGE = 10_000
AUTO_MIN_STEPS = 3000  # the epochs cap is at least this many steps (small folders)


def auto_input(shape: tuple[int, int, int], folder: bool) -> tuple[int, int, int]:
    """The input for data of `shape` (H, W, C): grey stays grey, anything else RGB; a folder's
    (most common) size made square, within 28-96 and a multiple of 4; an array source keeps its
    own size when it lies within 28-96 (so it needs no resize)."""
    height, width, channels = shape
    channels = 1 if channels == 1 else 3
    if not folder and min(height, width) >= 28 and max(height, width) <= 96:
        return height, width, channels
    side = min(96, max(28, 4 * round(math.sqrt(height * width) / 4)))
    return side, side, channels


def auto_recipe(shape: tuple[int, int, int], train_images: int, classes: int) -> dict[str, Any]:
    """The training options of model 'auto' for this input (H, W, C) and data; pure."""
    side, colour = min(shape[:2]), shape[2] == 3
    large = train_images >= AUTO_LARGE
    # A large set: batch 128 (digits' CPU speed-up from larger batches, at the linearly scaled
    # rate); a small folder gets more steps per epoch, and a tiny one 4 steps at least.
    batch_size = 128 if large else 64 if train_images >= 4096 else 32
    batch_size = min(batch_size, max(1, train_images // 4))
    steps_per_epoch = max(1, train_images // batch_size)
    # Flips, since these are not digits; jitter only for colour. Crops of ~1/10 of the side for
    # a small set only: a large one sees each image ~5 times in the budget, too few for crops to
    # pay (not measured against crops; the Fashion-MNIST runs behind the budget used flips only).
    augment = ("flip" if large else f"crop={max(2, side // 10)},flip") + (
        ",jitter=0.2" if colour else ""
    )
    return {
        "batch_size": batch_size,
        "lr": 0.2 * batch_size / 64,  # the digits rate (batch 64, batch norm), scaled linearly
        "time": AUTO_TIME_LARGE if large else AUTO_TIME_SMALL,
        "epochs": min(300, max(15, math.ceil(AUTO_MIN_STEPS / steps_per_epoch))),
        "augment": augment,
    }


def ending_warnings(summary: dict[str, Any], classes: int, config: TrainConfig) -> list[str]:
    """Warnings for a run that ends near chance or far below its training accuracy; pure."""
    val, train = summary.get("final_val_acc"), summary.get("final_train_acc")
    if val is None:
        return []
    warnings = []
    if val < 1.5 / classes:
        cause = (
            f"only {summary['steps']} steps: train longer with --time SECONDS or --epochs N"
            if summary["steps"] < 1000
            else f"the learning rate or the model: try --lr {config.lr / 3:.3g} or --model auto"
        )
        warnings.append(
            f"validation accuracy {val:.1%} is near chance (1/{classes} = {1 / classes:.1%}); "
            f"likely cause: {cause}"
        )
    if train is not None and train - val > 0.25:
        warnings.append(
            f"validation accuracy {val:.1%} is far below training accuracy {train:.1%}: the "
            f"model learns the training images by heart; add --augment crop=4,flip, stop "
            f"earlier with --patience 5, or give more images"
        )
    return warnings


# ----------------------------------------------------------------------------- validation


def validate(config: TrainConfig) -> None:
    """One `if ...: raise ConfigError` per rule, naming the option and echoing the value."""
    _positive_int("epochs", config.epochs)
    _positive_int("batch_size", config.batch_size)
    if not isinstance(config.lr, (int, float)) or not config.lr > 0 or not math.isfinite(config.lr):
        raise ConfigError(f"--lr must be a positive number such as 0.1, got {config.lr!r}")
    _check_choices(config)
    _check_fractions(config)
    _check_validation(config)
    if config.checkpoint_every is not None:
        _positive_int("checkpoint_every", config.checkpoint_every)
    if not isinstance(config.seed, int) or isinstance(config.seed, bool):
        raise ConfigError(f"--seed must be a whole number, got {config.seed!r}")
    parse_augment(config.augment)  # raises ConfigError naming the bad part
    _check_transfer(config)
    _check_budget(config)


def _check_budget(config: TrainConfig) -> None:
    time = config.time
    if time is not None and (
        isinstance(time, bool) or not isinstance(time, (int, float)) or not 0 < time < math.inf
    ):
        raise ConfigError(f"--time must be a positive number of seconds such as 60, got {time!r}")
    if config.patience is not None:
        _positive_int("patience", config.patience)
        if config.val == "none":
            raise ConfigError(
                f"--patience {config.patience} stops on validation accuracy, but --val none "
                f"holds no images out; drop --val none or --patience"
            )


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"--{name.replace('_', '-')} {value!r} is not known; use one of {', '.join(allowed)}"
        )


def _check_choices(config: TrainConfig) -> None:
    _choice("optimizer", config.optimizer, OPTIMIZERS)
    _choice("schedule", config.schedule, SCHEDULES)
    _choice("precision", config.precision, PRECISIONS)
    _choice("data_memory", config.data_memory, DATA_MEMORY)
    if config.resize is not None:
        _choice("resize", config.resize, RESIZE_MODES)
    if not (config.device in DEVICES or str(config.device).startswith("cuda:")):
        raise ConfigError(f"--device {config.device!r} is not known; use auto, cpu, cuda or cuda:N")


def _check_fractions(config: TrainConfig) -> None:
    if not 0 <= config.warmup < 1:
        raise ConfigError(f"warmup must be a fraction in [0, 1), got {config.warmup!r}")
    if not 0 <= config.weight_decay < 1:
        raise ConfigError(
            f"--weight-decay must be in [0, 1) such as 5e-4, got {config.weight_decay!r}"
        )
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError(
            f"--label-smoothing must be in [0, 1) such as 0.1, got {config.label_smoothing!r}"
        )


def _check_validation(config: TrainConfig) -> None:
    if config.val is not None and config.val not in ("test", "val", "none"):
        raise ConfigError(f"--val {config.val!r} is not known; use test, val or none")
    if config.val is None and not 0 < config.val_split < 1:
        raise ConfigError(
            f"--val-split must be a fraction between 0 and 1 such as 0.1, got {config.val_split!r}"
        )
    if config.target_acc is not None and config.val == "none":
        raise ConfigError("--target-acc needs validation; drop --val none or --target-acc")
    if config.target_acc is not None and not 0 < config.target_acc <= 1:
        raise ConfigError(
            f"--target-acc must be an accuracy in (0, 1] such as 0.99, got {config.target_acc!r}"
        )
    if config.eval_every is not None and not config.eval_every > 0:
        raise ConfigError(
            f"eval_every must be a positive number of epochs, got {config.eval_every!r}"
        )


def _check_transfer(config: TrainConfig) -> None:
    if config.freeze and config.from_run is None:
        raise ConfigError("--freeze keeps the layers of --from RUN fixed; give --from RUN too")
    check_threads(config.threads)


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of step `step` (0-based) of `total_steps`: a pure function, no state.

    onecycle rises linearly over `warmup` of the steps, then falls linearly to 0 (airbench's
    triangle); cosine falls from lr to 0; step divides by 10 at 1/2 and 3/4 of training.
    """
    progress = step / total_steps
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "step":
        return config.lr * (0.1 if progress >= 0.5 else 1) * (0.1 if progress >= 0.75 else 1)
    warm = config.warmup * total_steps
    if step < warm:
        return config.lr * (step + 1) / (warm + 1)
    return config.lr * (total_steps - step) / (total_steps - warm)


def default_out(config: TrainConfig) -> str:
    """runs/<model>-<data>, with a spec file's stem or 'custom' for notation as the model name."""
    model = config.model
    if config.from_run is not None:  # runs/<source run>-<data>: the lineage shows in the name
        model = Path(config.from_run).name or "run"
    elif model.endswith((".yaml", ".yml", ".json")):
        model = Path(model).stem
    elif model.startswith(f"{presets.AUTO}-"):
        model = presets.AUTO
    elif model not in presets.PRESETS:
        model = "custom"
    data = Path(config.data).name.replace(":", "-") or "data"
    if config.data.startswith(ARRAYS_PREFIX):  # "<arrays 1000x28x28x1>": no file name to use
        data = "arrays"
    return str(Path("runs") / f"{model}-{data}")
