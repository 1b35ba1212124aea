"""What uvicorn does not bound by itself: header bytes, header time, connections, log lines.

uvicorn (0.54) offers `limit_concurrency` (503, but only once a request's headers are parsed),
`timeout_keep_alive` (only between requests) and `backlog`; httptools buffers a header of any
size, and a connection that never sends a byte is held forever. `LimitedHttpTools` adds, with
the defaults a reverse proxy would use:

- at most `MAX_HEADER_BYTES` of request line and headers, else 431 (nginx answers 400 past 8-32 KB);
- the headers within `HEADER_TIMEOUT` seconds of the connection (or of the request's first
  byte), else 408 and close, as nginx's client_header_timeout;
- past `limit_concurrency` open connections, a new one gets 503 at once and is closed, so held
  connections cannot use up the file descriptors.

`RateLimit` keeps a flood of one log line ("socket.accept() out of system resource") to one a
second per message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 16 * 1024  # request line + headers; browsers send 1-2 KB
HEADER_TIMEOUT = 10.0  # seconds to send the whole header block
KEEP_ALIVE_TIMEOUT = 5  # seconds an idle keep-alive connection is held (uvicorn's default)
MAX_CONNECTIONS = 1000  # open connections; each holds a file descriptor and ~10 KB
LINGER = 1.0  # seconds a refused connection is drained before closing, so the client reads why

_REASONS = {
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def raw_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 error response with a JSON body, written before any app runs."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit, a header timeout and a connection cap."""

    max_header_bytes = MAX_HEADER_BYTES
    header_timeout = HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0  # of the request whose headers are being read
        self._header_timer: Any = None  # armed while headers are awaited
        self._refused = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.limit_concurrency is not None and len(self.connections) > self.limit_concurrency:
            self._refuse(503, "too many open connections; retry shortly")
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # drained and dropped until the linger ends
        if self._header_timer is not None:
            end = data.find(b"\r\n\r\n")
            self._header_bytes += end + 4 if end >= 0 else len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse(
                    431,
                    f"request headers are over {self.max_header_bytes:,} bytes; send fewer or "
                    f"smaller headers",
                )
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a keep-alive connection's next request gets its own deadline

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_bytes = 0
            self._header_timer = self.loop.call_later(self.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._header_bytes = 0

    def _timed_out(self) -> None:
        self._header_timer = None
        self._refuse(408, f"request headers not received within {self.header_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` and close; reading on (and dropping) for a moment first, because a
        close with unread data sends a reset that can destroy the answer before it is read."""
        self._disarm()
        self._refused = True
        if self.transport.is_closing():
            return
        self.transport.write(raw_response(status, message))
        self.loop.call_later(LINGER, self.transport.close)


class RateLimit(logging.Filter):
    """Let a log message through at most once per `interval` seconds; count what it held back.

    Messages are told apart by logger and first line (the asyncio accept error's later lines
    name the socket, which changes).
    """

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg).split("\n", 1)[0][:200])
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._last) > 1000:  # bounded: distinct messages do not grow it forever
            self._last.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held and last is not None:
            record.msg = f"{record.msg} ({held} more like this in the last {now - last:.0f} s)"
        return True


def limit_logs(names: tuple[str, ...] = ("asyncio", "uvicorn.error")) -> RateLimit:
    """Install one RateLimit on the loggers that report accept and protocol errors."""
    limiter = RateLimit()
    for name in names:
        logging.getLogger(name).addFilter(limiter)
    return limiter
