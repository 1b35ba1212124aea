"""`cnnkit inspect` (filters, feature maps, top patches, Grad-CAM, invariance) and `cnnkit report`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

VIEWS = ("filters", "features", "gradcam", "patches", "invariance")


def register(subparsers: Any) -> None:
    inspect = subparsers.add_parser(
        "inspect",
        help="filters, feature maps, top patches, Grad-CAM and shift invariance as PNG + JSON",
        description="Draw what a trained run has learnt; each view is a PNG with its numbers as JSON.",
    )
    inspect.add_argument("run", help="the run directory ('cnnkit train --out DIR')")
    inspect.add_argument(
        "--image",
        metavar="FILE",
        help="the image to look at (default: the data's first test image)",
    )
    inspect.add_argument(
        "--what",
        default=",".join(VIEWS),
        metavar="LIST",
        help=f"comma-separated views among {', '.join(VIEWS)} (default: all)",
    )
    inspect.add_argument(
        "--data",
        metavar="SOURCE",
        help="data for patches and shift accuracy (default: the run's training data)",
    )
    inspect.add_argument("--data-dir", metavar="DIR", help="where downloaded data sets are kept")
    inspect.add_argument(
        "--layer", metavar="NAME", help="Grad-CAM's layer (default: the last with spatial extent)"
    )
    inspect.add_argument(
        "--class",
        dest="target",
        type=int,
        metavar="N",
        help="Grad-CAM/invariance class (default: predicted)",
    )
    inspect.add_argument(
        "--images",
        type=int,
        default=10000,
        metavar="N",
        help="images scanned for top patches (default 10000)",
    )
    inspect.add_argument(
        "--shift",
        type=int,
        default=4,
        metavar="K",
        help="shifts of -K..K px for invariance (default 4)",
    )
    inspect.add_argument(
        "--out",
        default="inspect",
        metavar="DIR",
        help="folder for the PNG and JSON files (default inspect/)",
    )
    inspect.set_defaults(handler=run_inspect)
    _register_report(subparsers)


def _register_report(subparsers: Any) -> None:
    report = subparsers.add_parser(
        "report",
        help="one self-contained HTML page: plan, curves, evaluation, filters, features, Grad-CAM",
        description="Write one HTML file with every image embedded; it opens offline.",
    )
    report.add_argument("run", help="the run directory ('cnnkit train --out DIR')")
    report.add_argument(
        "--data",
        metavar="SOURCE",
        help="evaluation data (default: the run's own: test split, else val, else the "
        "validation images the run held out)",
    )
    report.add_argument("--data-dir", metavar="DIR", help="where downloaded data sets are kept")
    report.add_argument(
        "--images",
        type=int,
        default=5000,
        metavar="N",
        help="images scanned for top patches (default 5000)",
    )
    report.add_argument("--out", metavar="FILE", help="the HTML file (default: RUN/report.html)")
    report.set_defaults(handler=run_report)


# ----------------------------------------------------------------------------- shared steps


def _views(text: str) -> list[str]:
    from cnnkit.errors import ConfigError

    chosen = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VIEWS]
    if unknown or not chosen:
        raise ConfigError(
            f"--what {text!r}: unknown view(s) {', '.join(unknown) or '(none given)'}; choose among {', '.join(VIEWS)}"
        )
    return chosen


def _positive(value: int, option: str) -> int:
    from cnnkit.errors import ConfigError

    if value < 1:
        raise ConfigError(f"{option} {value} must be at least 1")
    return value


def _save(out: Path, name: str, image: Any, numbers: dict[str, Any]) -> str:
    image.save(out / f"{name}.png")
    (out / f"{name}.json").write_text(json.dumps(numbers, indent=1), encoding="utf-8")
    return f"{out / name}.png"


# ----------------------------------------------------------------------------- inspect


def run_inspect(args: argparse.Namespace) -> int:
    from cnnkit.data.shaped import run_split
    from cnnkit.inspect import figures
    from cnnkit.inspect.gradcam import check_class, choose_layer, gradcam
    from cnnkit.inspect.invariance import image_invariance
    from cnnkit.inspect.views import feature_maps, filters, normaliser
    from cnnkit.predict import load

    chosen = _views(args.what)
    _positive(args.images, "--images")
    classifier = load(args.run)
    model, names = classifier.model, classifier.class_names
    # Every option is checked before any work, so a typo costs no time.
    check_class(args.target, len(names))
    if "gradcam" in chosen or args.layer is not None:
        layer = choose_layer(model, args.layer)
    if "filters" in chosen:
        weights = filters(model)
    data = None
    if "patches" in chosen or args.data or args.image is None:
        data = run_split(classifier.manifest, args.data, args.data_dir)
    if args.image or data is None:
        image, shown = classifier.prepare(args.image), args.image
    else:  # no --image: the data's first image
        image, shown = data[1][0], f"{data[0]} #0"
    normalise = normaliser(classifier)
    x = normalise(image[None])  # (1, C, H, W)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    start = time.perf_counter()
    if "filters" in chosen:
        written.append(_save(out, "filters", figures.filters_figure(weights), weights.to_dict()))
    if "features" in chosen:
        maps = feature_maps(model, x)
        written.append(
            _save(
                out,
                "features",
                figures.features_figure(image, maps),
                {"layers": [m.to_dict() for m in maps]},
            )
        )
    if "gradcam" in chosen:
        result = gradcam(model, x, args.target, layer)
        written.append(
            _save(out, "gradcam", figures.gradcam_figure(image, result, names), result.to_dict())
        )
    if "invariance" in chosen:
        grid = image_invariance(model, image, normalise, args.shift, args.target)
        written.append(
            _save(out, "invariance", figures.invariance_figure(grid, names), grid.to_dict())
        )
    written += _data_views(out, chosen, args, model, normalise, data)
    probs = classifier.predict(image, top_k=1)[0]["top"][0]
    print(f"image: {shown}; predicted {probs['class']} (p = {probs['prob']:.3f})")
    for path in written:
        print(f"wrote {path} (+ .json)")
    print(f"{len(written)} view(s) in {time.perf_counter() - start:.2f} s")
    return 0


def _data_views(
    out: Path, chosen: list[str], args: argparse.Namespace, model: Any, normalise: Any, data: Any
) -> list[str]:
    """The views drawn over many images of `data`: shift accuracy (with --data) and top patches."""
    from cnnkit.inspect import figures
    from cnnkit.inspect.invariance import dataset_invariance
    from cnnkit.inspect.patches import top_patches

    written = []
    if "invariance" in chosen and args.data:
        source, images, labels = data
        count = min(len(images), args.images, 1000)  # (4K + 1) passes over them
        shifted = dataset_invariance(model, images[:count], labels[:count], normalise, args.shift)
        written.append(
            _save(
                out,
                "invariance_data",
                figures.shift_accuracy_figure(shifted),
                {"data": source, **shifted.to_dict()},
            )
        )
    if "patches" in chosen:
        source, images, _ = data
        layers = top_patches(model, images[: args.images], normalise)
        numbers = {
            "data": source,
            "images": min(args.images, len(images)),
            "layers": [entry.to_dict() for entry in layers],
        }
        written.append(_save(out, "patches", figures.patches_figure(layers), numbers))
    return written


# ----------------------------------------------------------------------------- report


def run_report(args: argparse.Namespace) -> int:
    from cnnkit.data.shaped import run_split
    from cnnkit.inspect.report import Evaluation, build_report
    from cnnkit.predict import load
    from cnnkit.runs import read_metrics

    _positive(args.images, "--images")
    start = time.perf_counter()
    classifier = load(args.run)
    source, images, labels = run_split(classifier.manifest, args.data, args.data_dir)
    page = build_report(
        classifier,
        str(args.run),
        read_metrics(args.run),
        Evaluation(source, images, labels),
        patch_images=args.images,
    )
    out = Path(args.out) if args.out else Path(args.run) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(
        f"wrote {out} ({len(page) / 1024:.0f} KiB, self-contained) in {time.perf_counter() - start:.1f} s"
    )
    return 0
