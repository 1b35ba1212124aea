"""Bind a socket and serve the explorer app on it until Ctrl-C; `cnnkit serve` calls `serve`."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from typing import Any

from cnnkit.data.images import DEFAULT_MAX_PIXELS
from cnnkit.errors import ConfigError
from cnnkit.serve.limits import KEEP_ALIVE_TIMEOUT, MAX_CONNECTIONS, LimitedHttpTools, limit_logs

BACKLOG = 2048  # connections that may wait before uvicorn accepts them
SPARE_FILES = 128  # descriptors kept free of connections: the model, logs, torch's threads


def serve(
    run: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allow_hosts: Iterable[str] = (),
    max_upload: int,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_connections: int = MAX_CONNECTIONS,
    device: str = "cpu",
    threads: int = 1,
    input_shape: str | None = None,
    class_names: str | None = None,
) -> int:
    """Load `run` (a run directory or an .onnx file), print its URL once the port listens, and
    serve until Ctrl-C; returns 0. `input_shape` and `class_names`: for an .onnx file that
    cnnkit did not export, as `cnnkit predict` takes them.

    Raises ConfigError for a device that cannot run here or a port that cannot be bound, before
    anything is printed.
    """
    import uvicorn

    from cnnkit.serve.app import create_app
    from cnnkit.serve.security import allowed_hostnames

    classifier = load_model(run, device, threads, input_shape, class_names)
    app = create_app(
        classifier,
        token=token,
        hostnames=allowed_hostnames(host, list(allow_hosts)),
        max_upload=max_upload,
        max_pixels=max_pixels,
    )
    # Bind first, so that --port 0 has a real port to print before serving starts.
    sock = listen(host, port)
    print(f"http://{_shown(host)}:{sock.getsockname()[1]}", flush=True)
    if token:
        print(
            "every /api request needs 'Authorization: Bearer <token>'; the page asks for it",
            flush=True,
        )
    config = server_config(app, max_connections=max_connections)
    limit_logs()
    # uvicorn re-raises the Ctrl-C it handled; for a server, stopping is the normal end.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])
    print("stopped", flush=True)
    return 0


def load_model(
    run: str, device: str, threads: int, input_shape: str | None, class_names: str | None
) -> Any:
    """An .onnx file on ONNX Runtime's CPU with `threads` (no torch), or a run on `device`."""
    from cnnkit.onnx_runtime import is_onnx_path, load_onnx

    if is_onnx_path(run):
        if device != "cpu":
            raise ConfigError(
                f"--device {device}: an .onnx model is served by ONNX Runtime on the CPU; "
                f"leave --device out, or serve the run directory"
            )
        return load_onnx(run, input_shape, class_names, threads=threads)
    from cnnkit.devices import resolve_device
    from cnnkit.inspect.explorer import use_threads
    from cnnkit.predict import load

    resolved = resolve_device(device)  # before loading: a bad device is one line, exit 2
    use_threads(threads)
    return load(run, device=resolved)


def server_config(app: Any, *, max_connections: int = MAX_CONNECTIONS) -> Any:
    """uvicorn's Config for `app` with cnnkit's limits: header size and time, keep-alive,
    connections (never more than the open-file limit allows), and a graceful 3 s stop."""
    import uvicorn

    return uvicorn.Config(
        app,
        http=LimitedHttpTools,
        log_level="warning",
        access_log=False,
        backlog=BACKLOG,
        limit_concurrency=min(max_connections, max(16, open_files_limit() - SPARE_FILES)),
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        timeout_graceful_shutdown=3,
    )


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
    # then, and without it every response waits ~40 ms on Nagle and delayed ACKs (measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({error.strerror}); pick another --port, or 0"
        ) from None
    # Connections wait in the backlog from now on, so the printed URL works at once.
    sock.listen(BACKLOG)
    return sock


def open_files_limit() -> int:
    """Raise this process's open-file limit to its hard limit (a 1024 soft limit is common);
    return the limit now in force."""
    try:
        import resource
    except ImportError:  # not POSIX: nothing to raise
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft if soft != resource.RLIM_INFINITY else 1 << 16
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


def _shown(host: str) -> str:
    """The host as a URL names it: this machine's name for a wildcard, IPv6 in brackets."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    return f"[{shown}]" if ":" in shown else shown
