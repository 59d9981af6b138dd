"""The ``vislang`` command: parse, call the core, format. No model logic lives here."""

from __future__ import annotations

import os
import sys

import typer

from vislang.cli import (
    caption,
    classify,
    demo,
    engines,
    models,
    saliency,
    search,
    serve,
    shapes,
    train,
)
from vislang.errors import VislangError

app = typer.Typer(
    name="vislang",
    help="Vision-language models made practical: classify, search and explain images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("index")(search.index)
app.command("search")(search.search)
app.command("dups")(search.dups)
app.command("saliency")(saliency.saliency)
app.command("serve")(serve.serve)
app.command("models")(models.models)
app.command("classify")(classify.classify)
app.command("probe")(classify.probe)
app.command("caption")(caption.caption)
app.command("ask")(caption.ask)
app.add_typer(classify.eval_app, name="eval")
app.command("train")(train.train)
app.command("shapes")(shapes.shapes)
app.command("demo")(demo.demo)
app.command("info")(engines.info)
app.command("export")(engines.export)
app.add_typer(engines.cache_app, name="cache")


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    if debug:
        os.environ["VISLANG_DEBUG"] = "1"
    _quiet_libraries()


def _quiet_libraries() -> None:
    # transformers' own progress bars and advice would drown the command's output. Set through
    # the environment because importing transformers here would slow every command down.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def run() -> None:
    """Console-script entry point: one line per error, a non-zero exit code."""
    try:
        app(standalone_mode=False)
    except VislangError as e:
        _fail(e, e.exit_code)
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 -- click's usage errors and real bugs alike
        import click

        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(130)
        _fail(e, 1, prefix=f"internal error ({type(e).__name__}): ")


def _fail(error: BaseException, code: int, prefix: str = "") -> None:
    if os.environ.get("VISLANG_DEBUG"):
        raise error
    print(f"error: {prefix}{error}", file=sys.stderr)
    if prefix:
        print("run again with --debug for the traceback", file=sys.stderr)
    sys.exit(code)
