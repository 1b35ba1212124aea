"""The training loop in named steps (step, evaluate, checkpoint, report) over one state dataclass.

`cnnkit.train.fit` builds the model, optimizer and loaders, then hands them to `Trainer`. The
trainer's numbers live in `TrainState`, which a checkpoint saves whole (`runs.save_state`) and a
resume loads whole, so nothing about the run's position lives anywhere else. On CUDA
(`on_gpu`) the step follows `cnnkit.cuda_recipe`: metrics summed on the device, read when the
loop evaluates or saves; on the CPU each step's loss is read and checked at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit import cuda_recipe, distributed, runs, train_report
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.train_config import TrainConfig, learning_rate
from cnnkit.train_events import (  # re-exported: their home was here
    Evaluation,
    FitResult,
    Hooks,
    TrainingInterrupted,
)
from cnnkit.train_state import TrainState, TrainSums

if TYPE_CHECKING:  # cnnkit.train imports this module
    from cnnkit.train import Setup

CHECKPOINT_SECONDS = 10.0  # without checkpoint_every, state is saved after ~this much training
BEST_WEIGHTS = "best.safetensors"  # --patience: the best weights so far, in the state folder
REPORT_SECONDS = 0.1  # the progress hook is called at most this often (and at each epoch's end)


def on_gpu(device: torch.device) -> bool:
    """Whether fit() takes the CUDA recipe (cnnkit.cuda_recipe) on `device`: the one test of it,
    so the CPU tests can monkeypatch it and run the CUDA path's code on the CPU."""
    return device.type == "cuda"


# ----------------------------------------------------------------------------- state


@dataclass
class Parts:
    """The objects one fit() trains with, built by `cnnkit.train` in a fixed order (RNG)."""

    model: nn.Module
    forward: Callable  # the model, or its torch.compile'd version
    optimizer: torch.optim.Optimizer
    train_loader: Any  # cnnkit.data.DeviceLoader
    val_loader: Any  # cnnkit.data.DeviceLoader | None
    device: torch.device
    precision: str  # fp32 | bf16
    autocast: Any  # bf16 autocast, or a context that does nothing
    world: distributed.World = field(default_factory=distributed.World)  # ddp: this rank


# ----------------------------------------------------------------------------- the loop


