"""What the training loop reports: the start, the progress, and the run's summary figures.

Functions of a `Trainer` (cnnkit.train_loop), kept apart so the loop reads as its steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from cnnkit.plan import plan
from cnnkit.train_config import ending_warnings
from cnnkit.train_events import Progress, Start

if TYPE_CHECKING:  # cnnkit.train_loop imports this module
    from cnnkit.train_loop import Trainer


def start(self: Trainer) -> None:
    """Hooks.on_start: the plan, the sizes and the notes, before the first step."""
    if self.hooks.on_start:
        setup, parts = self.setup, self.parts
        self.hooks.on_start(
            Start(
                plan(setup.spec),
                self.run_dir,
                str(parts.device),
                parts.precision,
                len(setup.train),
                0 if setup.val is None else len(setup.val),
                self.steps_per_epoch,
                self.total,
                self.state.step,
                setup.notes,
            )
        )


def progress(self: Trainer, epoch: int, batch: int, lr: float, elapsed: float) -> None:
    """Hooks.on_step: the state after a step, with the speed so far."""
    state, sums, batches = self.state, self.state.sums, self.steps_per_epoch
    seconds = max(elapsed - self.start_elapsed, 1e-9)
    per_step = seconds / max(state.step - self.start_step, 1)
    self.hooks.on_step(  # type: ignore[misc]
        Progress(
            epoch=epoch,
            epochs=self.config.epochs,
            batch=batch,
            batches=batches,
            step=state.step,
            total_steps=self.total,
            loss=sums.loss / max(sums.count, 1),
            acc=sums.correct / max(sums.count, 1),
            lr=lr,
            images_per_s=(state.step - self.start_step) * self.config.batch_size / seconds,
            elapsed_s=elapsed,
            eta_s=(batches - batch) * per_step,
        )
    )


def figures(self: Trainer) -> dict[str, Any]:
    """The run's summary figures, as the manifest's "metrics" and FitResult.summary hold them."""
    state, config, setup = self.state, self.config, self.setup
    final = self.metrics[-1] if self.metrics else {}
    if state.restored_step is not None:  # the best weights were put back (--patience)
        final = next((m for m in self.metrics if m["step"] == state.best_step), final)
    images = (state.step - self.start_step) * config.batch_size
    seconds = state.elapsed_s - self.start_elapsed
    step_seconds = seconds - self.eval_s  # the steps alone: what MFU divides by
    figures = {
        "steps": state.step,
        "epochs": round(state.step / max(self.steps_per_epoch, 1), 4),
        "best_val_acc": state.best_val_acc,
        "best_step": state.best_step,
        "final_val_acc": final.get("val_acc"),
        "final_val_loss": final.get("val_loss"),
        "final_train_acc": final.get("train_acc"),
        "train_s": round(state.elapsed_s, 3),
        "images_per_s": round(images / seconds, 1) if seconds > 0 else None,
        "step_images_per_s": round(images / step_seconds, 1) if step_seconds > 0 else None,
        "val": config.val or f"{config.val_split:g} of train",
        "train_images": len(setup.train),
        "val_images": 0 if setup.val is None else len(setup.val),
        "device": str(self.parts.device),
        "precision": self.parts.precision,
        "threads": torch.get_num_threads(),
        "stopped": state.stopped,
        "restored_step": state.restored_step,
        **self.timing,
    }
    figures["warnings"] = ending_warnings(figures, len(setup.class_names), config)
    return figures
