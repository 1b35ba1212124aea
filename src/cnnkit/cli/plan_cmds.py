"""`cnnkit plan` and `cnnkit presets`: the planner's commands (pure Python, no torch)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    """Add `plan` and `presets` to the `cnnkit` parser."""
    plan = subparsers.add_parser(
        "plan",
        help="every layer's shape, parameters, MACs and receptive field",
        description="Plan a CNN: a preset name, a spec in the '>' notation, or a .yaml/.json spec file.",
    )
    plan.add_argument(
        "model", help="preset (see 'cnnkit presets'), \"28x28x1 > conv 6@5x5 > ...\" or a spec file"
    )
    plan.add_argument("--input", metavar="HxWxC", help="override the input shape, e.g. 28x28x3")
    plan.add_argument(
        "--classes", type=int, metavar="N", help="resize the last fc layer to N classes"
    )
    plan.add_argument(
        "--auto-flatten",
        action="store_true",
        help="insert 'flatten' before an fc on a spatial input",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as a JSON document")
    plan.set_defaults(handler=run_plan)

    presets = subparsers.add_parser("presets", help="list the named architectures")
    presets.add_argument("--json", action="store_true", help="print {name: spec} as JSON")
    presets.set_defaults(handler=run_presets)


def run_plan(args: argparse.Namespace) -> int:
    from cnnkit.plan import plan_with_notes
    from cnnkit.presets import resolve
    from cnnkit.render import render_plan

    spec = resolve(args.model, input_shape=args.input, classes=args.classes)
    result = plan_with_notes(spec, flatten=args.auto_flatten)
    print(json.dumps(result.to_dict(), indent=2) if args.json else render_plan(result))
    return 0


def run_presets(args: argparse.Namespace) -> int:
    from cnnkit.presets import PRESETS
    from cnnkit.render import table

    if args.json:
        print(json.dumps({name: text for name, (text, _) in PRESETS.items()}, indent=2))
        return 0
    print(
        table(
            ["preset", "about", "spec"],
            [[name, about, text] for name, (text, about) in PRESETS.items()],
        )
    )
    return 0
