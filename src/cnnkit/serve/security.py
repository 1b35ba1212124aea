"""Safe-by-default HTTP: Host/Origin allowlist, upload size limit and bearer token, as pure ASGI.

Pure ASGI (no BaseHTTPMiddleware): each check runs before the app sees the request, answers
with a JSON `{"error": ...}` body itself, and never buffers a request body.

    app = HostOriginGuard(BodyLimit(BearerToken(app, token), 10 << 20), {"localhost", ...})

Order matters: a foreign Host or Origin gets 403 before anything else (DNS rebinding and
cross-site requests are refused even when they carry a token), then the size, then the token.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  # bytes; a phone photo is 2-6 MB


async def send_error(
    send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A complete JSON error response, the same body shape as the app's exception handlers."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1), the only token-free binds."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hostnames(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a browser may use to reach a server bound to `bind`.

    Loopback names always; the bind address itself; for a wildcard bind (0.0.0.0, ::) the
    machine's own name and addresses, since remote browsers arrive by those.
    """
    names = set(LOOPBACK_NAMES) | {name.lower().strip("[]") for name in extra}
    if bind in ("0.0.0.0", "::", ""):
        hostname = socket.gethostname()
        names |= {hostname.lower(), socket.getfqdn().lower()}
        with contextlib.suppress(OSError):  # no resolver: the user can still pass --allow-host
            names |= {str(info[4][0]) for info in socket.getaddrinfo(hostname, None)}
    else:
        names.add(bind.lower().strip("[]"))
    return frozenset(names)


def _hostname(netloc: str) -> str:
    """'Example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


class HostOriginGuard:
    """403 for a Host outside the allowlist (DNS rebinding) or a cross-origin Origin.

    A browser page on evil.example whose name is rebound to 127.0.0.1 still sends
    `Host: evil.example`; a cross-site fetch or form post sends its own `Origin`. The page we
    serve is same-origin, so its Origin equals http://<Host>; anything else is refused, for
    every method, because a GET can have side effects on the image store too.
    """

    def __init__(self, app: ASGIApp, hostnames: Iterable[str]) -> None:
        self.app = app
        self.hostnames = frozenset(name.lower() for name in hostnames)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = (_header(scope, b"host") or b"").decode("latin-1")
        if _hostname(host) not in self.hostnames:
            return await send_error(send, 403, f"host {host!r} is not allowed for this server")
        origin = _header(scope, b"origin")
        if origin is not None:
            text = origin.decode("latin-1")
            parts = urlsplit(text)
            if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
                return await send_error(send, 403, f"cross-origin request from {text!r} refused")
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    """Raised from inside `receive` once the streamed body passes the limit."""


class BodyLimit:
    """413 for a body over `max_bytes`: Content-Length is checked before reading a byte, and a
    chunked or lying body is counted as it streams, so nothing over the limit is ever held."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_UPLOAD) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self) -> str:
        return f"request body is over the {self.max_bytes:,}-byte limit; send a smaller image"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                return await send_error(send, 400, "Content-Length is not a number")
            if length > self.max_bytes:
                return await send_error(send, 413, self._refusal(), [(b"connection", b"close")])
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:  # too late for a status; the server closes the connection
                raise
            await send_error(send, 413, self._refusal(), [(b"connection", b"close")])


class BearerToken:
    """401 for an /api request without `Authorization: Bearer <token>` (constant-time compare).

    The page, /healthz and /openapi.json stay open: they hold nothing of the model's but its
    public description, and the page itself asks for the token.
    """

    def __init__(self, app: ASGIApp, token: str | None, prefix: str = "/api/") -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.expected is not None
            and scope["type"] == "http"
            and scope["path"].startswith(self.prefix)
        ):
            given = _header(scope, b"authorization") or b""
            # compare_digest takes time independent of where the first difference is.
            if not hmac.compare_digest(given, self.expected):
                return await send_error(
                    send,
                    401,
                    "missing or wrong token; send 'Authorization: Bearer <token>'",
                    [(b"www-authenticate", b"Bearer")],
                )
        await self.app(scope, receive, send)
