"""Abuse replay against a real `cnnkit serve`: huge images, huge headers, held connections.

    .venv/bin/python bench/abuse.py                    # trains a LeNet-5 run on mnist-mini first
    .venv/bin/python bench/abuse.py --run runs/lenet --connections 500

Starts `cnnkit serve RUN --port 0` (127.0.0.1 only) as a subprocess and replays issue 11's cases:
1. a 9400x9500 RGB PNG and its RGBA variant to /api/predict, /api/activations and /api/gradcam at
   once (over the 40 MP budget: 413 each, decided from the header);
2. the largest accepted image (6300x6300 RGBA, 39.7 MP) to the same three at once;
3. one GET /healthz with up to 500 MB of X-Pad headers, stopping as soon as the server answers;
4. `--connections` half-open (silent) and slow (a header byte a second) connections held while
   /healthz is timed on fresh connections, then held past the header timeout;
5. small predicts while a maximal image decodes.
It records the server's RSS (idle, peak per case, VmHWM), /healthz p99 under case 4, the small
predict latency during case 5, every status returned, and the server's log lines. Every loop is
bounded, and the server is stopped at the end (SIGINT, then SIGKILL). Exit 1 if any 5xx came back.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import resource
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from serve_load import digit_png, train_run

ENDPOINTS = ("/api/predict", "/api/activations", "/api/gradcam")
HEADER_TIMEOUT = 10.0  # the server's (cnnkit.serve.limits.HEADER_TIMEOUT)


def png_of_zeros(width: int, height: int, channels: int) -> bytes:
    """A real width x height PNG (8-bit gray, RGB or RGBA) of zeros, compressed row by row."""
    colour = {1: 0, 3: 2, 4: 6}[channels]

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(6)
    rows = (b"\0" * (width * channels + 1)) * 64
    parts = [compressor.compress(rows) for _ in range(height // 64)]
    parts.append(compressor.compress(b"\0" * (width * channels + 1) * (height % 64)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


class Server:
    """The `cnnkit serve` subprocess, its address, and its memory from /proc."""

    def __init__(self, run: Path, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cnnkit", "serve", str(run), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        url = self.process.stdout.readline().strip()
        if not url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"cnnkit serve did not start; see {log}")
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)

    def memory_mb(self, field: str = "VmRSS") -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} for pid {self.process.pid}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class Sampler:
    """The server's peak RSS per case, sampled every 10 ms in a thread."""

    def __init__(self, server: Server) -> None:
        self.server, self.case, self.peaks = server, "idle", Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            with contextlib.suppress(OSError, RuntimeError):
                rss = self.server.memory_mb()
                self.peaks[self.case] = max(self.peaks[self.case], rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def request(server: Server, method: str, path: str, body: bytes | None = None) -> tuple[int, float]:
    """(status, seconds) of one request on a fresh connection; status 0 when it failed."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
    start = time.perf_counter()
    try:
        headers = {"Content-Type": "image/png"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    except OSError:
        return 0, time.perf_counter() - start
    finally:
        connection.close()


def at_once(server: Server, bodies: list[bytes], statuses: Counter) -> list[int]:
    jobs = [(path, body) for body in bodies for path in ENDPOINTS]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: request(server, "POST", *job)[0], jobs))
    statuses.update(results)
    return results


def huge_headers(server: Server, statuses: Counter, limit: int = 500 << 20) -> dict:
    """Send X-Pad headers in 64 KB writes until the server answers or `limit` bytes are sent."""
    pad = (b"X-Pad: " + b"a" * 1016 + b"\r\n") * 64
    sent, status = 0, 0
    with socket.create_connection((server.host, server.port), timeout=10) as conn:
        conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n".encode())
        with contextlib.suppress(OSError):
            while sent < limit and not select.select([conn], [], [], 0)[0]:
                conn.sendall(pad)
                sent += len(pad)
        with contextlib.suppress(OSError, ValueError, IndexError):
            status = int(conn.recv(4096).split(b" ", 2)[1])
    statuses[status] += 1
    return {"status": status, "header_bytes_sent": sent}


def held_connections(server: Server, count: int, probes: int, statuses: Counter) -> dict:
    """`count` connections (half silent, half slow) held while /healthz is timed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * count + 256)), hard))
    opened = time.monotonic()
    held = []
    for index in range(count):
        conn = socket.create_connection((server.host, server.port), timeout=10)
        if index % 2:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: ")  # then a byte a second
        held.append(conn)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for conn in held[1::2]:
                with contextlib.suppress(OSError):
                    conn.send(b"x")

    dripper = threading.Thread(target=trickle, daemon=True)
    dripper.start()
    latencies = []
    for _ in range(probes):
        status, seconds = request(server, "GET", "/healthz")
        statuses[status] += 1
        latencies.append(seconds)
    probed = time.monotonic() - opened
    # Past the header timeout, every held connection should have been answered 408 and closed.
    time.sleep(max(0.0, HEADER_TIMEOUT + 1.5 - (time.monotonic() - opened)))
    stop.set()
    dripper.join(3)
    answers = Counter()
    for conn in held:
        conn.settimeout(0.5)
        try:
            data = conn.recv(4096)
            answers[int(data.split(b" ", 2)[1]) if data else "closed"] += 1
        except (OSError, ValueError, IndexError):
            answers["still open"] += 1
        conn.close()
    statuses.update(a for a in answers.elements() if isinstance(a, int))
    latencies.sort()
    return {
        "held": count,
        "probes": len(latencies),
        "probe_seconds": round(probed, 2),
        "healthz_p50_ms": round(1000 * statistics.median(latencies), 1),
        "healthz_p99_ms": round(
            1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1
        ),
        "held_after_timeout": dict(answers),
    }


