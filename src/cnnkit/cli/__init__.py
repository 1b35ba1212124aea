"""The `cnnkit` command: thin subcommands over the library.

Each command group lives in its own module with a `register(subparsers)` function; handlers
import torch and other heavy modules inside themselves, so `cnnkit plan` stays instant.
A CnnkitError becomes one line on stderr and exit code 2; `--debug` shows the traceback instead.
So does a missing torch, safetensors or matplotlib: `cnnkit[runtime]` installs none of them,
and every command but the .onnx ones needs them (`MissingExtraError` names the `full` extra).
"""

from __future__ import annotations

import argparse
import sys

from cnnkit.errors import CnnkitError, MissingExtraError

# Order is the order of `cnnkit --help`.
_GROUPS = (
    "plan_cmds",
    "explain_cmds",
    "data_cmds",
    "train_cmds",
    "use_cmds",
    "runs_cmds",
    "inspect_cmds",
    "export_cmds",
    "serve_cmds",
)


# The base install (and `cnnkit[runtime]`) leaves these out; the `full` extra brings them.
FULL_PACKAGES = ("torch", "safetensors", "matplotlib")
FULL_EXTRA = "pip install 'cnnkit[full]'"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit 2, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="cnnkit", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for group in _GROUPS:
        importlib.import_module(f"cnnkit.cli.{group}").register(subparsers)
    return parser


def _version() -> str:
    from cnnkit import __version__

    return f"cnnkit {__version__}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except CnnkitError as error:
        if debug:
            raise
        print(f"cnnkit: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cnnkit plan ... | head`: the reader left, nothing to report
        return 0
    except OSError as error:
        # A file the user named that cannot be read or written: their fix, not a bug of ours.
        if debug:
            raise
        where = f": {error.filename}" if error.filename else ""
        print(f"cnnkit: error: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("cnnkit: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    """The command's exit code; a missing package of the `full` extra becomes MissingExtraError."""
    try:
        return int(args.handler(args) or 0)
    except ModuleNotFoundError as error:
        package = (error.name or "").split(".")[0]
        if package not in FULL_PACKAGES:
            raise
        raise MissingExtraError(
            f"'cnnkit {args.command}' needs {package}, which is not installed (without the full "
            f"extra, only .onnx models predict and serve); run {FULL_EXTRA}"
        ) from error


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
