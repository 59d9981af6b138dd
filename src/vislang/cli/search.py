"""``vislang index``, ``vislang search`` and ``vislang dups``: the photo-search front door."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from vislang.cli.common import (
    BackendOption,
    DeviceOption,
    JsonOption,
    PrecisionOption,
    engine_spec,
    print_json,
    stdout,
)
from vislang.settings import settings

IndexOption = typer.Option(None, "--index", "-i", help="Index folder. Default: $VISLANG_INDEX "
                           "or the per-user data folder (see `vislang index --status`).")
SearchModelOption = typer.Option(None, "--model", "-m", help="Model to embed with. Default: the "
                                 "one the index was built with ($VISLANG_MODEL or ViT-B/32 for a "
                                 "new index).")
SKIPPED_SHOWN = 20


def _open(index: Path | None, model: str | None, spec, create: bool = False):
    """Readers never create: a mistyped --index fails instead of leaving an empty index."""
    from vislang.search import Index

    return Index.open(index, model, create=create, engine=spec)


def index(
    folders: list[Path] = typer.Argument(None, help="Folders to index (default: the index's "
                                         "folders, to bring them up to date)."),
    index_path: Path = IndexOption,
    model: str = SearchModelOption,
    exclude: list[str] = typer.Option([], "--exclude", "-x", help="Skip names or relative "
                                      "paths matching this glob (repeatable), e.g. 'raw/*'."),
    hidden: bool = typer.Option(False, "--hidden", help="Also index hidden files and folders."),
    ocr: bool = typer.Option(False, "--ocr", help="Also read the text in every image not read "
                             "yet (an unchanged image is never read again), so vislang search "
                             "matches it; needs the OCR extra: pip install 'vislang[ocr]'."),
    status: bool = typer.Option(False, "--status", help="Show what the index holds; index "
                                "nothing."),
    watch: bool = typer.Option(False, "--watch", help="After indexing, keep watching the "
                               "folders and index what appears, changes, moves or vanishes, in "
                               "batches, until Ctrl-C."),
    poll: bool = typer.Option(False, "--poll", help="With --watch: look for changes by polling "
                              "(network shares, where the system sends no file events)."),
    from_embeddings: Path = typer.Option(None, "--from-embeddings", help="Make the images of "
                                         "`vislang embed --out DIR` searchable from its shards, "
                                         "without embedding them again (docs/scale.md)."),
    index_type: str = typer.Option(None, "--index-type", help="The vector index to build: "
                                   "auto, flat, hnsw, ivf-flat, ivf-pq or opq-ivf-pq; kept with "
                                   "the index. auto picks the most accurate that fits "
                                   "--max-memory (docs/scale.md)."),
    max_memory: str = typer.Option(None, "--max-memory", help="Memory the vector index may "
                                   "take, built and searched, e.g. 2GB or 512MB; kept with the "
                                   "index."),
    drop_model: str = typer.Option(None, "--drop-model", help="Remove this model's vectors "
                                   "(its name or key, see --status), e.g. the old one after "
                                   "--model NEW; index nothing."),
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Index image folders for search: embeds new and changed files, forgets deleted ones."""
    if drop_model is not None:
        return _drop_model(index_path, drop_model, bool(folders or status or ocr or watch
                                                         or from_embeddings or model), json_out)
    # Only folders to add make a new index: --status, or an update of an index's own folders,
    # on a mistyped --index must not leave an empty one behind; nor must a mistyped folder.
    spec = engine_spec(backend, precision, device=device)
    for folder in folders or []:
        if not folder.is_dir():
            from vislang.errors import InputError

            raise InputError(f"no such folder: {folder}")
    if from_embeddings is not None and (folders or status or ocr or watch or model):
        from vislang.errors import InputError

        raise InputError("--from-embeddings imports vislang embed output on its own, with the "
                         "model it was embedded with; index folders, --ocr or --watch in a "
                         "second run")
    choosing = index_type is not None or max_memory is not None
    if choosing:  # a mistyped kind or size fails before any work
        from vislang.search.plan import choose, parse_memory

        choose(0, 1, index_type or "auto", parse_memory(max_memory) if max_memory else None)
    create = (bool(folders) or from_embeddings is not None) and not status
    with _open(index_path, model, spec, create=create) as idx:
        if status:
            return _print_status(idx.stats(), json_out)
        if choosing:  # too small for what the index holds already: fail before the work
            idx.check_ann(index_type, max_memory)
        if from_embeddings is not None:  # the shards' model, named by their manifest
            summary = idx.import_embeddings(from_embeddings)
            plan = idx.build_ann(index_type, max_memory, not json_out) if choosing else None
            _print_summary(summary, json_out, plan)
            return
        if idx.model_name is None:
            idx.model_name = settings().model
        if ocr:  # fail before the embedding work when the OCR extra is missing
            from vislang.textread import default_reader

            reader = default_reader()
        summary = idx.update(folders or None, exclude, hidden, progress=not json_out)
        if ocr:
            from vislang.textread.index import ocr_index

            read = ocr_index(idx, reader, progress=not json_out)
        plan = idx.build_ann(index_type, max_memory, not json_out) if choosing else None
    if json_out:
        return print_json({**summary.as_dict(), **({"ocr": read.as_dict()} if ocr else {}),
                           **({"ann": _plan_record(plan)} if plan else {})})
    _print_summary(summary, json_out, plan)
    if ocr:
        print_ocr_summary(read)
    if watch:
        _watch(index_path, model, spec, folders, exclude, hidden, poll, json_out)


