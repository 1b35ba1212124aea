"""fit() and resume(): train a spec on a data source into a run directory, resumably.

    result = fit(TrainConfig(data="mnist", val="test", out="runs/mnist"))
    result.final_val_acc                       # 0.99...
    result = resume("runs/mnist")              # after Ctrl-C or a crash: continues exactly

The data path is airbench's: the whole split lives on the device as uint8 (`DeviceLoader`),
batches are one gather, and every random choice is a function of (seed, epoch, batch), so a
resumed run repeats no randomness. The learning rate is a pure function of the step, set on the
param groups before each step, so resuming needs no scheduler state. No global state: the torch
RNG is forked for the run, and Ctrl-C is caught only while fit() runs.

The config is `cnnkit.train_config` (no torch), the data comes shaped for the model from
`cnnkit.data.shaped`, and the loop is `cnnkit.train_loop`; their public names are re-exported
here, so `from cnnkit.train import TrainConfig, fit, resume, FitResult` keeps working.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnkit import distributed, presets, runs
from cnnkit.data import DeviceLoader, Split, channel_stats, parse_augment, shaped
from cnnkit.data import split_validation as split_validation_
from cnnkit.data.dataset import shard_split
from cnnkit.errors import CheckpointError, CnnkitError
from cnnkit.spec import Spec
from cnnkit.train_config import (
    DEVICES,
    OPTIMIZERS,
    PRECISIONS,
    RECIPES,
    RESIZE_MODES,
    SCHEDULES,
    TrainConfig,
    default_out,
    learning_rate,
    validate,
)
from cnnkit.train_loop import (
    CHECKPOINT_SECONDS,
    FitResult,
    Hooks,
    Parts,
    Progress,
    Start,
    Trainer,
    TrainingInterrupted,
    TrainState,
)

__all__ = [
    "CHECKPOINT_SECONDS", "DEVICES", "OPTIMIZERS", "PRECISIONS", "RECIPES", "RESIZE_MODES",
    "SCHEDULES", "FitResult", "Hooks", "Progress", "Start", "TrainConfig", "TrainState",
    "TrainingInterrupted", "build_model", "default_out", "fit", "learning_rate", "resume",
    "validate",
]  # fmt: skip


# ----------------------------------------------------------------------------- fit and resume


def fit(config: TrainConfig, hooks: Hooks | None = None) -> FitResult:
    """Train `config.model` on `config.data` into `config.out`; see the module docstring.

    Raises ConfigError/DataError/SpecError/CheckpointError for what the user must fix (the
    loss becoming NaN or infinite included), and TrainingInterrupted after saving on Ctrl-C.
    """
    validate(config)
    return _run(config, hooks or Hooks(), resume_from=None)


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
    # ddp: the batch shards and the saved RNG are those of the run's world size.
    ranks, now = int(state.get("world_size", 1)), distributed.env_world().size
    if ranks != now:
        raise CheckpointError(
            f"{path} was trained by {ranks} rank(s), this resume runs {now}; resume it with "
            f"--nproc {ranks} (or torchrun --nproc-per-node {ranks}) for an exact continuation"
        )
    return _run(config, hooks or Hooks(), resume_from=path)


def _run(config: TrainConfig, hooks: Hooks, resume_from: Path | None) -> FitResult:
    """Join torchrun's ranks (if any), check they agree, then train this rank."""
    with distributed.joined(config.device) as world:
        distributed.check_same(world, config.to_dict())
        return _run_rank(config, hooks, resume_from, world)


