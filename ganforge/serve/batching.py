"""Run model calls off the event loop, one at a time, and batch concurrent requests together.

A :class:`ModelWorker` owns the single thread that runs every model call of a server (two
models computing at once on the same cores only slow each other down) and a bound on the work
waiting for it: past ``max_pending`` a new request gets :class:`QueueFull` at once (the server
answers 503 with Retry-After) instead of waiting without limit.

A :class:`MicroBatcher` gathers the requests that arrive within a short window (or until
``max_batch`` items are waiting) and hands them to the model as one batch: under load, one
forward pass serves many clients, so throughput grows with the number of clients.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class QueueFull(Exception):
    """The server holds as much waiting work as it may; the client should retry later."""

    def __init__(self, pending: int, retry_after: int):
        super().__init__(f"server busy: {pending} request(s) already waiting; "
                         f"retry in {retry_after} s")
        self.retry_after = retry_after


class ModelWorker:
    """The one thread that runs model calls, and the bound on requests waiting for it."""

    def __init__(self, max_pending: int = 64):
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.max_pending = max_pending
        self.pending = 0
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganforge-model")
        self._seconds_per_call = 0.1  # running mean, for Retry-After

    def reserve(self) -> None:
        """Count one more waiting request, or raise QueueFull when the bound is reached."""
        with self._lock:
            if self.pending >= self.max_pending:
                raise QueueFull(self.pending, self.retry_after())
            self.pending += 1

    def release(self) -> None:
        """One waiting request has been answered."""
        with self._lock:
            self.pending -= 1

    def retry_after(self) -> int:
        """Seconds after which a retry has a fair chance (whole seconds, at least 1)."""
        return max(1, math.ceil(self._seconds_per_call * max(self.pending, 1) / 4))

    async def run(self, fn: Callable[..., Result], *args: Any) -> Result:
        """``fn(*args)`` on the model thread; the event loop keeps serving meanwhile."""
        start = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            elapsed = time.perf_counter() - start
            self._seconds_per_call = 0.8 * self._seconds_per_call + 0.2 * elapsed

    async def call(self, fn: Callable[..., Result], *args: Any) -> Result:
        """Like :meth:`run`, counted against the bound on waiting requests."""
        self.reserve()
        try:
            return await self.run(fn, *args)
        finally:
            self.release()

    def shutdown(self) -> None:
        """Stop the model thread after the call it is running."""
        self.executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class BatchStats:
    """What a batcher has done: the number of items in each batch it ran (latest last)."""

    batch_sizes: list[int] = field(default_factory=list)

    @property
    def batches(self) -> int:
        return len(self.batch_sizes)

    @property
    def items(self) -> int:
        return sum(self.batch_sizes)


class MicroBatcher(Generic[Item, Result]):
    """``await batcher.submit(item) -> result``; items are run in batches on a ModelWorker.

    ``run_batch(items) -> results`` (one result per item, same order) runs on the model
    thread. A batch is closed ``window_s`` after its oldest item arrived or once it holds
    ``max_batch`` units of work (``size_of(item)``, e.g. images); an item larger than
    ``max_batch`` runs alone. ``max_batch=1`` turns batching off (one request per call).
    If ``run_batch`` raises, every item of that batch gets the exception.
    """

    def __init__(self, worker: ModelWorker, run_batch: Callable[[list[Item]], Sequence[Result]],
                 window_s: float = 0.015, max_batch: int = 64,
                 size_of: Callable[[Item], int] = lambda item: 1):
        if window_s < 0 or max_batch < 1:
            raise ValueError(f"need window_s >= 0 and max_batch >= 1, got {window_s}, "
                             f"{max_batch}")
        self.worker, self.run_batch = worker, run_batch
        self.window_s, self.max_batch, self.size_of = window_s, max_batch, size_of
        self.stats = BatchStats()
        self._waiting: list[tuple[Item, asyncio.Future[Result], float]] = []
        self._arrived = asyncio.Event()
        self._collector: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: Item) -> Result:
        """Queue ``item`` and wait for its result (QueueFull when the server is saturated)."""
        self.worker.reserve()
        try:
            loop = asyncio.get_running_loop()
            if loop is not self._loop:  # a new event loop (e.g. a new test client)
                self._loop, self._waiting, self._arrived = loop, [], asyncio.Event()
                self._collector = None
            future: asyncio.Future[Result] = loop.create_future()
            self._waiting.append((item, future, time.perf_counter()))
            self._arrived.set()
            if self._collector is None or self._collector.done():
                self._collector = loop.create_task(self._collect())
            return await future
        finally:
            self.worker.release()

    def _waiting_size(self) -> int:
        return sum(self.size_of(item) for item, _, _ in self._waiting)

    async def _collect(self) -> None:
        while self._waiting:
            deadline = self._waiting[0][2] + self.window_s
            while self._waiting_size() < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch, size = [], 0
            while self._waiting:
                item_size = self.size_of(self._waiting[0][0])
                if batch and size + item_size > self.max_batch:
                    break
                batch.append(self._waiting.pop(0))
                size += item_size
            live = [(item, future) for item, future, _ in batch if not future.done()]
            if not live:
                continue
            self.stats.batch_sizes.append(len(live))
            try:
                results = await self.worker.run(self.run_batch, [item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"run_batch gave {len(results)} results for "
                                       f"{len(live)} items")
            except Exception as exc:  # every waiting request hears of it; the loop goes on
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
