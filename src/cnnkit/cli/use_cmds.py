"""`cnnkit evaluate` and `cnnkit predict`: use a trained run on a data set or on image files."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cnnkit.cli.types import add_threads

SPLIT_PREFERENCE = ("test", "val", "train")  # as cnnkit.data.shaped prefers them, for --split


def register(subparsers) -> None:
    """Add `evaluate` and `predict` to the `cnnkit` parser."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="accuracy, loss, per-class scores and confusions of a run on a data set",
        description="Evaluate a trained run on a data set: its test split if it has one, "
        "else val, else train.",
    )
    evaluate.add_argument("run", help="the run directory ('cnnkit train --out DIR')")
    evaluate.add_argument(
        "--data",
        required=True,
        metavar="SOURCE",
        help="a data set name (mnist, mnist:test), an image folder or an .npz file",
    )
    evaluate.add_argument("--data-dir", metavar="DIR", help="where downloaded data sets are kept")
    evaluate.add_argument(
        "--split",
        choices=SPLIT_PREFERENCE,
        help="the split to evaluate (default: test, val, train)",
    )
    evaluate.add_argument(
        "--plots",
        metavar="DIR",
        help="also draw the confusion matrix, per-class accuracy, top losses and training curves",
    )
    _common(evaluate, batch_size=512)
    evaluate.set_defaults(handler=run_evaluate)

    predict = subparsers.add_parser(
        "predict",
        help="the top classes of image files",
        description="Predict image files (PNG, JPEG, BMP, GIF, WEBP) with a trained run; "
        "folders are searched for images. Exit code 1 when an image could not be read.",
    )
    predict.add_argument(
        "run", help="the run directory ('cnnkit train --out DIR') or an .onnx model (no torch)"
    )
    predict.add_argument("files", nargs="+", metavar="FILE_OR_FOLDER", help="images or folders")
    for flag, text in (("--input", "HxWxC, e.g. 28x28x1"), ("--classes", "a,b,c or a file")):
        predict.add_argument(flag, help=f"{text}: for an .onnx model not made by 'cnnkit export'")
    predict.add_argument(
        "--top-k", type=int, default=5, metavar="K", help="classes to show per image (default 5)"
    )
    _common(predict, batch_size=256)
    predict.set_defaults(handler=run_predict)


def _common(parser: argparse.ArgumentParser, batch_size: int) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=batch_size, metavar="N", help="images per forward pass"
    )
    add_threads(parser)


def _device(name: str) -> Any:
    from cnnkit.devices import resolve_device

    return resolve_device(name)


def run_evaluate(args: argparse.Namespace) -> int:
    from cnnkit.data.shaped import open_for_run
    from cnnkit.devices import use_threads
    from cnnkit.predict import load
    from cnnkit.render_use import render_evaluation

    use_threads(args.threads)
    classifier = load(args.run, device=_device(args.device))
    data = open_for_run(classifier.manifest, args.data, data_dir=args.data_dir, progress=True)
    name, split, note = data.choose_split(args.split)
    notes = [note] if note else []
    plots: dict[str, str] = {}
    labels = split.labels
    if args.plots:
        from cnnkit.inspect.plots import evaluate_with_outputs, evaluation_plots
        from cnnkit.runs import read_metrics

        report, fitted, log_probs = evaluate_with_outputs(classifier, split.images, labels)
        written = evaluation_plots(
            report,
            args.plots,
            images=fitted,
            labels=labels,
            log_probs=log_probs,
            metrics=read_metrics(args.run),
        )
        plots = {name: str(path) for name, path in written.items()}
        notes.append("plots: " + ", ".join(plots.values()))
    else:
        report = classifier.evaluate(split.images, labels, batch_size=args.batch_size)
    if args.json:
        document = {"run": str(args.run), "data": args.data, "split": name, **report}
        if plots:
            document["plots"] = plots
        print(json.dumps(document, indent=2))
    else:
        print(render_evaluation(report, run=str(args.run), data=args.data, split=name, notes=notes))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from cnnkit.onnx_runtime import is_onnx_path, load_onnx
    from cnnkit.preprocess import image_files
    from cnnkit.render_use import render_predictions

    files = image_files(args.files)  # before loading, so a typo'd folder fails fast
    if is_onnx_path(args.run):  # ONNX Runtime on the CPU: never imports torch
        from cnnkit.threads import default_threads

        threads = args.threads or default_threads()
        classifier = load_onnx(args.run, args.input, args.classes, threads=threads)
    else:
        from cnnkit.devices import use_threads
        from cnnkit.predict import load

        _only_for_onnx(args)
        use_threads(args.threads)
        classifier = load(args.run, device=_device(args.device))
    results = classifier.predict(
        [str(file) for file in files], top_k=args.top_k, batch_size=args.batch_size
    )
    print(json.dumps(results, indent=2) if args.json else render_predictions(results))
    failed = [result for result in results if result["error"] is not None]
    if failed:
        # The reasons go to stderr too, so they are seen when stdout is piped (--json > file).
        for result in failed:
            print(f"cnnkit: {result['error']}", file=sys.stderr)
        print(
            f"cnnkit: {len(failed)} of {len(results)} image(s) could not be read", file=sys.stderr
        )
    return 1 if failed else 0


def _only_for_onnx(args: argparse.Namespace) -> None:
    from cnnkit.errors import ConfigError

    if args.input is not None or args.classes is not None:
        raise ConfigError(
            f"--input and --classes are for an .onnx model; {args.run} is a run, which records both"
        )
