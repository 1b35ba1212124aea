"""`cnnkit explain` (one small layer, step by step) and `cnnkit solve` (which layers fit)."""

from __future__ import annotations

import argparse
import json

from cnnkit.cli.types import finite_float, non_negative_int


def register(subparsers) -> None:
    """Add `explain` and `solve` to the `cnnkit` parser."""
    explain = subparsers.add_parser(
        "explain",
        help="compute one small conv or pooling layer step by step",
        description="Compute one small conv (one filter), max pooling or average pooling layer\n"
        "with the NumPy reference and print every step: the padded input, each output\n"
        "position's patch and arithmetic, and the output.",
        epilog="examples:\n"
        "  cnnkit explain maxpool --input '[[0,1,0.5,10],[2,2.5,1,-8],[4,0,5,6],[15,1,2,3]]' "
        "--size 2\n"
        "  cnnkit explain conv --input 5x5 --filter 3x3 --stride 2 --padding 1 --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("op", metavar="{conv,maxpool,avgpool}", help="the layer to compute")
    explain.add_argument(
        "--input",
        required=True,
        help="a matrix such as '[[0,1],[2,3]]' (a 3-D list: one matrix per channel), "
        "or a size HxW or HxWxC filled with random integers 0..9",
    )
    explain.add_argument(
        "--filter",
        help="conv: a matrix such as '[[1,0],[0,-1]]' or a size FhxFw filled with random "
        "-1, 0, 1 (default 3x3); pooling: the window as FxF",
    )
    explain.add_argument("--size", type=int, help="the window (pooling) or filter (conv) F x F")
    explain.add_argument(
        "--stride", type=int, help="step between windows (default: 1 for conv, F for pooling)"
    )
    explain.add_argument(
        "--padding", default="valid", help="valid (default), same (TensorFlow SAME), or N pixels"
    )
    explain.add_argument(
        "--bias", type=finite_float, help="conv only: added to every output (default 0)"
    )
    explain.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed for random values (default 0)"
    )
    explain.add_argument("--json", action="store_true", help="print the steps as JSON")
    explain.set_defaults(handler=_explain)

    solve = subparsers.add_parser(
        "solve",
        help="list the (filter, stride, padding) that map one shape onto another",
        description="List every square filter, stride and padding (valid, same, pN) that maps\n"
        "IN onto OUT, with the number of filters and parameters.",
        epilog="example:\n  cnnkit solve 28x28x3 14x14x20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    solve.add_argument("in_shape", metavar="IN", help="input shape HxWxC, such as 28x28x3")
    solve.add_argument("out_shape", metavar="OUT", help="output shape HxWxC, such as 14x14x20")
    solve.add_argument("--kind", default="conv", help="conv (default) or pool")
    solve.add_argument(
        "--max-filter", type=int, default=11, help="largest filter side to try (default 11)"
    )
    solve.add_argument("--json", action="store_true", help="print the solutions as JSON")
    solve.set_defaults(handler=_solve)


def _explain(args: argparse.Namespace) -> int:
    # NumPy is imported here, not at the top, so other commands start without it.
    from cnnkit.explain import explain_from_text
    from cnnkit.render_explain import render_explanation

    explanation = explain_from_text(
        args.op,
        args.input,
        filter_text=args.filter,
        size=args.size,
        stride=args.stride,
        padding_text=args.padding,
        bias=args.bias,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(explanation.to_dict()))
    else:
        print(render_explanation(explanation), end="")
    return 0


def _solve(args: argparse.Namespace) -> int:
    from cnnkit.render_explain import render_solutions
    from cnnkit.solve import solve

    solutions = solve(args.in_shape, args.out_shape, args.kind, args.max_filter)
    if args.json:
        print(json.dumps([s.to_dict() for s in solutions]))
    else:
        print(
            render_solutions(solutions, args.in_shape, args.out_shape, args.kind, args.max_filter),
            end="",
        )
    # Like grep: 1 when nothing matched, so scripts can tell.
    return 0 if solutions else 1
