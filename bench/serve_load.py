"""Load test of `cnnkit serve`: predict latency and throughput at concurrency 1 and 16.

    .venv/bin/python bench/serve_load.py                       # trains a LeNet-5 run first
    .venv/bin/python bench/serve_load.py --run runs/lenet --requests 2000
    .venv/bin/python bench/serve_load.py --run runs/lenet --onnx   # also its .onnx, same client

Starts `cnnkit serve RUN --port 0` as a subprocess, then drives POST /api/predict (raw PNG body,
one MNIST digit) from a bounded asyncio client: N keep-alive connections on 127.0.0.1, each
sending its next request when the last answer arrives. The client is a minimal HTTP/1.1 writer
and reader on asyncio streams, so that its own cost on these 2 cores stays small next to the
server's. Reports p50/p99 latency, req/s, errors and the server's RSS growth (from /proc).
With --onnx, `cnnkit serve RUN.onnx` (ONNX Runtime, no torch; exported from the run unless a
file is given) is measured the same way in the same run, one server after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def client(
    host: str, port: int, body: bytes, count: int, latencies: list[float], errors: list[str]
) -> None:
    """One keep-alive connection sending `count` predict requests back to back."""
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST /api/predict?k=3 HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if b" 200 " not in status_line or b'"top"' not in payload:
                errors.append(status_line.decode().strip())
    finally:
        writer.close()


async def drive(host: str, port: int, body: bytes, requests: int, concurrency: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    per_client = [
        requests // concurrency + (i < requests % concurrency) for i in range(concurrency)
    ]
    start = time.perf_counter()
    await asyncio.gather(*(client(host, port, body, n, latencies, errors) for n in per_client))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "req_s": len(latencies) / elapsed,
    }


def train_run(folder: Path) -> Path:
    from cnnkit.train import TrainConfig, fit

    run = folder / "lenet"
    fit(
        TrainConfig.for_model(
            "lenet5", data="mnist-mini", epochs=1, batch_size=128, lr=0.05, out=str(run), quiet=True
        )
    )
    return run


def digit_png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    from cnnkit.data.sources import mini_path

    with np.load(mini_path()) as data:
        pixels = data["x_test"][0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def export_run(run: Path, folder: Path) -> Path:
    from cnnkit.export import export_onnx

    return export_onnx(run, folder / "model.onnx").path


def measure(target: Path, body: bytes, args: argparse.Namespace) -> dict:
    """Serve `target` (a run or an .onnx) on a free port and drive it: rows and RSS growth."""
    server = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "serve", str(target), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = server.stdout.readline().strip()
        host, port = url.removeprefix("http://").rsplit(":", 1)
        asyncio.run(drive(host, int(port), body, args.warmup, 4))
        rss_start = rss_mb(server.pid)
        results = [
            asyncio.run(drive(host, int(port), body, args.requests, c)) for c in args.concurrency
        ]
        rss_end = rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
    return {"results": results, "rss_start": rss_start, "rss_end": rss_end}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run directory (default: train LeNet-5 on mnist-mini first)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--onnx",
        nargs="?",
        const="",
        metavar="FILE",
        help="also serve the run as ONNX: FILE, or the run exported now (needs cnnkit[export])",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="cnnkit-bench-"))
    run = Path(args.run) if args.run else train_run(folder)
    targets = {"run": run}
    if args.onnx is not None:
        targets["onnx"] = Path(args.onnx) if args.onnx else export_run(run, folder)
    body = digit_png()
    measured = {name: measure(target, body, args) for name, target in targets.items()}

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    for name, m in measured.items():
        print(
            f"server RSS ({name}: cnnkit serve {targets[name]}): {m['rss_start']:.1f} MB after "
            f"warm-up -> {m['rss_end']:.1f} MB ({m['rss_end'] - m['rss_start']:+.1f} MB)"
        )
    print("| server | concurrency | requests | errors | p50 ms | p99 ms | req/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in measured.items():
        for r in m["results"]:
            print(
                f"| {name} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['req_s']:.0f} |"
            )
    failed = any(
        any(r["errors"] for r in m["results"]) or m["rss_end"] - m["rss_start"] >= 50
        for m in measured.values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
