"""`cnnkit serve RUN`: the explorer page and prediction API for one trained run.

    cnnkit serve runs/lenet                 # http://127.0.0.1:8000, until Ctrl-C
    cnnkit serve runs/lenet --port 0        # a free port, printed
    cnnkit serve runs/lenet --host 0.0.0.0 --token-file secret.txt
    cnnkit serve runs/lenet/model.onnx      # the prediction API through ONNX Runtime, no torch

Binding anything but loopback needs a token: a model server reachable from the network
without one is refused at start, not discovered later.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from cnnkit.cli.types import add_foreign_onnx_arguments, only_for_onnx
from cnnkit.errors import ConfigError

MIN_TOKEN_CHARS = 16  # a guessable token is no protection; `secrets.token_urlsafe(32)` gives 43


def register(subparsers) -> None:
    """Add `serve` to the `cnnkit` parser."""
    parser = subparsers.add_parser(
        "serve",
        help="explore a trained model in the browser, with a prediction API",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "run",
        help="run directory from `cnnkit train --out`, or an .onnx model (predictions only, no torch)",
    )
    add_foreign_onnx_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port; 0 picks a free one (default 8000)"
    )
    parser.add_argument(
        "--token-file",
        help="file holding the bearer token every /api request must send; required off loopback",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host name browsers may use (repeatable); loopback names are always allowed",
    )
    parser.add_argument(
        "--max-upload", default="10MB", help="largest request body, e.g. 10MB, 512KB (default 10MB)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="largest image, in pixels, decided from its header before decoding; larger get 413 "
        "(default 40000000)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        metavar="N",
        help="open connections; past them a new one gets 503 at once (default 1000)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch (or ONNX Runtime) threads for inference (default 1: the other core serves HTTP)",
    )
    parser.set_defaults(handler=_serve)


def parse_size(text: str) -> int:
    """'10MB' -> 10485760; plain digits are bytes. Binary units, as upload limits usually are."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text, flags=re.IGNORECASE)
    if not match or int(match.group(1)) < 1:
        raise ConfigError(f"--max-upload {text!r} is not a size; give e.g. 10MB, 512KB or 1000000")
    return int(match.group(1)) * 1024 ** "_KMG".index(match.group(2).upper() or "_")


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--token-file {path!r} cannot be read ({error})") from None
    if len(token) < MIN_TOKEN_CHARS or any(ch.isspace() for ch in token):
        raise ConfigError(
            f"--token-file {path!r} holds a {len(token)}-character token; use one line of at least "
            f"{MIN_TOKEN_CHARS} characters without spaces, e.g. from "
            f"python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


def _serve(args: argparse.Namespace) -> int:
    from cnnkit.data.images import DEFAULT_MAX_PIXELS
    from cnnkit.onnx_runtime import is_onnx_path
    from cnnkit.serve.security import is_loopback
    from cnnkit.serve.server import serve

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a port; give 0-65535 (0 picks a free one)")
    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads} must be at least 1")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise ConfigError(f"--max-pixels {args.max_pixels} must be at least 1, e.g. 40000000")
    if args.max_connections < 1:
        raise ConfigError(f"--max-connections {args.max_connections} must be at least 1, e.g. 1000")
    max_upload = parse_size(args.max_upload)
    if not is_onnx_path(args.run):
        only_for_onnx(args)
    if not is_loopback(args.host) and not args.token_file:
        raise ConfigError(
            f"--host {args.host} is reachable from other machines; add --token-file FILE with a "
            f"secret token, or serve on 127.0.0.1"
        )
    return serve(
        args.run,
        host=args.host,
        port=args.port,
        token=read_token(args.token_file) if args.token_file else None,
        allow_hosts=args.allow_host,
        max_upload=max_upload,
        max_connections=args.max_connections,
        device=args.device,
        threads=args.threads,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
        input_shape=args.input,
        class_names=args.classes,
    )