class Trainer:
    """One fit() call over its Parts; `train()` runs the loop and returns the FitResult."""

    def __init__(
        self,
        config: TrainConfig,
        hooks: Hooks,
        run_dir: Path,
        setup: Setup,  # spec, notes, classes, splits, mean/std
        parts: Parts,
        interrupted: threading.Event,
        timing: dict[str, float],  # seconds spent before the loop: "data_s", then "setup_s"
        total_steps: int | None = None,  # --time: the steps that fit (None: epochs' steps)
    ) -> None:
        # ddp: only rank 0 reports, so progress is printed once.
        hooks = hooks if parts.world.main else Hooks()
        self.config, self.hooks, self.run_dir, self.setup = config, hooks, run_dir, setup
        self.parts, self.interrupted, self.timing = parts, interrupted, timing
        self.state = TrainState(total_steps=total_steps)
        self.metrics: list[dict[str, Any]] = []  # as in metrics.jsonl
        self.steps_per_epoch = len(parts.train_loader)
        self.total = total_steps or self.steps_per_epoch * config.epochs
        # --patience: a copy of the best weights (on the device), put back when training ends.
        self.best_weights: dict[str, torch.Tensor] | None = None
        every = config.eval_every or (0.2 if config.target_acc else 1.0)
        self.eval_steps = max(1, round(every * self.steps_per_epoch))
        # One .item() per step costs nothing on the CPU; on CUDA it stalls the queue, so losses
        # and accuracies are summed on the device and read when the loop evaluates or saves.
        self.sync_every = 1 if parts.device.type == "cpu" else 25
        self.pending: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # loss, correct, n
        gpu = on_gpu(parts.device)
        self.device_metrics = cuda_recipe.DeviceMetrics(parts.device) if gpu else None
        self.read_step = 0  # the last step whose loss was read (DeviceMetrics)
        # Seconds of this call spent validating, which step_images_per_s leaves out.
        self.eval_s = 0.0
        self.start_step, self.start_elapsed = 0, 0.0  # where this call began (for images/s)
        self.clock = self.last_save = time.perf_counter()  # elapsed_s counts from `clock`
        self.last_report = 0.0
        self.manifest_base = runs.make_manifest(
            setup.spec,
            setup.class_names,
            setup.mean,
            setup.std,
            resize=config.resize or "letterbox",
            train_config=config.to_dict(),
            lineage=setup.lineage,
        )
        self.manifest_base["distributed"] = parts.world.describe()  # ddp: world size, backend

    def restore(self) -> None:
        """Continue from the run's checkpoint: weights, optimizer, RNG and the TrainState."""
        saved = runs.load_state(self.run_dir, self.parts.optimizer, model=self.parts.model)
        runs.restore_rng(saved["tensors"])
        self.state = TrainState.from_dict(saved)
        self.total = self.state.total_steps or self.total
        if not self.parts.world.main:  # ddp: rank 0 saved the sums of all ranks
            self.state.sums = TrainSums()
        if self.state.step >= self.total or self.state.finished:
            raise CheckpointError(
                f"{self.run_dir} already finished at step {self.state.step} of {self.total}; "
                f"nothing to resume (train a new run with more --epochs)"
            )
        runs.truncate_metrics(self.run_dir, self.state.step)
        best = self.run_dir / runs.STATE_DIR / BEST_WEIGHTS  # a resumed run replays bitwise
        if self.config.patience is not None and best.is_file():
            saved_best = safetensors.torch.load_file(str(best), device=str(self.parts.device))
            self.best_weights = saved_best
        self.metrics = runs.read_metrics(self.run_dir)

    def train(self, started: float, fresh: bool) -> FitResult:
        """The loop: report the start, then step until the end, the target or Ctrl-C."""
        state = self.state
        self.start_step, self.start_elapsed = state.step, state.elapsed_s
        self.read_step = state.step
        train_report.start(self)
        if fresh:
            self._checkpoint()  # step 0: the directory is a run, resumable, from the start
        self.timing["setup_s"] = round(time.perf_counter() - started - self.timing["data_s"], 3)
        self.clock = self.last_save = time.perf_counter()
        epoch, start_batch = divmod(state.step, self.steps_per_epoch)
        self.parts.model.train()
        while state.step < self.total and state.stopped is None:
            for x, y in self.parts.train_loader.epoch(epoch, start_batch):  # (B, C, H, W), (B,)
                lr = self._step(x, y)
                if self._after_step(epoch, lr):
                    break
            epoch, start_batch = epoch + 1, 0
        summary = {
            **train_report.figures(self),
            "total_steps": self.total,
            "run": str(self.run_dir),
        }
        manifest, metrics = runs.read_manifest(self.run_dir), list(self.metrics)
        return FitResult(
            self.run_dir, self.parts.model, manifest, metrics, summary, self.setup.notes
        )

    # -------------------------------------------------------------------- step

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on a batch; its loss stays on the device until `_flush`."""
        config, optimizer = self.config, self.parts.optimizer
        lr = learning_rate(config, self.state.step, self.total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with self.parts.autocast:
            logits = self.parts.forward(x)  # (B, classes)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        # ddp: the weight makes DDP's mean of the ranks' gradients the global batch's (1.0, an
        # exact no-op, for one process)
        (loss * distributed.loss_weight(self.parts.world, len(y), config.batch_size)).backward()
        optimizer.step()
        self.state.step += 1
        if self.device_metrics is not None:
            self.device_metrics.add(loss, logits, y)  # no host sync: read by `_flush`
            return lr
        correct = (logits.argmax(1) == y).sum()
        self.pending.append((loss.detach(), correct, len(y)))
        return lr

    def _after_step(self, epoch: int, lr: float) -> bool:
        """Report, evaluate and checkpoint as the step calls for; True once training stops."""
        state, config = self.state, self.config
        batch = state.step - epoch * self.steps_per_epoch
        end_of_epoch = batch == self.steps_per_epoch
        # A run sized by --time may end inside an epoch: its last step is evaluated too.
        evaluate = batch % self.eval_steps == 0 or end_of_epoch or state.step == self.total
        now = time.perf_counter()
        every = config.checkpoint_every
        save = (
            end_of_epoch
            or self.interrupted.is_set()
            or (every is not None and state.step % every == 0)
            or (every is None and now - self.last_save > CHECKPOINT_SECONDS)
        )
        if self.parts.world.joined:  # ddp: every rank saves (and stops) when any rank would
            save, stop = distributed.any_rank(self.parts.world, save, self.interrupted.is_set())
            if stop:
                self.interrupted.set()
        if len(self.pending) >= self.sync_every or evaluate or save:
            self._flush(lr)
            if self.hooks.on_step and (now - self.last_report > REPORT_SECONDS or end_of_epoch):
                self.last_report = now
                train_report.progress(self, epoch, batch, lr, state.elapsed_s + now - self.clock)
        if evaluate and self.parts.val_loader is not None:
            record = self._evaluate(epoch + batch / self.steps_per_epoch, lr)
            if config.target_acc is not None and record["val_acc"] >= config.target_acc:
                state.stopped = "target"
            elif config.patience is not None and state.stale >= config.patience:
                state.stopped = "patience"
        if state.step == self.total and state.stopped is None:
            state.stopped = "done"
        if state.stopped is not None and self.best_weights and state.best_step != state.step:
            # The run's final weights are the best ones: the last checkpoint saves them.
            self.parts.model.load_state_dict(self.best_weights)
            state.restored_step = state.best_step
        if save or state.stopped is not None:
            self._tick()
            self._checkpoint(finished=state.stopped is not None)
            self.clock = self.last_save = time.perf_counter()  # saving is not training time
            if self.interrupted.is_set():
                raise TrainingInterrupted(self.run_dir, state.step)
        return state.stopped is not None  # --time sizes runs that end inside an epoch

    def _tick(self) -> None:
        """Add the time since `clock` to the state's elapsed seconds and restart the clock."""
        now = time.perf_counter()
        self.state.elapsed_s += now - self.clock
        self.clock = now

    def _flush(self, lr: float) -> None:
        """Move the pending losses to the host; stop at the first one that is not finite."""
        if self.device_metrics is not None:
            self._read_device_metrics(self.device_metrics)
            return
        pending, self.pending = self.pending, []
        losses = torch.stack([loss for loss, _, _ in pending]).tolist()
        corrects = torch.stack([c for _, c, _ in pending]).tolist()
        first = self.state.step - len(pending) + 1
        sums = self.state.sums
        for offset, (value, correct, (_, _, n)) in enumerate(
            zip(losses, corrects, pending, strict=True)
        ):
            if not math.isfinite(value):
                raise ConfigError(
                    f"step {first + offset}: the loss became {value}; lower --lr (now {self.config.lr:g}); "
                    f"the last good checkpoint (step {self.state.saved_step}) is kept in {self.run_dir}"
                )
            sums.loss += value * n
            sums.correct += correct
            sums.count += n

    def _read_device_metrics(self, metrics: cuda_recipe.DeviceMetrics) -> None:
        """CUDA: add the device's sums since the last read; stop if a loss in them was not finite."""
        sums = metrics.read()  # the one host sync
        first, self.read_step = self.read_step + 1, self.state.step
        if not sums.finite:
            raise ConfigError(
                f"steps {first}-{self.state.step}: the loss became nan or inf; lower --lr (now "
                f"{self.config.lr:g}); the last good checkpoint (step {self.state.saved_step}) "
                f"is kept in {self.run_dir}"
            )
        self.state.sums.loss += sums.loss * sums.count
        self.state.sums.correct += round(sums.accuracy * sums.count)
        self.state.sums.count += sums.count

    # -------------------------------------------------------------------- evaluate

    def _evaluate(self, epoch: float, lr: float) -> dict[str, Any]:
        """Validate, log the record (metrics.jsonl, hook) and keep the best accuracy."""
        self._gather_sums()
        state, sums = self.state, self.state.sums
        began = time.perf_counter()
        val_loss, val_acc = self._validate()
        record = {
            "epoch": round(epoch, 4),
            "step": state.step,
            "elapsed_s": None,  # filled in below, once this evaluation is timed
            "train_loss": sums.loss / max(sums.count, 1),
            "train_acc": sums.correct / max(sums.count, 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
        }
        state.sums = TrainSums()
        if state.best_val_acc is None or val_acc > state.best_val_acc:
            state.best_val_acc, state.best_step, state.stale = val_acc, state.step, 0
            if self.config.patience is not None:
                self._keep_best()
        else:
            state.stale += 1
        self._tick()
        self.eval_s += self.clock - began
        record["elapsed_s"] = round(state.elapsed_s, 3)
        self.metrics.append(record)
        runs.append_metrics(self.run_dir, record)
        self.clock = time.perf_counter()
        if self.hooks.on_eval:
            self.hooks.on_eval(record)
        if self.hooks.on_snapshot and self.setup.val is not None:
            probe = self.setup.val.images[0]
            self.hooks.on_snapshot(Evaluation(self.run_dir, self.parts.model, record, probe))
        return record

    def _keep_best(self) -> None:
        """--patience: copy the best weights, also to the state folder for a resumed run."""
        weights = self.parts.model.state_dict()
        self.best_weights = {name: t.detach().clone() for name, t in weights.items()}
        host = {name: t.cpu().contiguous() for name, t in self.best_weights.items()}
        path = self.run_dir / runs.STATE_DIR / BEST_WEIGHTS  # the step-0 checkpoint made it
        runs.atomic_write_bytes(path, safetensors.torch.save(host))

    @torch.no_grad()
    def _validate(self) -> tuple[float, float]:
        """(mean loss, accuracy) over the validation split."""
        model, loader, device = self.parts.model, self.parts.val_loader, self.parts.device
        model.eval()
        if on_gpu(device):  # one sum on the device at a large batch, read once
            result = cuda_recipe.evaluate(self.parts.forward, loader, self.parts.autocast)
            model.train()
            return result.loss, result.accuracy
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        distributed.sync_buffers(self.parts.world, model)  # ddp: rank 0's batch-norm statistics
        # ddp: the module itself, as DDP's first forward after training syncs buffers, a collective
        # that ranks with different numbers of validation batches would not match
        forward = model if self.parts.world.joined else self.parts.forward
        for x, y in loader.epoch(0):
            with self.parts.autocast:
                logits = forward(x).float()  # (B, classes)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        model.train()
        # ddp: each rank validated its shard of the split; the sums are the whole split's.
        loss, right, count = distributed.all_sum(
            self.parts.world, [loss_sum.item(), correct.item(), len(loader.labels)]
        )
        return loss / count, right / count

    def _gather_sums(self) -> None:
        """ddp: rank 0 holds the training sums of all ranks, the others start again from 0."""
        sums = self.state.sums
        loss, correct, count = distributed.sum_to_rank_zero(
            self.parts.world, [sums.loss, sums.correct, sums.count]
        )
        self.state.sums = TrainSums(loss, correct, int(count))

    # -------------------------------------------------------------------- checkpoint

    def _checkpoint(self, finished: bool = False) -> None:
        """Weights and manifest, then the resume state: model, optimizer, RNG, TrainState.

        Weights that are no longer finite are never saved, so the last checkpoint stays good.
        """
        state, model = self.state, self.parts.model
        bad = next((t for t in model.state_dict().values() if not t.isfinite().all()), None)
        if bad is not None:
            value = "nan" if bad.isnan().any() else "inf"
            raise ConfigError(
                f"step {state.step}: the weights became {value}; lower --lr (now {self.config.lr:g}); "
                f"the last good checkpoint (step {state.saved_step}) is kept in {self.run_dir}"
            )
        state.finished = finished
        world = self.parts.world
        self._gather_sums()
        distributed.sync_buffers(world, model)  # ddp: every rank holds what rank 0 saves
        if finished:  # ddp: the proof that the ranks ended with one model
            self.manifest_base["distributed"] = distributed.summary(world, model)
        if world.main:
            manifest = dict(self.manifest_base, metrics=train_report.figures(self))
            runs.save_model(self.run_dir, model, manifest)
            extra = {**state.to_dict(), "config": self.config.to_dict(), "world_size": world.size}
            rng = runs.capture_rng()
            runs.save_state(self.run_dir, self.parts.optimizer, extra, rng, model=model)
        distributed.wait(world)  # ddp: the others read the run only once it is written
        state.saved_step = state.step
