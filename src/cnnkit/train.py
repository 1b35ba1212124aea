"""TrainConfig and fit(): train a spec on a data source into a run directory, resumably.

    result = fit(TrainConfig(data="mnist", val="test", out="runs/mnist"))
    result.final_val_acc                       # 0.99...
    result = resume("runs/mnist")              # after Ctrl-C or a crash: continues exactly

The data path is airbench's: the whole split lives on the device as uint8 (`DeviceLoader`),
batches are one gather, and every random choice is a function of (seed, epoch, batch), so a
resumed run repeats no randomness. The learning rate is a pure function of the step, set on the
param groups before each step, so resuming needs no scheduler state. No global state: the torch
RNG is forked for the run, and Ctrl-C is caught only while fit() runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit import presets, runs
from cnnkit.data import DeviceLoader, channel_stats, fit_images, open_source, parse_augment
from cnnkit.data import split_validation as split_validation_
from cnnkit.errors import CheckpointError, CnnkitError, ConfigError, DataError
from cnnkit.plan import Plan, plan
from cnnkit.spec import Spec, shape_text

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "constant")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
RESIZE_MODES = ("letterbox", "stretch", "crop")
CHECKPOINT_SECONDS = 10.0  # without checkpoint_every, state is saved after ~this much training


# ----------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Every choice of a training run. The defaults are the tuned `digits` recipe for MNIST:
    99.0% test accuracy after 10.6-14.9 s of training on 2 CPU cores (bench/results_train.md)."""

    model: str = presets.DEFAULT_PRESET  # preset name, '>' notation, or .yaml/.json spec file
    data: str = "mnist-mini"  # data source: mnist-mini (embedded), mnist, a folder, an .npz file
    data_dir: str | None = None  # where downloaded data sets are kept (None: CNNKIT_DATA, cache)
    input: str | None = None  # HxWxC: train the model on this input shape instead of its own
    resize: str | None = None  # letterbox|stretch|crop for another aspect ratio (None: refuse)
    epochs: int = 1  # passes over the training split (MNIST: 99.17-99.35% test after one)
    batch_size: int = 64  # images per step; 64 reached 99% in fewer images than 128 or 256
    lr: float = 0.2  # peak learning rate (for batch 64 with batch norm; 0.3 and 0.4 were slower)
    optimizer: str = "sgd"  # sgd (Nesterov, momentum 0.9) | adam | adamw
    schedule: str = "onecycle"  # onecycle | cosine | step | constant
    warmup: float = 0.2  # onecycle: fraction of the steps spent rising linearly to lr
    weight_decay: float = 5e-4  # L2 penalty (decoupled for adamw)
    label_smoothing: float = 0.1  # target 1 - s on the label, s spread evenly; 99% after 0.50-0.67
    # epochs with 0.1, 0.67-0.85 with 0 (GPU sweep, 3 seeds)
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
    out: str | None = None  # run directory (None: runs/<model>-<data>)
    overwrite: bool = False  # replace an existing run at `out`
    quiet: bool = False  # no download progress

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def for_model(cls, model: str = presets.DEFAULT_PRESET, **options: Any) -> TrainConfig:
        """The config for `model`: the defaults, then its RECIPES entry, then `options`."""
        return cls(**{"model": model, **RECIPES.get(model, {}), **options})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


def validate(config: TrainConfig) -> None:
    """One `if ...: raise ConfigError` per rule, naming the option and echoing the value."""

    def positive_int(name: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(
                f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}"
            )

    def choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            raise ConfigError(
                f"--{name.replace('_', '-')} {value!r} is not known; use one of {', '.join(allowed)}"
            )

    positive_int("epochs", config.epochs)
    positive_int("batch_size", config.batch_size)
    if not isinstance(config.lr, (int, float)) or not config.lr > 0 or not math.isfinite(config.lr):
        raise ConfigError(f"--lr must be a positive number such as 0.1, got {config.lr!r}")
    choice("optimizer", config.optimizer, OPTIMIZERS)
    choice("schedule", config.schedule, SCHEDULES)
    choice("precision", config.precision, PRECISIONS)
    if config.resize is not None:
        choice("resize", config.resize, RESIZE_MODES)
    if not (config.device in DEVICES or str(config.device).startswith("cuda:")):
        raise ConfigError(f"--device {config.device!r} is not known; use auto, cpu, cuda or cuda:N")
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
    if config.checkpoint_every is not None:
        positive_int("checkpoint_every", config.checkpoint_every)
    if not isinstance(config.seed, int) or isinstance(config.seed, bool):
        raise ConfigError(f"--seed must be a whole number, got {config.seed!r}")
    parse_augment(config.augment)  # raises ConfigError naming the bad part


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


