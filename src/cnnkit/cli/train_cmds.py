"""`cnnkit train` and `cnnkit demo`: thin commands over cnnkit.train.fit.

The plan table and evaluation lines go to stdout, the progress bar to stderr (only on a
terminal); with --json, stdout holds only the metrics records, one JSON object per line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from cnnkit.cli.types import add_threads, learning_rate, seed_int
from cnnkit.train_config import (  # pure Python: building the parser imports no torch
    OPTIMIZERS,
    PRECISIONS,
    RESIZE_MODES,
    SCHEDULES,
    TrainConfig,
)

DEMO_OUT = "runs/demo"
DEMO_EPOCHS = 5  # mnist-mini: measured 99.15% test after 5 epochs, 15 s of training on 2 cores
DEMO_SAMPLES = 8  # test digits written as PNG and predicted at the end of the demo
# Every other TrainConfig field is a `cnnkit train` option, which `--resume` refuses (it takes
# them from the run itself); --quiet and --threads are options --resume allows; arrays come
# only from cnnkit.fit; `given` records which options the user chose.
_NOT_OPTIONS = ("warmup", "channels_last", "quiet", "threads", "arrays", "given")


def register(subparsers) -> None:
    """Add `train` and `demo` to the `cnnkit` parser (without importing torch: `plan` stays fast)."""
    train = subparsers.add_parser(
        "train",
        help="train a network on a data set into a run directory",
        description="Train a CNN. Options left out come from the model's recipe "
        "(cnnkit.train.RECIPES), tuned for MNIST; Ctrl-C saves the state for --resume.",
    )
    _data_options(train.add_argument_group("data").add_argument)
    _recipe_options(train.add_argument_group("recipe (left out: the model's own)").add_argument)
    _run_options(train.add_argument_group("the run").add_argument)
    add_threads(train)
    add = train.add_argument
    add("--quiet", action="store_true", help="print only the summary")
    add("--json", action="store_true", help="print the metrics records as JSON lines")
    add(
        "--serve", nargs="?", type=int, const=8000, metavar="PORT", help="watch it live (port 8000)"
    )
    train.set_defaults(handler=run_train)
    _register_demo(subparsers)


def _data_options(add: Any) -> None:
    add(
        "--model",
        metavar="MODEL",
        help="preset, '>' notation or spec file (default: auto, chosen from the data)",
    )
    add("--data", metavar="SOURCE", help="mnist-mini (default, embedded), mnist, a folder, an .npz")
    add("--data-dir", metavar="DIR", help="where downloaded data sets are kept")
    add("--data-memory", metavar="M", help="auto (default), ram, or disk: batches read from disk")
    add("--input", metavar="HxWxC", help="train the model on this input shape, e.g. 28x28x1")
    add(
        "--resize",
        metavar="MODE",
        help=f"fit images of another aspect ratio: {', '.join(RESIZE_MODES)}",
    )
    add("--roi-crop", action="store_true", help="GTSRB's layout: crop images to their signs")


def _recipe_options(add: Any) -> None:
    add("--epochs", type=int, metavar="N", help="passes over the training split")
    add("--time", type=float, metavar="S", help="train for S seconds (one-cycle sized to fit)")
    add("--patience", type=int, metavar="N", help="stop after N evaluations without a better val")
    add("--batch-size", type=int, metavar="N", help="images per step")
    add("--lr", type=learning_rate, metavar="LR", help="peak learning rate")
    add("--optimizer", metavar="NAME", help=f"one of {', '.join(OPTIMIZERS)}")
    add("--schedule", metavar="NAME", help=f"learning-rate schedule: {', '.join(SCHEDULES)}")
    add("--weight-decay", type=float, metavar="WD", help="L2 penalty, e.g. 5e-4")
    add("--label-smoothing", type=float, metavar="S", help="e.g. 0.1; 0 for plain cross-entropy")
    add("--augment", metavar="LIST", help="e.g. translate=2 or translate=2,flip,cutout=8; none")
    add("--val-split", type=float, metavar="F", help="hold out this fraction of train (0.1)")
    add("--val", metavar="SPLIT", help="validate on the source's 'test' or 'val' split, or none")
    add("--target-acc", type=float, metavar="A", help="stop once val accuracy reaches A (0.99)")
    add(
        "--eval-every",
        type=float,
        metavar="E",
        help="epochs between evaluations (1; 0.2 w/ target)",
    )


def _run_options(add: Any) -> None:
    add("--checkpoint-every", type=int, metavar="N", help="save state every N steps (~10 s)")
    add("--seed", type=seed_int, metavar="N", help="weights, split, batch order, augmentation")
    add("--device", metavar="DEV", help="auto (default), cpu, cuda or cuda:N")
    add("--precision", metavar="P", help=f"one of {', '.join(PRECISIONS)}")
    add("--compile", action="store_const", const=True, help="torch.compile the model")
    # ddp: --nproc is how many processes train, not an option of the run (--resume takes it).
    add("--nproc", type=int, metavar="N", help="train data-parallel in N processes (ranks)")
    add("--sync-bn", action="store_const", const=True, help="batch norm over all ranks (ddp)")
    add("--out", metavar="DIR", help="the run directory (default runs/<model>-<data>)")
    add("--overwrite", action="store_const", const=True, help="replace a run at --out")
    add("--resume", metavar="RUN", help="continue an interrupted run exactly; takes no options")
    add(
        "--from",
        dest="from_run",
        metavar="RUN",
        help="start from a run's weights on --data (a new head if the classes differ)",
    )
    add(
        "--freeze", action="store_const", const=True, help="with --from: keep the conv layers fixed"
    )
    add("--peak-tflops", type=float, metavar="T", help="the GPU's dense peak, for MFU (CUDA only)")


def _register_demo(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="train the default network on the embedded digits and predict a few",
        description="Plan, train (~1 minute on a laptop CPU), save and use the default network "
        "on mnist-mini, the embedded 10,000 + 2,000 MNIST digits.",
    )
    demo.add_argument("--out", default=DEMO_OUT, metavar="DIR", help=f"default {DEMO_OUT}")
    demo.add_argument(
        "--epochs", type=int, default=DEMO_EPOCHS, metavar="N", help=f"default {DEMO_EPOCHS}"
    )
    demo.add_argument("--device", default="auto", metavar="DEV", help="auto, cpu or cuda")
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run at --out (runs/demo is always replaced)",
    )
    demo.set_defaults(handler=run_demo)


# ----------------------------------------------------------------------------- train


def run_train(args: argparse.Namespace) -> int:
    from cnnkit import train, transfer
    from cnnkit.errors import ConfigError

    for name in ("resume", "model", "data", "data_dir", "out", "input", "from_run"):
        if getattr(args, name, None) is not None and not getattr(args, name).strip():
            option = _flag(name)
            raise ConfigError(f"{option} is empty; give a value or leave {option} out")
    if args.roi_crop:  # kept in the source string ('DIR:roi'), so the run reopens its data alike
        if args.data is None or args.resume is not None:
            raise ConfigError(
                "--roi-crop crops the images of --data DIR (GTSRB's layout); give --data DIR "
                "(with --resume the run keeps its own data: drop --roi-crop)"
            )
        args.data = f"{args.data.rstrip('/')}:roi"
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        raise ConfigError(
            f"--peak-tflops must be a positive number such as 989, got {args.peak_tflops}"
        )
    options = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _NOT_OPTIONS]
    given = {name: getattr(args, name) for name in options if getattr(args, name) is not None}
    if args.resume is not None:
        if given:
            names = ", ".join(_flag(name) for name in given)
            raise ConfigError(
                f"--resume continues with the run's own options; remove {names} "
                f"(or start a new run with --out and those options)"
            )
        nproc = args.nproc or _saved_world_size(args.resume)
        if nproc is not None and _launching(nproc):
            return _launch(nproc, None, args.resume, args)
        return _train(lambda hooks: train.resume(args.resume, hooks, args.threads), args)
    model, from_run = transfer.model_and_source(
        given.pop("model", None), given.pop("from_run", None)
    )
    config = train.TrainConfig.for_model(
        model, quiet=args.quiet, threads=args.threads, from_run=from_run, **given
    )
    if _launching(args.nproc):
        return _launch(args.nproc, config, None, args)
    return _train(lambda hooks: train.fit(config, hooks), args)


def _flag(name: str) -> str:
    """The option of a TrainConfig field: from_run is --from, the rest --name-with-dashes."""
    return "--" + {"from_run": "from"}.get(name, name).replace("_", "-")


# ----------------------------------------------------------------------------- ddp: --nproc


def _launching(nproc: int | None) -> bool:
    """--nproc starts ranks, unless this process already is one (torchrun's)."""
    return (
        nproc is not None and "RANK" not in os.environ and "TORCHELASTIC_RUN_ID" not in os.environ
    )


def _saved_world_size(run: str) -> int | None:
    """The world size a run was trained with, so a bare --resume continues it alike."""
    from cnnkit import runs

    try:
        ranks = int(runs.read_state(run).get("world_size", 1))
    except Exception:  # resume() itself says what is wrong with the run
        return None
    return ranks if ranks > 1 else None


def _launch(nproc: int, config: Any, resume: str | None, args: argparse.Namespace) -> int:
    from cnnkit import distributed

    distributed.check_nproc(nproc, *((config.device, config.sync_bn) if config else ("cpu",)))
    options = config.to_dict() if config else None
    code, line = distributed.launch(nproc, _worker, (options, resume, args.quiet, args.json))
    if line:
        print(f"cnnkit: error: {line}", file=sys.stderr)
    return code


def _worker(config: dict | None, resume: str | None, quiet: bool, json_lines: bool) -> None:
    """One rank started by --nproc: what `torchrun -m cnnkit train` runs, from the options."""
    from cnnkit import train
    from cnnkit.errors import CnnkitError

    args = argparse.Namespace(quiet=quiet, json=json_lines, serve=None, peak_tflops=None)
    if resume is not None:
        start = lambda hooks: train.resume(resume, hooks)  # noqa: E731
    else:
        start = lambda hooks: train.fit(train.TrainConfig(**(config or {})), hooks)  # noqa: E731
    try:
        code = _train(start, args)
    except CnnkitError as error:
        print(f"cnnkit: error: {error}", file=sys.stderr, flush=True)
        code = 2
    sys.exit(code)


def _train(start: Any, args: argparse.Namespace) -> int:
    from cnnkit import distributed, render_train
    from cnnkit.train import TrainingInterrupted

    main = distributed.env_world().main  # ddp: only rank 0 prints (and serves)
    printer = _Printer(quiet=args.quiet, json_lines=args.json, serve=args.serve if main else None)
    try:
        result = start(printer.hooks())
    except TrainingInterrupted as interrupted:
        printer.end_bar()
        if main:
            print(f"cnnkit: {interrupted}", file=sys.stderr)
        return 130
    except distributed.PeerFailed as failed:
        if main and "TORCHELASTIC_RUN_ID" not in os.environ:  # ddp: else the launcher names it
            print(f"cnnkit: error: {failed}", file=sys.stderr)
        return distributed.PEER_EXIT
    finally:
        printer.end_bar()
    if main:
        printer.text(render_train.summary(result))
        for warning in result.summary.get("warnings") or []:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        from cnnkit.cuda_recipe import summary_mfu_line

        mfu = summary_mfu_line(result, args.peak_tflops)  # None on the CPU
        if mfu:
            printer.text(mfu)
        if printer.server is not None:  # the explorer stays up on the trained model until Ctrl-C
            printer.text(f"training finished; the explorer stays at {printer.url} until Ctrl-C")
            with contextlib.suppress(KeyboardInterrupt):
                printer.server.join()
    return 0


class _Printer:
    """The hooks of the train command: plan and notes, a bar on stderr, a line per evaluation."""

    def __init__(
        self, quiet: bool, json_lines: bool, out: Any = None, serve: int | None = None
    ) -> None:
        self.quiet, self.json_lines, self.serve = quiet, json_lines, serve
        self.server: Any = None  # the --serve thread, once training has started
        self.url = ""
        self.out = out or sys.stdout
        self.bar = sys.stderr.isatty() and not quiet
        self.bar_open = False
        self.epochs = 1

    def hooks(self) -> Any:
        from cnnkit.inspect.snapshots import snapshot_hook
        from cnnkit.train import Hooks

        # Snapshots always: `cnnkit serve RUN` may be started on the run while it trains.
        return Hooks(
            on_start=self.on_start,
            on_step=self.on_step,
            on_eval=self.on_eval,
            on_snapshot=snapshot_hook(),
        )

    def text(self, text: str) -> None:
        """Human text: stdout normally, stderr under --json so stdout stays JSON lines."""
        print(text, file=sys.stderr if self.json_lines else self.out, flush=True)

    def on_start(self, start: Any) -> None:
        from cnnkit import render_train
        from cnnkit.render import render_plan

        self.epochs = start.total_steps // max(start.steps_per_epoch, 1)
        if not self.quiet:
            self.text(render_plan(start.plan) + "\n\n" + render_train.start_lines(start))
        if self.serve is not None:
            from cnnkit.serve.live import serve_in_background

            self.url, self.server = serve_in_background(start.run, port=self.serve)
            self.text(f"watch it live at {self.url}")

    def on_step(self, progress: Any) -> None:
        from cnnkit import render_train

        if self.bar:
            print("\r" + render_train.progress_line(progress), end="", file=sys.stderr, flush=True)
            self.bar_open = True

    def on_eval(self, record: dict[str, Any]) -> None:
        from cnnkit import render_train

        self.end_bar()
        if self.json_lines:
            print(json.dumps(record), file=self.out, flush=True)
        elif not self.quiet:
            self.text(render_train.eval_line(record, self.epochs))

    def end_bar(self) -> None:
        if self.bar_open:
            print(file=sys.stderr, flush=True)
            self.bar_open = False


# ----------------------------------------------------------------------------- demo


def run_demo(args: argparse.Namespace) -> int:
    """Plan, train and save the default network on mnist-mini, then predict a few test digits."""
    import numpy as np
    from PIL import Image

    import cnnkit
    from cnnkit import presets, render_train, train
    from cnnkit.data import open_source

    printer = _Printer(quiet=False, json_lines=False)
    config = train.TrainConfig.for_model(
        presets.DEFAULT_PRESET, data="mnist-mini", val="test", epochs=args.epochs,
        device=args.device, out=args.out,
        # The demo's own folder is rewritten on every run; any other run is the user's to keep.
        overwrite=args.overwrite or Path(args.out) == Path(DEMO_OUT),
    )  # fmt: skip
    started = time.perf_counter()
    try:
        result = train.fit(config, printer.hooks())
    finally:
        printer.end_bar()
    print(render_train.summary(result))

    # A few test digits as image files, predicted through the saved run like any user's images.
    test = open_source("mnist-mini:test", progress=False).splits["test"]
    samples = Path(result.run) / "samples"
    samples.mkdir(exist_ok=True)
    for old in samples.glob("digit_*.png"):
        old.unlink()
    picks = np.random.default_rng(config.seed).choice(len(test), DEMO_SAMPLES, replace=False)
    files, labels = [], []
    for index, pick in enumerate(picks):
        label = int(test.labels[pick])
        path = samples / f"digit_{index}_label{label}.png"
        Image.fromarray(test.images[pick][..., 0]).save(path)
        files.append(str(path))
        labels.append(str(label))
    classifier = cnnkit.load(result.run)
    rows = classifier.predict(files, top_k=3)
    print(f"\npredictions of {len(files)} test digits saved as PNG files:")
    print(render_train.predictions(rows, labels))
    right = sum(row["top"][0]["class"] == label for row, label in zip(rows, labels, strict=True))
    print(
        f"\n{right}/{len(rows)} right; test accuracy {render_train.percent(result.final_val_acc)}; "
        f"demo took {render_train.duration(time.perf_counter() - started)}"
    )
    return 0
