"""The explorer's live view: a run's snapshots and metrics while it trains, read from its folder.

    add_live_routes(app, service, "runs/mnist", device="cpu")    # create_app does this

Endpoints (all under /api, so the token, Host/Origin and size rules of `security` hold):
  GET /api/live            the snapshot index, the probe image, whether training has finished
  GET /api/live/snapshot   one snapshot (?step=N, a step the index lists)
  GET /api/live/metrics    the metrics records so far (?since=N: only those after step N)
  GET /api/live/stream     Server-Sent Events: a 'change' event whenever the run's files change
The server only reads: the trainer writes every file atomically (cnnkit.inspect.snapshots,
cnnkit.runs), so a read sees a whole old file or a whole new one and never waits on training.
Once training has finished, the model is reloaded from the final weights, so the rest of the
page explains the trained network. Errors name no paths: only what to do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from cnnkit import runs
from cnnkit.errors import CnnkitError
from cnnkit.inspect import snapshots
from cnnkit.inspect.explorer import Explorer
from cnnkit.predict import load
from cnnkit.serve.schemas import ERRORS
from cnnkit.serve.service import Service

POLL_SECONDS = 0.5  # how often a stream looks at the run's files (a stat each: ~10 us)
STREAM_SECONDS = 300.0  # a stream's lifetime; the page reconnects, so none is held forever
MAX_STREAMS = 8  # streams open at once; more get 503


class LiveIndex(BaseModel):
    finished: bool = Field(description="training has ended; the model now served is the final one")
    version: list[int] = Field(description="a stamp that changes when the run's files change")
    probe_png: str | None = Field(description="base64 PNG of the probe image")
    snapshots: list[dict[str, Any]] = Field(description="step, epoch, val_acc, ..., seconds")


class LiveSnapshot(BaseModel):
    step: int
    epoch: float | None = None
    val_acc: float | None = None
    val_loss: float | None = None
    train_loss: float | None = None
    lr: float | None = None
    filters: dict[str, Any] | None = Field(description="the first conv's filters, one PNG grid")
    maps: list[dict[str, Any]] = Field(description="each feature layer's strongest maps")
    gradcam: dict[str, Any] | None = Field(description="the probe's Grad-CAM: heat, overlay")


class LiveMetrics(BaseModel):
    records: list[dict[str, Any]] = Field(description="metrics.jsonl records, in order")


class LiveRun:
    """What the routes read of one run folder, and the reload of its final weights."""

    def __init__(self, run: Path, service: Service, device: str) -> None:
        self.run, self.service, self.device = run, service, device
        self.loaded = self._weights_version()  # the weights create_app loaded
        self.lock = threading.Lock()
        self.streams = 0

    def _weights_version(self) -> int | None:
        try:
            return (self.run / runs.WEIGHTS).stat().st_mtime_ns
        except OSError:
            return None

    def version(self) -> list[int]:
        """A stamp of the files the page shows; it changes whenever one of them is replaced."""
        stamp = []
        for path in (
            snapshots.live_dir(self.run) / snapshots.INDEX,
            self.run / runs.METRICS,
            self.run / runs.STATE_DIR / runs.STATE_JSON,
        ):
            try:
                info = path.stat()
                stamp += [info.st_mtime_ns, info.st_size]
            except OSError:
                stamp += [0, 0]
        return stamp

    def finished(self) -> bool:
        if not (self.run / runs.STATE_DIR).is_dir():
            return True  # saved without training state (runs.save_model, an import): not training
        try:
            return bool(runs.read_state(self.run).get("finished"))
        except (CnnkitError, OSError, ValueError):
            return False  # no resume state yet (or one being written): still training

    def index(self) -> dict[str, Any]:
        """The snapshot index, the probe as base64 PNG, and whether training has finished."""
        try:
            index = snapshots.read_index(self.run)
            probe_path = snapshots.live_dir(self.run) / snapshots.PROBE
            probe = base64.b64encode(probe_path.read_bytes()).decode() if index["probe"] else None
        except (OSError, ValueError, KeyError):
            raise HTTPException(
                503, "the snapshot index cannot be read now; retry shortly"
            ) from None
        finished = self.finished()
        if finished:
            self.reload()
        return {
            "finished": finished,
            "version": self.version(),
            "probe_png": probe,
            "snapshots": [_entry(item) for item in index.get("snapshots", [])],
        }

    def snapshot(self, step: int) -> dict[str, Any]:
        index = snapshots.read_index(self.run)
        names = {item["step"]: item["file"] for item in index.get("snapshots", [])}
        if step not in names:
            raise HTTPException(404, f"no snapshot at step {step}; GET /api/live lists the steps")
        try:
            return json.loads((snapshots.live_dir(self.run) / names[step]).read_text("utf-8"))
        except (OSError, ValueError):
            raise HTTPException(
                404, f"the snapshot of step {step} is gone; reload the index"
            ) from None

    def metrics(self, since: int) -> dict[str, Any]:
        try:
            records = runs.read_metrics(self.run)
        except CnnkitError:  # its message names the file; the page needs only the fact
            raise HTTPException(503, "the run's metrics log is damaged; see the server") from None
        return {"records": [r for r in records if int(r.get("step") or 0) > since]}

    def reload(self) -> None:
        """Serve the final weights once training has written them (a no-op after that)."""
        with self.lock:
            version = self._weights_version()
            if version is None or version == self.loaded:
                return
            try:
                explorer = Explorer(load(self.run, device=self.device))
            except CnnkitError:
                return  # weights and manifest mid-replacement: the next look tries again
            self.service.explorer, self.service.classifier = explorer, explorer.classifier
            self.loaded = version


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    """An index entry without its file name: the page asks for snapshots by step."""
    return {key: value for key, value in item.items() if key != "file"}


async def _events(live: LiveRun) -> AsyncIterator[bytes]:
    """'change' events carrying the files' stamp, until training ends or the lifetime passes."""
    # Counted here, not in the route: a response that never starts would never give it back.
    live.streams += 1
    try:
        ends, last = time.monotonic() + STREAM_SECONDS, None
        yield b"retry: 1000\n\n"
        while time.monotonic() < ends:
            stamp = live.version()
            if stamp != last:
                last = stamp
                finished = await run_in_threadpool(live.finished)
                body = json.dumps({"version": stamp, "finished": finished})
                yield f"event: change\ndata: {body}\n\n".encode()
                if finished:
                    return
            await asyncio.sleep(POLL_SECONDS)
        yield b"event: timeout\ndata: {}\n\n"
    finally:
        live.streams -= 1


