"""`cnnkit export`: a run to an ONNX file, checked against PyTorch before it is written."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add `export` to the `cnnkit` parser."""
    export = subparsers.add_parser(
        "export",
        help="write a run as an ONNX model (checked against PyTorch) for torch-free prediction",
        description="Export a run to ONNX with its preprocessing in the model's metadata, then "
        "compare it with the PyTorch model on up to 1,000 images of the run's data plus black, "
        "white and noise images; a mismatch is an error and nothing is written.",
    )
    export.add_argument("run", help="the run directory ('cnnkit train --out DIR')")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="only onnx for now")
    export.add_argument(
        "--out", metavar="FILE", help="default RUN/model.onnx (RUN/model.int8.onnx with --quantize)"
    )
    export.add_argument(
        "--opset", type=int, default=18, metavar="N", help="ONNX opset (default 18)"
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    export.add_argument(
        "--quantize",
        choices=("int8",),
        help="ONNX Runtime dynamic int8 quantisation, rated on the run's test data",
    )
    export.add_argument(
        "--force", action="store_true", help="keep an int8 model that loses over 1 point"
    )
    export.add_argument(
        "--data",
        metavar="SOURCE",
        help="images for the checks (default: the run's training data, test split)",
    )
    export.add_argument("--data-dir", metavar="DIR", help="where downloaded data sets are kept")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from cnnkit.data.shaped import run_split
    from cnnkit.export import PARITY_TOLERANCE, export_onnx
    from cnnkit.predict import load

    source, images, labels = run_split(load(args.run).manifest, args.data, args.data_dir)
    result = export_onnx(
        args.run,
        args.out,
        images=images,
        labels=labels,
        opset=args.opset,
        overwrite=args.overwrite,
        quantize=args.quantize,
        force=args.force,
    )
    parity = result.parity
    print(
        f"wrote {result.path} ({result.bytes / 1024:.1f} KiB, opset {result.opset}, dynamic batch)"
    )
    print(
        f"parity with PyTorch on {parity.images:,} images of {source} + {parity.edge_images} "
        f"edge images: max |logit diff| {parity.max_abs_diff:.1e} (limit "
        f"{PARITY_TOLERANCE:.0e}), top-1 agreement {parity.top1_agreement:.0%}"
    )
    rating = result.quantization
    if rating is not None:
        print(
            f"int8: accuracy {rating.fp32_accuracy:.2f}% -> {rating.int8_accuracy:.2f}% "
            f"({rating.int8_accuracy - rating.fp32_accuracy:+.2f} points) on {rating.images:,} images; size "
            f"{rating.fp32_bytes / 1024:.1f} KiB -> {rating.int8_bytes / 1024:.1f} KiB"
        )
    return 0