def _drop_model(index_path: Path | None, name: str, other_work: bool, json_out: bool) -> None:
    from vislang.errors import InputError

    if other_work:
        raise InputError("--drop-model removes a vector set on its own; index, read text or "
                         "watch in another run")
    with _open(index_path, None, None) as idx:
        gone = idx.drop_model(name)
        folder = idx.folder
    if json_out:
        return print_json({"dropped": name, "vectors": gone})
    stdout.print(f"removed {gone} vectors of {name} from {folder} (the file shrinks at the "
                 "next SQLite VACUUM; the space is reused meanwhile)", highlight=False)


def _plan_record(plan) -> dict:
    """The vector index chosen, for --json."""
    return {"index_type": plan.kind, "factory": plan.factory, "index_bytes": plan.index_bytes,
            "peak_bytes": plan.peak_bytes, "reason": plan.reason}


def _print_summary(summary, json_out: bool, plan=None) -> None:
    """What an update or an import changed (and the vector index chosen, if one was): a line
    for people, the record for --json."""
    if json_out:
        return print_json({**summary.as_dict(), **({"ann": _plan_record(plan)} if plan else {})})
    stdout.print(f"added {summary.added}, updated {summary.updated}, moved {summary.moved}, "
                 f"removed {summary.removed}, unchanged {summary.unchanged}, "
                 f"skipped {len(summary.skipped)}; "
                 + (f"loaded the model in {summary.load_seconds:.1f} s; "
                    if summary.load_seconds else "")
                 + f"embedded {summary.embedded} images in {summary.embed_seconds:.1f} s")
    for path, reason in summary.skipped[:SKIPPED_SHOWN]:
        stdout.print(f"  skipped {path}: {reason}", highlight=False)
    if len(summary.skipped) > SKIPPED_SHOWN:
        stdout.print(f"  ... and {len(summary.skipped) - SKIPPED_SHOWN} more (--json lists all)")
    if plan is not None:
        stdout.print(f"vector index: {plan.describe()}", highlight=False, markup=False)


def _watch(index_path, model, spec, folders, exclude, hidden: bool, poll: bool,
           json_out: bool) -> None:
    """Index what changes under the folders, a batch at a time, until Ctrl-C."""
    from vislang.search.watch import Watcher

    def batch(summary, paths: int) -> None:
        if json_out:
            return print_json({"batch": paths, **summary.as_dict()})
        stdout.print(f"{datetime.now():%H:%M:%S} {paths} changed path(s): added "
                     f"{summary.added}, updated {summary.updated}, moved {summary.moved}, "
                     f"removed {summary.removed}; embedded {summary.embedded} in "
                     f"{summary.seconds:.1f} s", highlight=False)

    def problem(line: str) -> None:
        print(f"vislang index --watch: {line}", file=sys.stderr, flush=True)

    with _open(index_path, model, spec) as idx:
        roots = [os.path.abspath(f) for f in folders] if folders else idx.store.roots()
        watcher = Watcher(idx, roots, exclude=exclude, hidden=hidden, poll=poll,
                          on_batch=batch, on_problem=problem)
        # Watch first, then catch up on what changed since the update above: nothing that
        # happens in between is missed (a path seen twice is only looked at twice).
        watcher.observe()
        for root in roots:
            watcher.queue(root, True, root)
        watcher.work()
        if not json_out:
            stdout.print(f"watching {', '.join(_display(r) for r in roots)}"
                         f"{' (polling)' if watcher.polling else ''}; Ctrl-C stops",
                         highlight=False)
        sys.stdout.flush()
        try:
            watcher.wait()
        except KeyboardInterrupt:
            pass
        finally:
            watcher.stop()


def print_ocr_summary(read) -> None:
    """The human summary of reading an index's text (vislang index --ocr, ocr --index)."""
    stdout.print(f"read text in {read.read} images in {read.seconds:.1f} s ({read.with_text} "
                 f"with text, {read.lines} lines), {read.unchanged} read before, skipped "
                 f"{len(read.skipped)}", highlight=False)
    for path, reason in read.skipped[:SKIPPED_SHOWN]:
        stdout.print(f"  skipped {path}: {reason}", highlight=False, markup=False)