# ----------------------------------------------------------------------------- hooks and results


@dataclass
class Start:
    """What fit() is about to do; given to `Hooks.on_start`."""

    plan: Plan
    run: Path
    device: str
    precision: str
    train_images: int
    val_images: int
    steps_per_epoch: int
    total_steps: int
    start_step: int  # > 0 when resuming
    notes: list[str]


@dataclass
class Progress:
    """The state after a step; given to `Hooks.on_step` (at most every ~0.1 s on CUDA)."""

    epoch: int  # 0-based
    epochs: int
    batch: int  # batches done in this epoch
    batches: int  # batches per epoch
    step: int  # steps done in all
    total_steps: int
    loss: float  # mean training loss since the last evaluation
    acc: float  # training accuracy since the last evaluation
    lr: float
    images_per_s: float
    elapsed_s: float  # training and evaluating, this run and the runs it resumes
    eta_s: float  # until the end of this epoch, at the speed so far


@dataclass
class Hooks:
    """Callbacks that observe training; none of them can change it."""

    on_start: Callable[[Start], None] | None = None
    on_step: Callable[[Progress], None] | None = None
    on_eval: Callable[[dict[str, Any]], None] | None = None


@dataclass
class FitResult:
    """What a run produced; the same figures are in the run's manifest under "metrics"."""

    run: Path
    model: nn.Module
    manifest: dict[str, Any]
    metrics: list[dict[str, Any]]  # one record per evaluation, as in metrics.jsonl
    summary: dict[str, Any]  # best/final accuracy, seconds, images/s, why it stopped
    notes: list[str] = field(default_factory=list)

    @property
    def final_val_acc(self) -> float | None:
        return self.summary.get("final_val_acc")

    @property
    def best_val_acc(self) -> float | None:
        return self.summary.get("best_val_acc")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during fit(): the state was saved first; `str()` says how to resume."""

    def __init__(self, run: Path, step: int) -> None:
        super().__init__(
            f"interrupted at step {step}; the state is saved in {run}; "
            f"continue with: cnnkit train --resume {run}"
        )
        self.run, self.step = run, step


# ----------------------------------------------------------------------------- data and model


@dataclass
class _Setup:
    spec: Spec
    notes: list[str]
    class_names: list[str]
    train: Any  # cnnkit.data.Split
    val: Any  # cnnkit.data.Split | None
    mean: list[float]
    std: list[float]
    data_s: float


def _resolve_spec(config: TrainConfig) -> Spec:
    return presets.resolve(config.model, input_shape=config.input)


def _prepare(config: TrainConfig) -> _Setup:
    """Open the data, fit it to the model's input and the model's classes to the data."""
    started = time.perf_counter()
    spec = _resolve_spec(config)
    notes: list[str] = []
    height, width, channels = spec.input_shape
    if Path(config.data).expanduser().is_dir():  # a folder is decoded straight to the model's size
        dataset = open_source(
            config.data,
            data_dir=config.data_dir,
            size=(height, width),
            channels=channels,
            resize=config.resize or "letterbox",
            progress=not config.quiet,
        )
        notes.append(
            f"images of {config.data!r} decoded to the model's input {shape_text(spec.input_shape)} "
            f"({config.resize or 'letterbox'}; pass --input to train on another shape)"
        )
    else:
        dataset = open_source(config.data, data_dir=config.data_dir, progress=not config.quiet)
    if dataset.skipped:  # a folder's unreadable files are skipped; say so rather than train on less
        first = ", ".join(str(item["path"]) for item in dataset.skipped[:3])
        notes.append(
            f"{len(dataset.skipped)} file(s) skipped as unreadable ({first}); "
            f"'cnnkit data info {config.data}' lists them all"
        )
    fitted = _fit_note(dataset.shape, spec.input_shape, config)
    if fitted:
        notes.append(fitted)
        for split in dataset.splits.values():
            split.images = fit_images(split.images, spec.input_shape, config.resize or "letterbox")
    spec = _fit_classes(spec, dataset.class_names, config, notes)
    val = "none" if config.val == "none" else (config.val or config.val_split)
    train, val_split = split_validation_(dataset, val if val != "none" else None, config.seed)
    if dataset.known_stats and not fitted:
        mean, std = dataset.known_stats
    else:
        mean, std = channel_stats(train.images)
    return _Setup(
        spec,
        notes,
        list(dataset.class_names),
        train,
        val_split,
        list(mean),
        list(std),
        time.perf_counter() - started,
    )


def _fit_note(have: tuple[int, int, int], want: tuple[int, int, int], config: TrainConfig) -> str:
    """How images of shape `have` become `want` (H, W, C); "" when they already are."""
    (h, w, c), (height, width, channels) = have, want
    if (h, w, c) == (height, width, channels):
        return ""
    fix = f"pass --input {h}x{w}x{c} to train the model on the data's own shape" + (
        ", or --resize letterbox|stretch|crop to fit the images" if c == channels else ""
    )
    if c != channels and not (c in (1, 3) and channels in (1, 3)):
        raise DataError(
            f"the model takes {shape_text(want)} images but {config.data!r} has {c} channel(s); "
            f"cnnkit converts only between 1 and 3 channels; {fix}"
        )
    parts = []
    if c != channels:
        parts.append(
            "grayscale replicated to RGB" if channels == 3 else "RGB averaged to grayscale"
        )
    if (h, w) != (height, width):
        if height >= h and width >= w and h * width == w * height and (height - h) % 2 == 0:
            parts.append(f"zero-padded from {h}x{w} to {height}x{width}")
        elif config.resize is not None or h * width == w * height:
            parts.append(
                f"resized from {h}x{w} to {height}x{width} ({config.resize or 'letterbox'})"
            )
        else:
            raise DataError(
                f"the model takes {shape_text(want)} images but {config.data!r} holds {h}x{w}x{c}, "
                f"another aspect ratio; {fix}"
            )
    return f"data {config.data!r} fitted to the model's input: {', '.join(parts)}"


def _fit_classes(spec: Spec, class_names: list[str], config: TrainConfig, notes: list[str]) -> Spec:
    """Resize a preset's last fc to the data's classes; refuse a user's spec that does not fit."""
    network = plan(spec)
    outputs = network.output_shape
    classes = len(class_names)
    if not network.layers or not network.layers[-1].flat:
        raise DataError(
            f"the model's output is {shape_text(outputs)}, not one score per class; "
            f"end it with '> flatten > fc {classes}'"
        )
    if outputs[2] == classes:
        return spec
    if config.model in presets.PRESETS:
        notes.append(
            f"preset {config.model!r}: last fc resized from {outputs[2]} to {classes} classes"
        )
        return presets.with_classes(spec, classes)
    raise DataError(
        f"the model outputs {outputs[2]} scores but {config.data!r} has {classes} classes; "
        f"end the spec with 'fc {classes}'"
    )


