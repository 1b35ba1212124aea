"""`cnnkit evaluate` and `cnnkit predict`: use a trained run on a data set or on image files."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnkit.onnx_runtime import OnnxClassifier
    from cnnkit.predict import Classifier

from cnnkit.cli.types import add_foreign_onnx_arguments, add_threads, only_for_onnx

SPLIT_PREFERENCE = ("test", "val", "train")  # as cnnkit.data.shaped prefers them, for --split


def register(subparsers) -> None:
    """Add `evaluate` and `predict` to the `cnnkit` parser."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="accuracy, loss, per-class scores and confusions of a run on a data set",
        description="Evaluate a trained run on a data set (default: the run's own): its test "
        "split if it has one, else val, else the validation images the run held out, else all.",
    )
    evaluate.add_argument("run", help="the run directory ('cnnkit train --out DIR')")
    evaluate.add_argument(
        "--data",
        metavar="SOURCE",
        help="a data set name (mnist, mnist:test), an image folder or an .npz file "
        "(default: the data the run was trained on)",
    )
    evaluate.add_argument("--data-dir", metavar="DIR", help="where downloaded data sets are kept")
    evaluate.add_argument(
        "--split",
        choices=SPLIT_PREFERENCE,
        help="the split to evaluate (default: test, val, the run's held-out part, train)",
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
    add_foreign_onnx_arguments(predict)
    predict.add_argument(
        "--top-k", type=int, default=5, metavar="K", help="classes to show per image (default 5)"
    )
    predict.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="largest image, in pixels, read from its header before decoding (default 40000000)",
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
    chosen = data.choose_split(args.split)
    split, notes = chosen.split, [chosen.note] if chosen.note else []
    for note in data.notes:  # what was done to the data to fit the model, said once
        print(f"note: {note}", file=sys.stderr)
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
        document = {
            "run": str(args.run),
            "data": data.source,
            "split": chosen.name,
            "split_description": chosen.description,
            "notes": data.notes + notes,
            **report,
        }
        if plots:
            document["plots"] = plots
        print(json.dumps(document, indent=2))
    else:
        text = render_evaluation(
            report, run=str(args.run), data=data.source, split=chosen.description, notes=notes
        )
        print(text)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from cnnkit.onnx_runtime import is_onnx_path, load_onnx
    from cnnkit.preprocess import image_files
    from cnnkit.render_use import render_input_notes, render_predictions

    files = image_files(args.files)  # before loading, so a typo'd folder fails fast
    max_pixels = _refuse_special_or_huge(files, args.max_pixels)
    classifier: OnnxClassifier | Classifier
    if is_onnx_path(args.run):  # ONNX Runtime on the CPU: never imports torch
        from cnnkit.threads import default_threads

        threads = args.threads or default_threads()
        classifier = load_onnx(args.run, args.input, args.classes, threads=threads)
    else:
        from cnnkit.devices import use_threads
        from cnnkit.predict import load

        only_for_onnx(args)
        use_threads(args.threads)
        classifier = load(args.run, device=_device(args.device))
    classifier.max_pixels = max_pixels
    results = classifier.predict(
        [str(file) for file in files], top_k=args.top_k, batch_size=args.batch_size
    )
    print(json.dumps(results, indent=2) if args.json else render_predictions(results))
    for line in render_input_notes(results):  # stderr: stdout stays the results alone
        print(line, file=sys.stderr)
    failed = [result for result in results if result["error"] is not None]
    if failed:
        # The reasons go to stderr too, so they are seen when stdout is piped (--json > file).
        for result in failed:
            print(f"cnnkit: {result['error']}", file=sys.stderr)
        print(
            f"cnnkit: {len(failed)} of {len(results)} image(s) could not be read", file=sys.stderr
        )
    return 1 if failed else 0


def _refuse_special_or_huge(files: list[Any], max_pixels: int | None) -> int:
    """The pixel budget; one line (exit 2) for a FIFO or device named like an image, or an image
    whose header declares more pixels. Missing or corrupt files are reported beside the others."""
    from cnnkit.data.images import DEFAULT_MAX_PIXELS, open_image
    from cnnkit.errors import ConfigError, ImageError, ImageTooLarge

    if max_pixels is not None and max_pixels < 1:
        raise ConfigError(f"--max-pixels {max_pixels} must be at least 1, e.g. 40000000")
    budget = max_pixels or DEFAULT_MAX_PIXELS
    for file in files:
        if file.exists() and not file.is_file():  # is_file follows links: /dev/zero is not one
            raise ImageError(f"{file}: not a regular file (a FIFO or device); give image files")
        try:
            open_image(file, max_pixels=budget, decode=False)
        except ImageTooLarge:
            raise
        except ImageError:
            continue
    return budget
