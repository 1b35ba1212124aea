"""TrainState: where a run is, everything a checkpoint saves besides tensors (pure Python).

`cnnkit.train_loop.Trainer` keeps its numbers here; a checkpoint saves the state whole
(`runs.save_state`) and a resume loads it whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainSums:
    """Training figures summed since the last evaluation."""

    loss: float = 0.0  # loss * images
    correct: float = 0.0  # images classified right
    count: int = 0  # images


@dataclass
class TrainState:
    """Where a run is: everything a checkpoint saves besides tensors, saved and loaded whole."""

    step: int = 0  # steps done in all
    elapsed_s: float = 0.0  # training and evaluating, this run and the runs it resumes
    sums: TrainSums = field(default_factory=TrainSums)  # since the last evaluation
    best_val_acc: float | None = None  # the best validation accuracy so far
    best_step: int | None = None  # the step that reached it
    saved_step: int = 0  # the step of the last checkpoint, named when the loss diverges
    stopped: str | None = None  # "done" at the last step, "target" at --target-acc, "patience"
    stale: int = 0  # evaluations since the best one (--patience)
    total_steps: int | None = None  # the run's length, sized once by --time (None: by epochs)
    restored_step: int | None = None  # --patience: the best weights, of this step, were put back
    finished: bool = False  # the last checkpoint is the end of training

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainState:
        names = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{key: value for key, value in saved.items() if key in names})
        state.sums = TrainSums(**saved["sums"])
        state.saved_step = state.step  # the checkpoint just loaded
        return state
