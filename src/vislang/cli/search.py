"""``vislang index``, ``vislang search`` and ``vislang dups``: the photo-search front door."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from vislang.cli.common import BackendOption, JsonOption, PrecisionOption, print_json, stdout

IndexOption = typer.Option(None, "--index", "-i", help="Index folder. Default: $VISLANG_INDEX "
                           "or the per-user data folder (see `vislang index --status`).")
SearchModelOption = typer.Option(None, "--model", "-m", help="Model to embed with. Default: the "
                                 "one the index was built with (ViT-B/32 for a new index).")
SKIPPED_SHOWN = 20


def _open(index: Path | None, model: str | None, backend: str = "auto",
          precision: str = "auto"):
    from vislang.search import Index

    return Index.open(index, model, backend, precision)


def index(
    folders: list[Path] = typer.Argument(None, help="Folders to index (default: the index's "
                                         "folders, to bring them up to date)."),
    index_path: Path = IndexOption,
    model: str = SearchModelOption,
    exclude: list[str] = typer.Option([], "--exclude", "-x", help="Skip names or relative "
                                      "paths matching this glob (repeatable), e.g. 'raw/*'."),
    hidden: bool = typer.Option(False, "--hidden", help="Also index hidden files and folders."),
    status: bool = typer.Option(False, "--status", help="Show what the index holds; index "
                                "nothing."),
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    json_out: bool = JsonOption,
) -> None:
    """Index image folders for search: embeds new and changed files, forgets deleted ones."""
    with _open(index_path, model, backend, precision) as idx:
        if status:
            return _print_status(idx.stats(), json_out)
        if idx.model_name is None:
            from vislang.cli.common import DEFAULT_MODEL

            idx.model_name = DEFAULT_MODEL
        summary = idx.update(folders or None, exclude, hidden, progress=not json_out)
    if json_out:
        return print_json(summary.as_dict())
    stdout.print(f"added {summary.added}, updated {summary.updated}, moved {summary.moved}, "
                 f"removed {summary.removed}, unchanged {summary.unchanged}, "
                 f"skipped {len(summary.skipped)}; embedded {summary.embedded} images "
                 f"in {summary.seconds:.1f} s")
    for path, reason in summary.skipped[:SKIPPED_SHOWN]:
        stdout.print(f"  skipped {path}: {reason}", highlight=False)
    if len(summary.skipped) > SKIPPED_SHOWN:
        stdout.print(f"  ... and {len(summary.skipped) - SKIPPED_SHOWN} more (--json lists all)")


def _print_status(stats: dict, json_out: bool) -> None:
    if json_out:
        return print_json(stats)
    stdout.print(f"index: {stats['path']} ({stats['bytes_on_disk'] / 1e6:.1f} MB on disk)")
    stdout.print(f"files: {stats['files']} ({stats['distinct_contents']} distinct contents, "
                 f"{stats['unreadable']} unreadable)")
    stdout.print("roots: " + (", ".join(stats["roots"]) or "none yet"))
    table = Table("model", "vectors", "dim", title=f"current model: {stats['model']}")
    for m in stats["models"]:
        table.add_row(m["model_key"], str(m["vectors"]), str(m["dim"]))
    stdout.print(table)


def search(
    query: str = typer.Argument(None, help="What to look for, in words."),
    image: Path = typer.Option(None, "--image", help="Find images like this one."),
    add: list[str] = typer.Option([], "--add", help="A text or image to add to the query; "
                                  "'0.5:sunset' weighs it (repeatable)."),
    sub: list[str] = typer.Option([], "--sub", help="A text or image to steer away from "
                                  "(repeatable), e.g. --sub people."),
    top: int = typer.Option(10, "--top", "-k", min=1, max=10_000, help="How many results."),
    under: Path = typer.Option(None, "--under", help="Only files below this folder."),
    ext: list[str] = typer.Option([], "--ext", help="Only these extensions (repeatable): jpg."),
    since: str = typer.Option(None, "--since", help="Taken on or after: YYYY[-MM[-DD]] (EXIF "
                              "date where present, else file time)."),
    until: str = typer.Option(None, "--until", help="Taken up to the end of: YYYY[-MM[-DD]]."),
    threshold: float = typer.Option(None, "--threshold", help="Drop results scoring below this "
                                    "cosine similarity."),
    index_path: Path = IndexOption,
    model: str = SearchModelOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    paths_only: bool = typer.Option(False, "--paths", help="One path per line, for pipes."),
    json_out: bool = JsonOption,
) -> None:
    """Search the index by text, by image, or by both with terms added and subtracted."""
    from vislang.search.query import Filters, parse_date

    if image is not None and not image.is_file():
        from vislang.errors import InputError

        raise InputError(f"no such image: {image}")
    filters = Filters(under=str(under) if under else None, extensions=tuple(ext),
                      since=parse_date(since) if since else None,
                      until=parse_date(until, end=True) if until else None)
    with _open(index_path, model, backend, precision) as idx:
        results = idx.search(text=query, image=image, k=top, add=add, sub=sub, filters=filters,
                             threshold=threshold)
    if json_out:
        return print_json([{"path": r.path, "score": round(r.score, 6), "caption": r.caption}
                           for r in results])
    if paths_only:
        for r in results:
            print(r.path)
        return
    if not results:
        stdout.print("no results" + (" above the threshold" if threshold is not None else ""))
        return
    captioned = any(r.caption for r in results)
    table = Table("rank", "score", "taken", "path", *(["caption"] if captioned else []))
    table.columns[3].overflow = "fold"
    for rank, r in enumerate(results, 1):
        taken = datetime.fromtimestamp(r.taken).strftime("%Y-%m-%d")
        table.add_row(str(rank), f"{r.score:.3f}", taken, _display(r.path),
                      *([r.caption or ""] if captioned else []))
    stdout.print(table)


def dups(
    threshold: float = typer.Option(0.95, "--threshold", "-t", help="Cosine similarity at or "
                                    "above which two images count as near-duplicates."),
    index_path: Path = IndexOption,
    model: str = SearchModelOption,
    json_out: bool = JsonOption,
) -> None:
    """Groups of near-duplicate images in the index (copies, re-encodes, resizes, bursts)."""
    with _open(index_path, model) as idx:
        groups = idx.duplicates(threshold)
    if json_out:
        return print_json([[{"path": r.path, "score": round(r.score, 6)} for r in g]
                           for g in groups])
    if not groups:
        stdout.print(f"no near-duplicates at threshold {threshold}")
        return
    for number, group in enumerate(groups, 1):
        stdout.print(f"[bold]group {number}[/] ({len(group)} images)")
        for r in group:
            stdout.print(f"  {r.score:.3f}  {_display(r.path)}", highlight=False)


def _display(path: str) -> str:
    """Paths under the working directory print relative: shorter, and still openable."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path
