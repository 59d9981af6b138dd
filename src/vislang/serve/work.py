"""CPU-heavy work off the event loop, with a bounded queue.

A model call blocks a core for milliseconds to seconds; run on the event loop it would stall
every other request. Each ``WorkQueue`` is a small thread pool that refuses new work once
``max_pending`` jobs are running or waiting: a burst gets ``Busy`` (503 + Retry-After) at
once instead of an ever longer wait that ends in client time-outs anyway.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """The queue is full; ``retry_after`` is a guess, in whole seconds, at when it is not."""

    def __init__(self, name: str, pending: int, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"the server is busy ({pending} {name} jobs running or waiting); "
                         f"try again in {retry_after} s")


RETRY_CAP = 300  # s: past a few minutes the guess is stale, and clients give up anyway


class WorkQueue:
    def __init__(self, name: str, workers: int, max_pending: int,
                 clock: Callable[[], float] = time.perf_counter):
        if workers < 1 or max_pending < workers:
            raise ValueError(f"{name}: need workers >= 1 and max_pending >= workers")
        self.name, self.workers, self.max_pending = name, workers, max_pending
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"vislang-{name}")
        self._lock = threading.Lock()  # guards _pending and _durations
        self._pending = 0
        self._clock = clock
        self._durations: deque[float] = deque(maxlen=32)  # recent jobs, for Retry-After

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` in a worker thread; raises ``Busy`` when the queue is full."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise Busy(self.name, self._pending, self.retry_after())
            self._pending += 1
        future = self._pool.submit(self._timed, fn, args, kwargs)
        # Released when the job ends, not when the awaiting request does: a cancelled request
        # drops a job still waiting, but one already running holds its place until done.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def retry_after(self) -> int:
        """Seconds until the jobs now queued are done: their number x the mean recent job time,
        shared among the workers; 1 to RETRY_CAP. Called with the lock held.

        The mean, not the median: the wait is the sum of the jobs ahead, and a mix of quick
        searches and slow captions is summed by the mean, where the median sees only the
        quick ones and promises 1 s.
        """
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return min(RETRY_CAP, max(1, math.ceil(mean * self._pending / self.workers)))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _timed(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        started = self._clock()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:  # retry_after reads them from the event loop's thread
                self._durations.append(self._clock() - started)

    def _release(self, _future) -> None:
        with self._lock:
            self._pending -= 1
