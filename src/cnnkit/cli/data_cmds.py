"""`cnnkit data info` and `cnnkit data show`: what a data source holds, and a look at it."""

from __future__ import annotations

import argparse
import json

from cnnkit.cli.types import non_negative_int
from cnnkit.errors import ConfigError


def register(subparsers) -> None:
    """Add `data` with its subcommands `info` and `show` to the `cnnkit` parser."""
    data = subparsers.add_parser("data", help="inspect a data source: counts, classes, samples")
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    commands.required = True

    info = commands.add_parser(
        "info",
        help="splits, classes, shape, files and checksums, skipped files",
        description="Describe a data source: a registry name (mnist, mnist:test), a folder of "
        "class folders, an .npz file, or mnist-mini (the default, shipped with cnnkit).",
    )
    _common(info)
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(handler=run_info)

    show = commands.add_parser("show", help="write a labelled grid of sample images")
    _common(show)
    show.add_argument("--out", required=True, metavar="PNG", help="where to write the grid")
    show.add_argument("--split", default=None, help="train, val or test (default: the first)")
    show.add_argument("--count", type=int, default=64, metavar="N", help="images (default 64)")
    show.add_argument(
        "--seed", type=non_negative_int, default=0, help="which random sample (default 0)"
    )
    show.set_defaults(handler=run_show)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", default=None, help="data source (default mnist-mini)")
    parser.add_argument("--data-dir", metavar="DIR", help="look for registry files here first")
    parser.add_argument("--strict", action="store_true", help="make unreadable images fatal")
    parser.add_argument("--size", metavar="HxW", help="fit images to this size, e.g. 32x32")
    parser.add_argument(
        "--channels", type=int, choices=(1, 3), help="fit images to 1 or 3 channels"
    )
    parser.add_argument(
        "--resize",
        default="letterbox",
        choices=("letterbox", "stretch", "crop"),
        help="how images of another aspect ratio are fitted (default letterbox)",
    )


def check_png_path(text: str) -> None:
    """Refuse an --out that cannot become a PNG file, with the fix."""
    from pathlib import Path

    out = Path(text)
    if not out.name or out.suffix.lower() != ".png":
        raise ConfigError(f"--out {text!r}: give a file name ending in .png, such as grid.png")
    if out.is_dir():
        raise ConfigError(f"--out {text}: is a folder; give a file name such as {out / 'grid.png'}")
    if not out.parent.is_dir():
        what = (
            "is a file, not a folder" if out.parent.exists() else "does not exist; create it first"
        )
        raise ConfigError(f"--out {text}: the folder {out.parent} {what}")


MAX_SIDE = (
    4096  # a larger --size is almost surely a typo, and 60,000 such images do not fit in memory
)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'32x32' -> (32, 32); ConfigError on anything else."""
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--size {text!r} is not HxW with positive whole numbers; use e.g. 32x32")
    height, width = int(parts[0]), int(parts[1])
    if max(height, width) > MAX_SIDE:
        raise ConfigError(f"--size {text}: at most {MAX_SIDE} pixels a side; use e.g. 32x32")
    return height, width


def _open(args: argparse.Namespace):
    from cnnkit.data import open_source

    return open_source(
        args.source,
        data_dir=args.data_dir,
        strict=args.strict,
        size=parse_size(args.size),
        channels=args.channels,
        resize=args.resize,
    )


def run_info(args: argparse.Namespace) -> int:
    summary = _open(args).summary()
    print(json.dumps(summary, indent=2) if args.json else render_info(summary))
    return 0


def render_info(summary: dict) -> str:
    """The text form of `Dataset.summary()`."""
    from cnnkit.render import count, table

    height, width, channels = summary["shape"]
    splits = list(summary["splits"])
    lines = [
        f"source   {summary['source']}",
        "splits   " + ", ".join(f"{name} {count(n)}" for name, n in summary["splits"].items()),
        f"shape    {height}x{width}x{channels} ({channels} channel{'s' if channels > 1 else ''})",
    ]
    if summary["known_stats"]:
        mean, std = summary["known_stats"]
        lines.append(f"stats    mean {mean}, std {std} (known values)")
    lines += ["", f"{len(summary['classes'])} classes"]
    rows = [[c["name"], *(count(c["counts"][s]) for s in splits)] for c in summary["classes"]]
    lines.append(table(["class", *splits], rows, right=[False] + [True] * len(splits)))
    lines += ["", "files"]
    for file in summary["files"]:
        if file["sha256"] is None:
            state = file.get("note", "")
        else:
            state = f"sha256 {file['sha256'][:16]}... " + (
                "verified" if file["verified"] else f"not verified ({file.get('note', '')})"
            )
        lines.append(f"  {file['path']}  {state}")
    skipped = summary["skipped"]
    lines += ["", f"skipped  {len(skipped)} file(s)" if skipped else "skipped  none"]
    lines += [f"  {s['path']}: {s['reason']}" for s in skipped[:5]]
    if len(skipped) > 5:
        lines.append(f"  ... and {len(skipped) - 5} more (see --json)")
    lines += [f"note     {note}" for note in summary["notes"]]
    return "\n".join(lines)


def run_show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnkit.data.grid import sample_grid
    from cnnkit.errors import DataError

    if args.count < 1:
        raise ConfigError(f"--count {args.count} must be at least 1")
    check_png_path(args.out)  # before any work: a typo costs nothing
    dataset = _open(args)
    split = args.split or next(iter(dataset.splits))
    if split not in dataset.splits:
        raise DataError(
            f"--split {split}: {dataset.source} has only {', '.join(dataset.splits)}; "
            f"choose one of those"
        )
    out = Path(args.out)
    grid = sample_grid(dataset.splits[split], dataset.class_names, count=args.count, seed=args.seed)
    temp = out.with_name(f".{out.name}.part")
    try:
        grid.save(temp, format="PNG")
        temp.replace(out)  # atomic: a reader never sees half a PNG
    except OSError as error:
        raise ConfigError(
            f"--out {args.out}: cannot write it ({error.strerror or error})"
        ) from None
    finally:
        temp.unlink(missing_ok=True)
    shown = min(args.count, len(dataset.splits[split]))
    capped = f" (the split has only {shown})" if shown < args.count else ""
    print(f"wrote {out}: {shown} {split} images of {dataset.source}{capped}")
    return 0
