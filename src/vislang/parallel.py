"""Ordered, bounded parallel map: decode images in threads while the model runs.

PIL releases the GIL while it decodes and resizes, so a few threads keep the model fed. Unlike
``Executor.map`` this submits at most ``ahead`` items at a time, so a million paths never turn
into a million decoded images waiting in memory.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = None, ahead: int = 64
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in input order, computing up to ``ahead`` in advance.

    An exception raised by ``fn`` is re-raised when its item's turn comes.
    """
    items = iter(items)
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        pending: deque[Future[R]] = deque(pool.submit(fn, x) for x in islice(items, ahead))
        try:
            while pending:
                result = pending.popleft().result()
                for x in islice(items, 1):
                    pending.append(pool.submit(fn, x))
                yield result
        finally:
            for future in pending:
                future.cancel()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    items = iter(items)
    while batch := list(islice(items, size)):
        yield batch
