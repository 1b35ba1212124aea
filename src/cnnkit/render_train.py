"""Text for `cnnkit train` and `cnnkit demo`: the progress line, evaluation lines, the summary.

Pure formatting of what cnnkit.train returns; nothing here computes or prints.
"""

from __future__ import annotations

from typing import Any

BAR_WIDTH = 24


def duration(seconds: float | None) -> str:
    """12.3s under a minute, else 1:02:03 / 2:03."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def progress_line(progress: Any) -> str:
    """One epoch's bar: `epoch 1/2 [=======>      ] 117/234 loss 0.312 acc 91.2% 5,120 img/s eta 12.0s`.

    `progress` is a cnnkit.train.Progress; the ETA is this epoch's, at the current speed.
    """
    p = progress
    filled = int(BAR_WIDTH * p.batch / max(p.batches, 1))
    bar = "=" * filled + (">" if filled < BAR_WIDTH else "") + " " * (BAR_WIDTH - filled - 1)
    return (
        f"epoch {p.epoch + 1}/{p.epochs} [{bar[:BAR_WIDTH]}] {p.batch}/{p.batches} "
        f"loss {p.loss:.3f} acc {100 * p.acc:.1f}% {p.images_per_s:,.0f} img/s eta {duration(p.eta_s)}"
    )


def eval_line(record: dict[str, Any], epochs: int) -> str:
    """One evaluation: `epoch 1.00/2  step 234  train loss 0.31 acc 91.2%  val loss 0.10 acc 97.1%`."""
    return (
        f"epoch {record['epoch']:.2f}/{epochs}  step {record['step']}  "
        f"train loss {record['train_loss']:.4f} acc {percent(record['train_acc'])}  "
        f"val loss {record['val_loss']:.4f} acc {percent(record['val_acc'])}  "
        f"lr {record['lr']:.4g}  {duration(record['elapsed_s'])}"
    )


def start_lines(start: Any) -> str:
    """What fit() is about to do (a cnnkit.train.Start), after the plan table."""
    lines = [
        f"data: {start.train_images:,} training and {start.val_images:,} validation images; "
        f"{start.steps_per_epoch} steps per epoch, {start.total_steps} in all",
        f"device: {start.device} ({start.precision}); run: {start.run}",
    ]
    if start.start_step:
        lines.append(f"resuming at step {start.start_step}")
    lines.extend(f"note: {note}" for note in start.notes)
    return "\n".join(lines)


def summary(result: Any) -> str:
    """The end of a run (a cnnkit.train.FitResult): accuracy, time, speed, where it is saved."""
    s = result.summary
    why = {"target": "reached --target-acc", "done": "finished"}.get(s.get("stopped"), "stopped")
    lines = [
        f"{why} after {s['steps']} steps ({s['epochs']:g} epochs): "
        f"final val acc {percent(s.get('final_val_acc'))}, best {percent(s.get('best_val_acc'))} "
        f"(step {s.get('best_step')})",
        f"time: {duration(s.get('train_s'))} training and evaluating, "
        f"{duration(s.get('data_s'))} loading data, {duration(s.get('setup_s'))} setting up; "
        f"{s.get('images_per_s') or 0:,.0f} images/s on {s.get('device')}",
        f"saved to {result.run} (use it: cnnkit predict {result.run} IMAGE)",
    ]
    return "\n".join(lines)


def predictions(rows: list[dict[str, Any]], labels: list[str] | None = None) -> str:
    """Predictions as `file  label  top-3` lines, from Classifier.predict's records."""
    from cnnkit.render import table

    body = []
    for index, row in enumerate(rows):
        if row.get("error"):
            top = f"error: {row['error']}"
        else:
            top = "  ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in row["top"])
        label = labels[index] if labels else ""
        body.append([str(row["file"]), label, top])
    return table(["file", "label", "top classes"], body)


def fit_result_line(result: Any) -> str:
    """FitResult's repr, one line: `FitResult(run='runs/x', model='digits', best_val_acc=0.9912,
    final_val_acc=0.9905, steps=844, seconds=12.3)`; a run built on another shows `from RUN`."""
    config = result.manifest.get("train_config") or {}
    source = config.get("from_run")
    model = f"from {source}" if source else config.get("model", "?")
    acc = {k: result.summary.get(k) for k in ("best_val_acc", "final_val_acc")}
    shown = {k: "None" if v is None else f"{v:.4f}" for k, v in acc.items()}
    return (
        f"FitResult(run={str(result.run)!r}, model={model!r}, "
        f"best_val_acc={shown['best_val_acc']}, final_val_acc={shown['final_val_acc']}, "
        f"steps={result.summary.get('steps')}, seconds={result.summary.get('train_s')})"
    )