def _run_rank(
    config: TrainConfig, hooks: Hooks, resume_from: Path | None, world: distributed.World
) -> FitResult:
    """Prepare the run directory (rank 0) and the data, then train with the torch RNG forked."""
    started = time.perf_counter()
    created = False
    run_dir = resume_from or Path(config.out or default_out(config))
    try:
        with distributed.rank_zero_first(world):  # ddp: only rank 0 prepares the directory
            if resume_from is None:
                _resolve_spec(config)  # a bad --model fails before any directory is touched
                created = world.main and not run_dir.exists()
                if world.main:
                    runs.prepare_run_dir(run_dir, overwrite=config.overwrite)
                config = dataclasses.replace(config, out=str(run_dir))
            setup = _prepare(config)
        device = _device(config, world)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _catch_sigint() as interrupted:
            parts, data_s = _build(setup, config, device, world)
            timing = {"data_s": round(data_s, 3)}
            trainer = Trainer(config, hooks, run_dir, setup, parts, interrupted, timing)
            if resume_from is not None:
                trainer.restore()
            return trainer.train(started, fresh=resume_from is None)
    except CnnkitError:
        # Refused before its first checkpoint (bad data, a batch larger than the data):
        # leave no empty run folder behind. Once a checkpoint exists it is kept.
        if created and not (run_dir / "state").exists() and not runs.is_run(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _build(
    setup: Setup, config: TrainConfig, device: torch.device, world: distributed.World
) -> tuple[Parts, float]:
    """The model, loaders and optimizer, in the order that fixes the RNG; and the data seconds."""
    torch.manual_seed(config.seed)
    model = build_model(setup.spec, config.seed, device, config.channels_last)
    loader_started = time.perf_counter()
    train_loader, val_loader = _loaders(setup, config, device, world)
    data_s = setup.data_s + time.perf_counter() - loader_started
    # ddp: DDP all-reduces the gradients in backward; `model` stays the module that is saved.
    trained = distributed.wrap(model, world, device, config.sync_bn)
    model = getattr(trained, "module", trained)
    optimizer = _optimizer(config, model)
    forward = torch.compile(trained) if config.compile else trained
    precision = _precision(config, device)
    autocast = _autocast(device, precision)
    parts = Parts(
        model, forward, optimizer, train_loader, val_loader, device, precision, autocast, world
    )
    return parts, data_s


# ----------------------------------------------------------------------------- data and model


@dataclass
class Setup:
    """The data and spec one run trains on, fitted to each other."""

    spec: Spec  # the model, its last fc fitted to the data's classes
    notes: list[str]  # what was done to fit them, printed before training
    class_names: list[str]
    train: Split
    val: Split | None
    mean: list[float]  # per channel, of the training images as the model sees them
    std: list[float]
    data_s: float  # seconds spent reading and fitting the data


def _resolve_spec(config: TrainConfig) -> Spec:
    return presets.resolve(config.model, input_shape=config.input)


def _prepare(config: TrainConfig) -> Setup:
    """Open the data shaped for the model's input, and fit the model's classes to the data."""
    started = time.perf_counter()
    spec = _resolve_spec(config)
    data = shaped.open_for_model(
        config.data,
        spec.input_shape,
        resize=config.resize,
        data_dir=config.data_dir,
        progress=not config.quiet,
    )
    notes = list(data.notes)
    spec, note = shaped.fit_classes(spec, config.model, config.data, data.class_names)
    if note:
        notes.append(note)
    val = "none" if config.val == "none" else (config.val or config.val_split)
    train, val_split = split_validation_(data.dataset, val if val != "none" else None, config.seed)
    if data.dataset.known_stats and not data.fitted:
        mean, std = data.dataset.known_stats
    else:
        mean, std = channel_stats(train.images)
    return Setup(
        spec,
        notes,
        data.class_names,
        train,
        val_split,
        list(mean),
        list(std),
        time.perf_counter() - started,
    )


def _device(config: TrainConfig, world: distributed.World) -> torch.device:
    from cnnkit.devices import resolve_device

    device = resolve_device(config.device)
    if world.backend == "nccl":  # ddp: one GPU per rank on its machine
        return torch.device("cuda", world.local_rank)
    return device


def _precision(config: TrainConfig, device: torch.device) -> str:
    if config.precision != "auto":
        return config.precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params, decay = model.parameters(), config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=decay)


def _loaders(
    setup: Setup, config: TrainConfig, device: torch.device, world: distributed.World
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
        data_memory=config.data_memory,
        rank=world.rank,  # ddp: this rank's shard of every global batch
        world_size=world.size,
    )
    if setup.val is None:
        return train, None
    val = DeviceLoader(
        shard_split(setup.val, world.rank, world.size),  # ddp: counts are summed over ranks
        batch_size=1024,
        device=device,
        mean=setup.mean,
        std=setup.std,
        shuffle=False,
        drop_last=False,
        channels_last=config.channels_last,
        data_memory=config.data_memory,
    )
    return train, val


def build_model(spec: Spec, seed: int, device: torch.device, channels_last: bool) -> nn.Module:
    """The spec's network on `device`, initialised from `seed`."""
    from cnnkit.network import build

    model = build(spec, seed=seed).to(device)
    if not channels_last:
        return model
    # Module.to documents to(memory_format=...), but torch's overloads leave that form out.
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


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