def _device(config: TrainConfig) -> torch.device:
    from cnnkit.devices import resolve_device

    return resolve_device(config.device)


def _precision(config: TrainConfig, device: torch.device) -> str:
    from cnnkit.devices import resolve_precision

    return resolve_precision(config.precision, device)


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params, decay = model.parameters(), config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=decay)


def default_out(config: TrainConfig) -> str:
    """runs/<model>-<data>, with a spec file's stem or 'custom' for notation as the model name."""
    model = config.model
    if model.endswith((".yaml", ".yml", ".json")):
        model = Path(model).stem
    elif model not in presets.PRESETS:
        model = "custom"
    data = Path(config.data).name.replace(":", "-") or "data"
    return str(Path("runs") / f"{model}-{data}")


# ----------------------------------------------------------------------------- training


def fit(config: TrainConfig, hooks: Hooks | None = None) -> FitResult:
    """Train `config.model` on `config.data` into `config.out`; see the module docstring.

    Raises ConfigError/DataError/SpecError/CheckpointError for what the user must fix (the
    loss becoming NaN or infinite included), and TrainingInterrupted after saving on Ctrl-C.
    """
    validate(config)
    return _Trainer(config, hooks or Hooks(), resume_from=None).run()


def resume(run: str | os.PathLike, hooks: Hooks | None = None) -> FitResult:
    """Continue an interrupted run exactly where its last checkpoint left it."""
    path = runs.prepare_run_dir(run, resume=True)
    state = runs.read_state(path)
    saved = dict(state.get("config") or {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not saved or set(saved) - known:
        raise CheckpointError(
            f"{path}: the resume state holds no usable training config; train again with --overwrite"
        )
    config = TrainConfig(**{**saved, "out": str(path), "overwrite": False})
    return _Trainer(config, hooks or Hooks(), resume_from=path).run()


class _Trainer:
    """One fit() call: the objects it needs and the loop. Holds no state between calls."""

    def __init__(self, config: TrainConfig, hooks: Hooks, resume_from: Path | None) -> None:
        self.config, self.hooks, self.resume_from = config, hooks, resume_from

    def run(self) -> FitResult:
        config = self.config
        self.started = time.perf_counter()
        self.device = _device(config)
        self.precision = _precision(config, self.device)
        created = False
        if self.resume_from is None:
            out = Path(config.out or default_out(config))
            _resolve_spec(config)  # a bad --model fails before any directory is touched
            created = not out.exists()
            self.run_dir = runs.prepare_run_dir(out, overwrite=config.overwrite)
            self.config = config = dataclasses.replace(config, out=str(out))
        else:
            self.run_dir = self.resume_from
        try:
            setup = self.setup = _prepare(config)
            devices = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), _catch_sigint() as interrupted:
                self.interrupted = interrupted
                return self._train(setup)
        except CnnkitError:
            # Refused before its first checkpoint (bad data, a batch larger than the data):
            # leave no empty run folder behind. Once a checkpoint exists it is kept.
            if created and not (self.run_dir / "state").exists() and not runs.is_run(self.run_dir):
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    # -------------------------------------------------------------------- the loop

    def _train(self, setup: _Setup) -> FitResult:
        config, device = self.config, self.device
        torch.manual_seed(config.seed)
        model = self.model = build_model(setup.spec, config.seed, device, config.channels_last)
        loader_started = time.perf_counter()
        train_loader, val_loader = _loaders(setup, config, device)
        data_s = setup.data_s + time.perf_counter() - loader_started
        optimizer = self.optimizer = _optimizer(config, model)
        forward = torch.compile(model) if config.compile else model
        steps_per_epoch = len(train_loader)
        total = steps_per_epoch * config.epochs
        every = config.eval_every or (0.2 if config.target_acc else 1.0)
        eval_steps = max(1, round(every * steps_per_epoch))
        ckpt_steps = config.checkpoint_every
        # One .item() per step costs nothing on the CPU; on CUDA it stalls the queue, so losses
        # are collected on the device and checked in groups.
        sync_every = 1 if device.type == "cpu" else 25

        self.step, self.metrics, self.elapsed = 0, [], 0.0
        self.steps_per_epoch, self.stopped, self.finished = steps_per_epoch, None, False
        self.saved_step = 0  # the step of the last checkpoint, named when the loss diverges
        self.train_sums = [0.0, 0.0, 0]  # loss * n, correct, n since the last evaluation
        self.best: dict[str, Any] = {"val_acc": None, "step": None}
        if self.resume_from is not None:
            self._restore()
            if self.step >= total or self.finished:
                raise CheckpointError(
                    f"{self.run_dir} already finished at step {self.step} of {total}; "
                    f"nothing to resume (train a new run with more --epochs)"
                )
            self.saved_step = self.step
        self.start_step, self.start_elapsed = self.step, self.elapsed
        self.manifest_base = runs.make_manifest(
            setup.spec,
            setup.class_names,
            setup.mean,
            setup.std,
            resize=config.resize or "letterbox",
            train_config=config.to_dict(),
        )
        self.timing = {"data_s": round(data_s, 3)}
        if self.hooks.on_start:
            self.hooks.on_start(
                Start(
                    plan(setup.spec),
                    self.run_dir,
                    str(device),
                    self.precision,
                    len(setup.train),
                    0 if setup.val is None else len(setup.val),
                    steps_per_epoch,
                    total,
                    self.step,
                    setup.notes,
                )
            )
        if self.resume_from is None:
            self._save()  # step 0: the directory is a run, resumable, from the start
        autocast = _autocast(device, self.precision)
        pending: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        self.timing["setup_s"] = round(time.perf_counter() - self.started - data_s, 3)
        last_save = clock = time.perf_counter()
        last_report = 0.0
        stopped = "done"
        epoch, start_batch = divmod(self.step, steps_per_epoch)
        model.train()
        while self.step < total and stopped == "done":
            for x, y in train_loader.epoch(epoch, start_batch):  # x (B, C, H, W), y (B,)
                lr = learning_rate(config, self.step, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with autocast:
                    logits = forward(x)  # (B, classes)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.step += 1
                correct = (logits.argmax(1) == y).sum()
                pending.append((loss.detach(), correct, len(y)))
                batch = self.step - epoch * steps_per_epoch
                end_of_epoch = batch == steps_per_epoch
                evaluate = batch % eval_steps == 0 or end_of_epoch
                now = time.perf_counter()
                save = (
                    end_of_epoch
                    or self.interrupted.is_set()
                    or (ckpt_steps is not None and self.step % ckpt_steps == 0)
                    or (ckpt_steps is None and now - last_save > CHECKPOINT_SECONDS)
                )
                if len(pending) >= sync_every or evaluate or save:
                    self._flush(pending, lr)
                    pending = []
                    if self.hooks.on_step and (now - last_report > 0.1 or end_of_epoch):
                        last_report = now
                        elapsed = self.elapsed + now - clock
                        self.hooks.on_step(
                            self._progress(epoch, batch, steps_per_epoch, total, lr, elapsed)
                        )
                if evaluate and val_loader is not None:
                    record = self._evaluate(
                        forward, val_loader, autocast, epoch, batch / steps_per_epoch, lr
                    )
                    self.elapsed += time.perf_counter() - clock
                    record["elapsed_s"] = round(self.elapsed, 3)
                    self.metrics.append(record)
                    runs.append_metrics(self.run_dir, record)
                    clock = time.perf_counter()
                    if self.hooks.on_eval:
                        self.hooks.on_eval(record)
                    if config.target_acc is not None and record["val_acc"] >= config.target_acc:
                        stopped = self.stopped = "target"
                        save = True
                if save or self.step == total:
                    if self.step == total:
                        self.stopped = stopped
                    self.elapsed += time.perf_counter() - clock
                    self._save(finished=stopped != "done" or self.step == total)
                    clock = last_save = time.perf_counter()
                    if self.interrupted.is_set():
                        raise TrainingInterrupted(self.run_dir, self.step)
                if stopped != "done":
                    break
            epoch, start_batch = epoch + 1, 0
        summary = self._summary(total)
        manifest = runs.read_manifest(self.run_dir)
        return FitResult(self.run_dir, model, manifest, list(self.metrics), summary, setup.notes)

    def _flush(self, pending: list[tuple[torch.Tensor, torch.Tensor, int]], lr: float) -> None:
        """Move the pending losses to the host; stop at the first one that is not finite."""
        losses = torch.stack([loss for loss, _, _ in pending]).tolist()
        corrects = torch.stack([c for _, c, _ in pending]).tolist()
        first = self.step - len(pending) + 1
        for offset, (value, correct, (_, _, n)) in enumerate(
            zip(losses, corrects, pending, strict=True)
        ):
            if not math.isfinite(value):
                raise ConfigError(
                    f"step {first + offset}: the loss became {value}; lower --lr (now {self.config.lr:g}); "
                    f"the last good checkpoint (step {self.saved_step}) is kept in {self.run_dir}"
                )
            self.train_sums[0] += value * n
            self.train_sums[1] += correct
            self.train_sums[2] += n

    def _progress(
        self, epoch: int, batch: int, batches: int, total: int, lr: float, elapsed: float
    ) -> Progress:
        loss_sum, correct, count = self.train_sums
        seconds = max(elapsed - self.start_elapsed, 1e-9)
        per_step = seconds / max(self.step - self.start_step, 1)
        return Progress(
            epoch=epoch,
            epochs=self.config.epochs,
            batch=batch,
            batches=batches,
            step=self.step,
            total_steps=total,
            loss=loss_sum / max(count, 1),
            acc=correct / max(count, 1),
            lr=lr,
            images_per_s=(self.step - self.start_step) * self.config.batch_size / seconds,
            elapsed_s=elapsed,
            eta_s=(batches - batch) * per_step,
        )

    @torch.no_grad()
    def _evaluate(
        self,
        forward: Callable,
        loader: DeviceLoader,
        autocast: Any,
        epoch: int,
        fraction: float,
        lr: float,
    ) -> dict[str, Any]:
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        for x, y in loader.epoch(0):
            with autocast:
                logits = forward(x).float()  # (B, classes)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        self.model.train()
        count = len(loader.labels)
        train_loss, train_correct, train_count = self.train_sums
        record = {
            "epoch": round(epoch + fraction, 4),
            "step": self.step,
            "elapsed_s": None,  # filled in by the caller once this evaluation is timed
            "train_loss": train_loss / max(train_count, 1),
            "train_acc": train_correct / max(train_count, 1),
            "val_loss": loss_sum.item() / count,
            "val_acc": correct.item() / count,
            "lr": lr,
        }
        self.train_sums = [0.0, 0.0, 0]
        if self.best["val_acc"] is None or record["val_acc"] > self.best["val_acc"]:
            self.best = {"val_acc": record["val_acc"], "step": self.step}
        return record

    # -------------------------------------------------------------------- checkpoints

    def _save(self, finished: bool = False) -> None:
        """Weights and manifest, then the resume state: model, optimizer, RNG, position.

        Weights that are no longer finite are never saved, so the last checkpoint stays good.
        """
        bad = next((t for t in self.model.state_dict().values() if not t.isfinite().all()), None)
        if bad is not None:
            value = "nan" if bad.isnan().any() else "inf"
            raise ConfigError(
                f"step {self.step}: the weights became {value}; lower --lr (now {self.config.lr:g}); "
                f"the last good checkpoint (step {self.saved_step}) is kept in {self.run_dir}"
            )
        self.finished = finished
        manifest = dict(self.manifest_base, metrics=self._summary_figures())
        runs.save_model(self.run_dir, self.model, manifest)
        extra = {
            "step": self.step,
            "config": self.config.to_dict(),
            "train_sums": list(self.train_sums),
            "elapsed_s": self.elapsed,
            "best": self.best,
            "finished": finished,
        }
        runs.save_state(self.run_dir, self.optimizer, extra, runs.capture_rng(), model=self.model)
        self.saved_step = self.step

    def _restore(self) -> None:
        state = runs.load_state(self.run_dir, self.optimizer, model=self.model)
        runs.restore_rng(state["tensors"])
        self.step = int(state["step"])
        self.train_sums = list(state["train_sums"])
        self.elapsed = float(state["elapsed_s"])
        self.best = dict(state["best"])
        self.finished = bool(state.get("finished"))
        runs.truncate_metrics(self.run_dir, self.step)
        self.metrics = runs.read_metrics(self.run_dir)

    # -------------------------------------------------------------------- figures

    def _summary_figures(self) -> dict[str, Any]:
        final = self.metrics[-1] if self.metrics else {}
        images = (self.step - self.start_step) * self.config.batch_size
        seconds = self.elapsed - self.start_elapsed
        return {
            "steps": self.step,
            "epochs": round(self.step / max(self.steps_per_epoch, 1), 4),
            "best_val_acc": self.best["val_acc"],
            "best_step": self.best["step"],
            "final_val_acc": final.get("val_acc"),
            "final_val_loss": final.get("val_loss"),
            "final_train_acc": final.get("train_acc"),
            "train_s": round(self.elapsed, 3),
            "images_per_s": round(images / seconds, 1) if seconds > 0 else None,
            "val": self.config.val or f"{self.config.val_split:g} of train",
            "train_images": len(self.setup.train),
            "val_images": 0 if self.setup.val is None else len(self.setup.val),
            "device": str(self.device),
            "precision": self.precision,
            "threads": torch.get_num_threads(),
            "stopped": getattr(self, "stopped", None),
            **getattr(self, "timing", {}),
        }

    def _summary(self, total: int) -> dict[str, Any]:
        return {**self._summary_figures(), "total_steps": total, "run": str(self.run_dir)}


def _loaders(
    setup: _Setup, config: TrainConfig, device: torch.device
) -> tuple[DeviceLoader, DeviceLoader | None]:
    """The shuffled, augmented training batches and the plain validation batches, on `device`."""
    train = DeviceLoader(
        setup.train,
        batch_size=config.batch_size,
        device=device,
        mean=setup.mean,
        std=setup.std,
        augment=parse_augment(config.augment),
        seed=config.seed,
        channels_last=config.channels_last,
    )
    if setup.val is None:
        return train, None
    val = DeviceLoader(
        setup.val,
        batch_size=1024,
        device=device,
        mean=setup.mean,
        std=setup.std,
        shuffle=False,
        drop_last=False,
        channels_last=config.channels_last,
    )
    return train, val


def build_model(spec: Spec, seed: int, device: torch.device, channels_last: bool) -> nn.Module:
    """The spec's network on `device`, initialised from `seed`."""
    from cnnkit.network import build

    model = build(spec, seed=seed).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _autocast(device: torch.device, precision: str) -> Any:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _catch_sigint() -> Iterator[threading.Event]:
    """While fit() runs, the first Ctrl-C sets an event (the loop saves and stops at the next
    step); a second one interrupts at once. The previous handler is put back afterwards."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(signum: int, frame: Any) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)
