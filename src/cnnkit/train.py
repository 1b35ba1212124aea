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

from cnnkit import budgets, distributed, presets, runs, train_auto, train_loop, transfer
from cnnkit.cuda_recipe import check_batch_fits, cuda_recipe, cuda_speedups, eval_batch_size
from cnnkit.data import DeviceLoader, Split, channel_stats, parse_augment, shaped
from cnnkit.data import split_validation as split_validation_
from cnnkit.data.dataset import shard_split
from cnnkit.devices import resolve_device, resolve_precision, thread_count
from cnnkit.errors import CheckpointError, CnnkitError, DataError
from cnnkit.plan import plan
from cnnkit.runs_check import check_class_names
from cnnkit.spec import Spec, from_dict, parse_shape
from cnnkit.train_config import (
    ARRAYS_PREFIX,
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
from cnnkit.train_events import (
    Evaluation,
    FitResult,
    Hooks,
    Progress,
    Start,
    TrainingInterrupted,
)
from cnnkit.train_loop import CHECKPOINT_SECONDS, Parts, Trainer
from cnnkit.train_state import TrainState

__all__ = [
    "CHECKPOINT_SECONDS", "DEVICES", "OPTIMIZERS", "PRECISIONS", "RECIPES", "RESIZE_MODES",
    "SCHEDULES", "Evaluation", "FitResult", "Hooks", "Progress", "Start", "TrainConfig", "TrainState",
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


def resume(
    run: str | os.PathLike, hooks: Hooks | None = None, threads: int | None = None
) -> FitResult:
    """Continue an interrupted run exactly where its last checkpoint left it.

    `threads` replaces the run's own --threads (the count changes the speed, not the steps).
    """
    path = runs.prepare_run_dir(run, resume=True)
    state = runs.read_state(path)
    saved = dict(state.get("config") or {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not saved or set(saved) - known:
        raise CheckpointError(
            f"{path}: the resume state holds no usable training config; train again with --overwrite"
        )
    if str(saved.get("data", "")).startswith(ARRAYS_PREFIX):
        raise CheckpointError(
            f"{path} was trained from arrays in memory ({saved['data']}), which a run does not "
            f"keep, so it cannot resume; train again with cnnkit.fit((x, y), out=..., overwrite=True)"
        )
    threads = threads if threads is not None else saved.get("threads")
    config = TrainConfig(**{**saved, "out": str(path), "overwrite": False, "threads": threads})
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
    created, auto_notes = False, list[str]()
    if resume_from is None:
        config, auto_notes = train_auto.resolve_auto(config)
        if train_loop.on_gpu(device := _device(config, distributed.env_world())):
            config = cuda_recipe(config, device)  # before the run saves it; a resume keeps it
    run_dir = resume_from or Path(config.out or default_out(config))
    try:
        with distributed.rank_zero_first(world):  # ddp: only rank 0 prepares the directory
            if resume_from is None:
                if config.from_run is None:
                    _resolve_spec(config)  # a bad --model fails before any directory is touched
                else:
                    runs.read_manifest(config.from_run)  # as a bad --from does
                created = world.main and not run_dir.exists()
                if world.main:
                    runs.prepare_run_dir(run_dir, overwrite=config.overwrite)
                config = dataclasses.replace(config, out=str(run_dir))
            setup = _prepare(config, resume_from)
        setup.notes[:0] = auto_notes
        device = _device(config, world)
        devices = [device.index or 0] if device.type == "cuda" else []
        with (
            torch.random.fork_rng(devices=devices),
            _catch_sigint() as interrupted,
            thread_count(config.threads),
            cuda_speedups(device),
        ):
            parts, data_s = _build(setup, config, device, world)
            if resume_from is None and train_loop.on_gpu(device):
                # One line naming a batch that fits, before the step-0 checkpoint saves anything.
                batch = (parts.model, config.batch_size, setup.spec.input_shape)  # (H, W, C)
                check_batch_fits(*batch, device, parts.autocast, config.channels_last)
            timing = {"data_s": round(data_s, 3)}
            total = None
            if config.time is not None and resume_from is None:
                total = train_auto.budget_steps(config, parts, devices, setup.notes, _optimizer)
            trainer = Trainer(config, hooks, run_dir, setup, parts, interrupted, timing, total)
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
    _transfer(setup, config, model)
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
    source: Any = None  # --from: cnnkit.transfer.SourceRun, whose weights _build copies
    lineage: dict[str, Any] | None = None  # --from: the manifest's "from" record


def _resolve_spec(config: TrainConfig) -> Spec:
    spec = presets.resolve(config.model, input_shape=config.input)
    # Sized from its plan before any data is read or tensor allocated: `fc 2147483647` once
    # tried to allocate 960 GB (issue 11).
    budgets.check_training(plan(spec), config.batch_size)
    return spec


def _prepare(config: TrainConfig, resume_from: Path | None = None) -> Setup:
    """Open the data shaped for the model's input, and fit the model's classes to the data."""
    started = time.perf_counter()
    spec, source, lineage = _source_spec(config, resume_from)
    data = shaped.open_for_model(
        config.data,
        spec.input_shape,
        resize=config.resize,
        data_dir=config.data_dir,
        progress=not config.quiet,
        dataset=config.arrays,
    )
    # Refused now rather than when the manifest is written after training (a newline in a
    # folder's name broke `report`, issue 11).
    check_class_names(data.class_names, f"{config.data}: class_names", DataError)
    notes = list(data.notes)
    if source is not None:
        spec, more = transfer.target_spec(source, config.input, data.class_names)
        notes += more
    else:
        spec, note = shaped.fit_classes(spec, config.model, config.data, data.class_names)
        notes += [note] if note else []
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
        source,
        lineage,
    )


def _source_spec(config: TrainConfig, resume_from: Path | None) -> tuple[Spec, Any, Any]:
    """(spec, source run, lineage): --from's network and weights, or the --model's spec.

    A resumed run built on another takes its spec and lineage from its own manifest, so it
    resumes exactly even when the source run has gone since.
    """
    if config.from_run is None:
        return _resolve_spec(config), None, None
    if resume_from is not None:
        manifest = runs.read_manifest(resume_from)
        return from_dict(manifest["spec"]), None, manifest.get("from")
    source = transfer.open_run(config.from_run)
    spec = source.spec
    if config.input is not None:
        spec = presets.with_input(spec, parse_shape(config.input))
    return spec, source, None


def _transfer(setup: Setup, config: TrainConfig, model: nn.Module) -> None:
    """--from: copy the source run's weights into the fresh model; --freeze: fix its features."""
    if setup.source is not None:
        setup.lineage = transfer.transfer_weights(model, setup.source, setup.class_names)
    if config.freeze:
        frozen = transfer.freeze_features(model)
        if setup.lineage is not None:
            setup.lineage["frozen"] = frozen
    if setup.source is not None and setup.lineage is not None:
        setup.notes.append(transfer.describe(setup.lineage))


def _device(config: TrainConfig, world: distributed.World) -> torch.device:
    device = resolve_device(config.device)
    if world.backend == "nccl":  # ddp: one GPU per rank on its machine
        return torch.device("cuda", world.local_rank)
    return device


def _precision(config: TrainConfig, device: torch.device) -> str:
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
        batch_size=eval_batch_size(device),  # 1024 on the CPU, as before
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
