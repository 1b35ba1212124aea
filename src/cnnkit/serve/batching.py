"""Micro-batching: concurrent requests share one forward pass in a worker thread.

A request puts its item on an asyncio queue and awaits a future. One worker task takes the
first waiting item, then everything else already queued (up to `max_batch`), and runs
`run_batch` on them in a single worker thread. While that forward runs, new requests queue
up and form the next batch, so a lone request waits for nobody (no latency cost at
concurrency 1) and under load the batch grows by itself. `max_wait` adds an optional short
gathering window on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Overloaded(Exception):
    """The queue is full; the caller should answer 503."""


class MicroBatcher(Generic[Item, Result]):
    """Gather concurrent `submit` calls into batches for `run_batch(items) -> results`.

    `run_batch` runs in one dedicated thread, so it never blocks the event loop and never
    runs twice at once (the model sees one batch at a time).
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Result]],
        max_batch: int = 64,
        max_wait: float = 0.0,  # seconds to keep gathering after the first item; 0: none
        max_queue: int = 1024,  # waiting items beyond this are refused (503), bounding memory
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # counters, for the benchmark's report
        self.items = 0

    def _ensure_worker(self) -> asyncio.Queue[tuple[Item, asyncio.Future[Result]]]:
        # Started lazily on the running loop; a new loop (a test client, a restart after close)
        # gets a new queue, worker and thread, since asyncio objects belong to their loop.
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._queue is None or self._executor is None:
            self.close()
            self._loop = loop
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cnnkit-batch")
            self._queue = asyncio.Queue(self.max_queue)
            self._worker = loop.create_task(self._work(self._queue, self._executor))
        return self._queue

    async def submit(self, item: Item) -> Result:
        """Queue `item`; return its result from the next batch (or raise what run_batch raised)."""
        queue = self._ensure_worker()
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        try:
            queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise Overloaded(f"{self.max_queue} requests are already waiting") from None
        return await future

    async def _work(
        self,
        queue: asyncio.Queue[tuple[Item, asyncio.Future[Result]]],
        executor: ThreadPoolExecutor,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            if self.max_wait > 0:
                deadline = time.monotonic() + self.max_wait
                while len(batch) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), left))
                    except asyncio.TimeoutError:
                        break
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            # A client that disconnected cancelled its future; do not compute for it.
            batch = [(item, future) for item, future in batch if not future.done()]
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(
                    executor, self.run_batch, [item for item, _ in batch]
                )
            except Exception as error:  # every waiter gets the error, the worker lives on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def close(self) -> None:
        """Stop the worker and its thread; the next submit starts new ones."""
        if self._worker is not None and not self._worker.done():
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                self._worker.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._worker = self._executor = self._queue = None
