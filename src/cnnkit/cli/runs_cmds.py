"""`cnnkit runs`: the runs in a folder as a table, or several runs' curves in one chart."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def register(subparsers) -> None:
    """Add `runs` to the `cnnkit` parser."""
    runs = subparsers.add_parser(
        "runs",
        help="the runs in a folder: model, data, best accuracy, time, speed and origin",
        description="List the runs under a folder (default runs/), or draw several runs' "
        "training curves in one chart with --compare.",
    )
    runs.add_argument("dir", nargs="?", default="runs", help="the folder of runs (default runs/)")
    runs.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="runs whose loss and error-rate curves to draw together (paths, or names in DIR)",
    )
    runs.add_argument(
        "--out",
        default="compare.png",
        metavar="PNG",
        help="the chart --compare writes (default compare.png)",
    )
    runs.add_argument("--json", action="store_true", help="print a JSON document instead")
    runs.set_defaults(handler=run_runs)


def run_runs(args: argparse.Namespace) -> int:
    from cnnkit.render_use import render_runs
    from cnnkit.runs_table import list_runs

    if args.compare:
        return _compare(args)
    rows = list_runs(args.dir)
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
    else:
        print(render_runs(rows, args.dir))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from cnnkit.inspect.plots import compare_figure
    from cnnkit.runs import read_manifest, read_metrics

    found = {}
    for name in args.compare:
        path = Path(name) if Path(name).is_dir() else Path(args.dir) / name
        read_manifest(path)  # a CheckpointError that names the folder when it is not a run
        found[name] = read_metrics(path)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compare_figure(found).save(out)
    print(f"wrote {out} ({len(found)} run{'s' if len(found) != 1 else ''}: {', '.join(found)})")
    return 0
