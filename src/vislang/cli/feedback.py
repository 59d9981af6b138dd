"""``vislang feedback``: what ``vislang serve`` recorded about searches, exported or erased;
``vislang eval feedback``: how well a model ranks the results users chose."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from vislang.cli.common import (
    BackendOption,
    DeviceOption,
    JsonOption,
    PrecisionOption,
    engine_spec,
    load_model,
    print_json,
    stderr,
    stdout,
)
from vislang.errors import InputError

feedback_app = typer.Typer(help="Searches and clicks recorded by vislang serve: export them "
                           "for training, see how many, erase them.", no_args_is_help=True)

IndexOption = typer.Option(None, "--index", "-i", help="Index folder. Default: $VISLANG_INDEX "
                           "or the per-user one (as vislang search).")


def _log(index_path: Path | None):
    """The feedback of an existing index (never creates one), and the index to close."""
    from vislang.search.feedback import FeedbackLog
    from vislang.search.index import Index

    index = Index.open(index_path, create=False)
    return index, FeedbackLog(index.store)


@feedback_app.command("export")
def export(
    index_path: Path = IndexOption,
    out: Path = typer.Option(None, "--out", "-o", help="Write the JSONL here (default: "
                             "stdout), for vislang train --feedback FILE."),
    json_out: bool = typer.Option(False, "--json", help="One JSON document: the records and "
                                  "what was skipped, instead of JSONL."),
) -> None:
    """The training file: one {query, clicked, shown, marked} line per search with a chosen
    result, paths as they are now. Results whose file is gone are skipped and counted."""
    index, log = _log(index_path)
    with index:
        found = log.export()
    if json_out:
        print_json(found.summary() | {"records": found.records})
        return
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in found.records)
    if out is None:
        typer.echo(lines, nl=False)
    else:
        out.write_text(lines, encoding="utf-8")
    s = found.summary()
    # stderr: stdout may be the training file itself
    stderr.print(f"exported {s['records']} searches{f' to {out}' if out else ''}; skipped "
                 f"{s['missing_ids']} results no longer in the index and "
                 f"{s['searches_without_clicks']} searches with no chosen result",
                 highlight=False, soft_wrap=True)


@feedback_app.command("stats")
def stats(index_path: Path = IndexOption, json_out: bool = JsonOption) -> None:
    """How many searches and clicks are recorded, and how many clicks were ignored."""
    index, log = _log(index_path)
    with index:
        found = log.stats()
    if json_out:
        print_json(found)
        return
    stdout.print(f"{found['searches']} searches recorded, {found['searches_with_clicks']} with "
                 f"a chosen result; {found['clicks']} clicks", highlight=False)
    for reason, count in found["ignored"].items():
        if count:
            stdout.print(f"ignored: {count} clicks ({reason})", highlight=False)


@feedback_app.command("clear")
def clear(index_path: Path = IndexOption, json_out: bool = JsonOption) -> None:
    """Erase every recorded search and click of the index (the images and vectors stay)."""
    index, log = _log(index_path)
    with index:
        gone = log.clear()
    if json_out:
        print_json(gone)
        return
    stdout.print(f"erased {gone['searches']} searches and {gone['clicks']} clicks from "
                 f"{index.folder}", highlight=False)


def eval_feedback(
    index_path: Path = IndexOption,
    models: list[str] = typer.Option(..., "--model", "-m", help="A model to measure; repeat "
                                     "it to compare (the old one, then the trained one)."),
    held_out: Path = typer.Option(None, "--held-out", help="The searches to measure: "
                                  "feedback_heldout.json from vislang train --feedback-from. "
                                  "Default: the one in a --model directory, else every "
                                  "recorded search."),
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Mean reciprocal rank and recall@k of the results users chose, ranked among the whole
    collection by each model, on the searches held out of training."""
    from vislang.search.index import default_index_path
    from vislang.train.feedback import evaluate_feedback, read_held_out

    folder = index_path or default_index_path()
    split = held_out or _held_out_beside(models)
    searches = read_held_out(split) if split else None
    spec = engine_spec(backend, precision, device=device)
    reports = [evaluate_feedback(folder, load_model(name, spec, quiet=json_out), searches)
               | {"name": name} for name in models]
    scope = f"held-out searches of {split}" if split else "every recorded search"
    if json_out:
        print_json({"index": str(folder), "searches": scope, "models": reports})
        return
    _print(reports, scope)


def _held_out_beside(models: list[str]) -> Path | None:
    from vislang.train.feedback import HELD_OUT_NAME

    found = [Path(m) / HELD_OUT_NAME for m in models if (Path(m) / HELD_OUT_NAME).is_file()]
    if len({f.read_text() for f in found}) > 1:
        raise InputError(f"the models hold different held-out lists ({', '.join(map(str, found))}"
                         "); choose one with --held-out")
    return found[0] if found else None


def _print(reports: list[dict], scope: str) -> None:
    ks = [key for key in reports[0] if key.startswith("recall@")]
    table = Table(title=f"chosen results, ranked among the collection ({scope})")
    for column in ("model", "searches", "clicks", "MRR", *ks):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in reports:
        table.add_row(r["name"], str(r["searches"]), str(r["clicks"]), f"{r['mrr']:.3f}",
                      *(f"{r[k]:.1%}" for k in ks))
    stdout.print(table)