def _print_status(stats: dict, json_out: bool) -> None:
    if json_out:
        return print_json(stats)
    stdout.print(f"index: {stats['path']} ({stats['bytes_on_disk'] / 1e6:.1f} MB on disk)")
    stdout.print(f"files: {stats['files']} ({stats['distinct_contents']} distinct contents, "
                 f"{stats['unreadable']} unreadable)")
    stdout.print("roots: " + (", ".join(stats["roots"]) or "none yet"))
    budget = stats["ann"]["max_memory"]
    stdout.print(f"vector index: {stats['ann']['index_type']}"
                 + (f", --max-memory {budget / 2**20:.0f}MB" if budget else ""))
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
    text: str = typer.Option(None, "--text", help="Only images whose text (read by vislang "
                             "index --ocr) contains this phrase, ignoring case."),
    threshold: float = typer.Option(None, "--threshold", min=-1.0, max=1.0,
                                    help="Drop results scoring below this cosine similarity "
                                    "(-1..1)."),
    rerank: int = typer.Option(None, "--rerank", min=0, max=100_000, help="Re-score this many "
                               "candidates with the exact stored vectors (default: 100 on a "
                               "compressed ivf-pq index, none on the others; 0: never)."),
    index_path: Path = IndexOption,
    model: str = SearchModelOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    paths_only: bool = typer.Option(False, "--paths", help="One path per line, for pipes. A "
                                    "path with a newline in it would read as two, so it is left "
                                    "out with a warning: use --null for those."),
    null: bool = typer.Option(False, "--null", "-0", help="Paths only, each ended by a NUL byte "
                              "as find -print0 does (for xargs -0): safe for any file name."),
    json_out: bool = JsonOption,
) -> None:
    """Search the index by text, by image, or by both with terms added and subtracted."""
    from vislang.errors import InputError
    from vislang.search.query import Filters, parse_date

    spec = engine_spec(backend, precision, "latency", device)  # one query: answer it soonest
    if json_out and (paths_only or null):
        raise InputError(f"--json and {'--null' if null else '--paths'} are two different "
                         "outputs; give one of them")
    if image is not None and not image.is_file():
        raise InputError(f"no such image: {image}")
    filters = Filters(under=str(under) if under else None, extensions=tuple(ext),
                      since=parse_date(since) if since else None,
                      until=parse_date(until, end=True) if until else None)
    with _open(index_path, model, spec) as idx:
        results = idx.search(text=query, image=image, k=top, add=add, sub=sub, filters=filters,
                             threshold=threshold, text_filter=text, rerank=rerank)
        # the text query loaded the model: say so if it cannot read the query's script
        if query and (note := idx.model("latency").script_note(query)):
            print(note, file=sys.stderr)
    if json_out:
        return print_json([{"path": r.path, "score": round(r.score, 6), "caption": r.caption,
                            **({"ocr": r.ocr} if r.ocr else {})} for r in results])
    if paths_only or null:
        return _print_paths([r.path for r in results], b"\0" if null else b"\n")
    if not results:
        stdout.print("no results" + (" above the threshold" if threshold is not None else ""))
        return
    captioned = any(r.caption for r in results)
    read = any(r.ocr for r in results)
    table = Table("rank", "score", "taken", "path", *(["caption"] if captioned else []),
                  *(["text matched"] if read else []))
    table.columns[3].overflow = "fold"
    for rank, r in enumerate(results, 1):
        taken = datetime.fromtimestamp(r.taken).strftime("%Y-%m-%d")
        table.add_row(str(rank), f"{r.score:.3f}", taken, _display(r.path),
                      *([r.caption or ""] if captioned else []),
                      *([" / ".join(line["text"] for line in r.ocr or [])] if read else []))
    stdout.print(table)


def dups(
    threshold: float = typer.Option(0.95, "--threshold", "-t", min=0.0, max=1.0,
                                    help="Cosine similarity at or above which two images count "
                                    "as near-duplicates, 0..1 (a negative one means unlike "
                                    "images, never duplicates)."),
    index_path: Path = IndexOption,
    model: str = SearchModelOption,
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Groups of near-duplicate images in the index (copies, re-encodes, resizes, bursts)."""
    with _open(index_path, model, engine_spec(device=device)) as idx:
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


def _print_paths(paths: list[str], end: bytes) -> None:
    """Each path's own bytes (as the file system has them), then ``end``; with newlines as the
    separator, a path holding one is left out rather than read as two paths."""
    shown = [p for p in paths if end != b"\n" or "\n" not in p]
    sys.stdout.buffer.write(b"".join(os.fsencode(p) + end for p in shown))
    sys.stdout.buffer.flush()
    if len(shown) < len(paths):
        print(f"warning: left out {len(paths) - len(shown)} path(s) with a newline in the name, "
              "which --paths cannot show one per line; use --null to list them", file=sys.stderr)


def _display(path: str) -> str:
    """Paths under the working directory print relative: shorter, and still openable."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path
