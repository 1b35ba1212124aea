"""What the training loop tells its observers: the hooks, what they are given, and the result.

`cnnkit.train_loop.Trainer` fills these in; `cnnkit.train` and `cnnkit.train_loop` re-export them.
Torch is imported only for type checking (FitResult and Evaluation hold an nn.Module), so a
hook's module can import these types without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnkit.render_train import fit_result_line

if TYPE_CHECKING:
    from torch import nn

    from cnnkit.plan import Plan


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
    """The state after a step; given to `Hooks.on_step` (at most every ~0.1 s; on CUDA only when
    the loop reads the device's sums: at each evaluation and checkpoint)."""

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
    # After on_eval, with the model: cnnkit.inspect.snapshots.snapshot_hook() writes live views.
    on_snapshot: Callable[[Evaluation], None] | None = None


@dataclass
class Evaluation:
    """An evaluation and the model it scored; given to `Hooks.on_snapshot`."""

    run: Path
    model: nn.Module  # the training model, not compiled: observe it in eval mode, change nothing
    record: dict[str, Any]  # the metrics record, as on_eval gets it
    probe: Any  # uint8 (H, W, C) numpy: the first validation image, the same at every evaluation


@dataclass
class FitResult:
    """What a run produced; the same figures are in the run's manifest under "metrics"."""

    run: Path
    model: nn.Module
    manifest: dict[str, Any]
    metrics: list[dict[str, Any]]  # one record per evaluation, as in metrics.jsonl
    summary: dict[str, Any]  # best/final accuracy, seconds, images/s, why it stopped
    notes: list[str] = field(default_factory=list)
    __repr__ = fit_result_line  # one line: run, model, val accuracies, steps, seconds

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
