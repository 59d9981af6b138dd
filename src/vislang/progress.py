"""Progress bars for long work, drawn on stderr so stdout stays clean for --json and pipes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def progress_bar(
    total: int | None, description: str, *, unit: str = "images", enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n, note="")``; shows count, rate, ETA and a note on stderr."""
    if not enabled:
        yield lambda n=1, note="": None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total, rate="", note="")

        def advance(n: int = 1, note: str = "") -> None:
            bar.update(task, advance=n, note=note)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:.1f} {unit}/s" if speed else "")

        yield advance