def small_during_big(server: Server, big: bytes, small: bytes, statuses: Counter) -> dict:
    """Small predicts on one keep-alive connection while a maximal image decodes."""
    result: dict = {}

    def big_request() -> None:
        result["big_status"], result["big_seconds"] = request(server, "POST", "/api/predict", big)

    worker = threading.Thread(target=big_request)
    worker.start()
    time.sleep(0.05)  # the upload is sent and its decode under way
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    latencies = []
    while worker.is_alive() and len(latencies) < 10_000:
        start = time.perf_counter()
        connection.request(
            "POST", "/api/predict", body=small, headers={"Content-Type": "image/png"}
        )
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        statuses[response.status] += 1
    connection.close()
    worker.join()
    statuses[result["big_status"]] += 1
    latencies.sort()
    return {
        "big_status": result["big_status"],
        "big_seconds": round(result["big_seconds"], 2),
        "small_requests": len(latencies),
        "small_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "small_max_ms": round(1000 * latencies[-1], 1) if latencies else None,
    }


def replay(server: Server, args: argparse.Namespace, statuses: Counter, sampler: Sampler) -> dict:
    figures: dict = {}
    small = digit_png()
    huge = [png_of_zeros(9400, 9500, 3), png_of_zeros(9400, 9500, 4)]
    maximal = png_of_zeros(6300, 6300, 4)
    sampler.case = "huge images"
    figures["huge images (413 expected)"] = Counter(at_once(server, huge, statuses))
    sampler.case = "maximal images"
    figures["maximal images at once"] = Counter(at_once(server, [maximal], statuses))
    sampler.case = "huge headers"
    figures["huge headers"] = huge_headers(server, statuses)
    sampler.case = "held connections"
    figures["held connections"] = held_connections(server, args.connections, args.probes, statuses)
    sampler.case = "small during big"
    figures["small predict during a maximal decode"] = small_during_big(
        server, maximal, small, statuses
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run directory (default: train LeNet-5 on mnist-mini first)")
    parser.add_argument("--connections", type=int, default=500, help="connections to hold")
    parser.add_argument("--probes", type=int, default=200, help="/healthz requests timed")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="cnnkit-abuse-"))
    run = Path(args.run) if args.run else train_run(folder)
    server = Server(run, folder / "server.log")
    statuses: Counter = Counter()
    try:
        time.sleep(0.5)
        idle = server.memory_mb()
        sampler = Sampler(server)
        try:
            figures = replay(server, args, statuses, sampler)
        finally:
            sampler.stop()
        peak = server.memory_mb("VmHWM")
    finally:
        server.stop()
    log = server.log.read_text(errors="replace").splitlines()
    print(f"cnnkit serve abuse replay ({os.cpu_count()} cores)")
    print(f"  server RSS: idle {idle:.0f} MB, peak (VmHWM) {peak:.0f} MB, +{peak - idle:.0f} MB")
    for case, mb in sampler.peaks.items():
        print(f"    peak during {case}: {mb:.0f} MB")
    for case, value in figures.items():
        print(f"  {case}: {dict(value)}")
    errors = sum(n for status, n in statuses.items() if status >= 500 or status == 0)
    print(f"  statuses: {dict(sorted(statuses.items()))}; 5xx or failed: {errors}")
    tracebacks = sum("Traceback" in line for line in log)
    print(f"  server log: {len(log)} lines, {tracebacks} tracebacks ({server.log})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