def add_live_routes(
    app: FastAPI, service: Service, run: str | os.PathLike | None, device: str = "cpu"
) -> None:
    """Register the /api/live routes for `run` (None: a Classifier was served; no live view)."""
    live = LiveRun(Path(run), service, device) if run is not None else None

    def need() -> LiveRun:
        if live is None:
            raise HTTPException(404, "this server was given a loaded model, not a run folder")
        return live

    @app.get("/api/live", response_model=LiveIndex, responses=ERRORS)
    async def live_index() -> dict[str, Any]:
        """The run's snapshots so far, its probe image and whether training has finished."""
        return await run_in_threadpool(need().index)

    @app.get("/api/live/snapshot", response_model=LiveSnapshot, responses=ERRORS)
    async def live_snapshot(step: int = Query(ge=0, le=10**12)) -> dict[str, Any]:
        """The filters, probe maps and Grad-CAM written at evaluation `step`."""
        return await run_in_threadpool(need().snapshot, step)

    @app.get("/api/live/metrics", response_model=LiveMetrics, responses=ERRORS)
    async def live_metrics(since: int = Query(-1, ge=-1, le=10**12)) -> dict[str, Any]:
        """The metrics records logged so far, after step `since`."""
        return await run_in_threadpool(need().metrics, since)

    @app.get(
        "/api/live/stream",
        response_class=StreamingResponse,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
    )
    async def live_stream() -> StreamingResponse:
        """Server-Sent Events: `change` when the snapshots, metrics or state change."""
        current = need()
        if current.streams >= MAX_STREAMS:
            raise HTTPException(503, f"{MAX_STREAMS} live streams are open; close a tab")
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(_events(current), media_type="text/event-stream", headers=headers)


# ----------------------------------------------------------------------------- beside training


def serve_in_background(
    run: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, wait_s: float = 600.0
) -> tuple[str, threading.Thread]:
    """Serve `run` from a daemon thread of this process (`cnnkit train --serve`); returns the
    URL, printable at once, and the thread.

    The port listens now; the app is built once the trainer has saved its first checkpoint (step
    0, before the first step), and requests wait in the backlog until then. The thread sets no
    torch threads and no signal handlers, so training runs as it would without it.
    """
    import uvicorn

    from cnnkit.serve.app import create_app
    from cnnkit.serve.security import allowed_hostnames
    from cnnkit.serve.server import _shown, listen

    sock = listen(host, port)
    url = f"http://{_shown(host)}:{sock.getsockname()[1]}"
    folder = Path(run)

    def serve() -> None:
        deadline = time.monotonic() + wait_s
        app = None
        while app is None:
            if time.monotonic() > deadline:
                sock.close()
                return
            time.sleep(0.2)
            if runs.is_run(folder) and (folder / runs.WEIGHTS).is_file():
                with contextlib.suppress(CnnkitError):  # caught mid-save: look again
                    app = create_app(folder, hostnames=allowed_hostnames(host))
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])

    thread = threading.Thread(target=serve, name="cnnkit-live-server", daemon=True)
    thread.start()
    return url, thread
