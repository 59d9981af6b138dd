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
from dataclasses import dataclass
from itertools import islice
from typing import Generic, TypeVar

from vislang.errors import ImageLoadError
from vislang.progress import progress_bar

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


@dataclass(frozen=True)
class Prepared(Generic[T, R]):
    """One batch of ``prepared_batches``: the items that prepared, their values, and the rest."""

    items: list[T]
    values: list[R]
    failed: list[tuple[T, ImageLoadError]]  # (item, why it could not be prepared)


def prepared_batches(items: Iterable[T], prepare: Callable[[T], R], batch_size: int, *,
                     label: str, progress: bool = False) -> Iterator[Prepared[T, R]]:
    """``prepare`` each item in worker threads (in order, a bounded number ahead) and yield
    them in batches for a model to run on: the one loop behind embedding, captioning and
    reading text. An item whose ``prepare`` raises ``ImageLoadError`` is a failure of its
    batch, never an exception. The bar advances once the caller is done with a batch, so it
    counts finished work; a caller can keep (store, commit) each batch before the next."""
    items = list(items)

    def attempt(item: T):
        try:
            return item, prepare(item), None
        except ImageLoadError as error:
            return item, None, error

    loaded = ordered_map(attempt, items, ahead=2 * batch_size)
    with progress_bar(len(items), label, enabled=progress and bool(items)) as advance:
        for batch in batched(loaded, batch_size):
            yield Prepared([item for item, _, error in batch if error is None],
                           [value for _, value, error in batch if error is None],
                           [(item, error) for item, _, error in batch if error is not None])
            advance(len(batch))
