"""The ``vislang`` command: parse, call the core, format. No model logic lives here."""

from __future__ import annotations

import os
import sys

import typer

from vislang.cli import (
    caption,
    classify,
    demo,
    embed,
    engines,
    feedback,
    models,
    ocr,
    saliency,
    search,
    serve,
    shapes,
    train,
)
from vislang.errors import VislangError
from vislang.settings import configure, settings

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
app.command("embed")(embed.embed)
app.command("saliency")(saliency.saliency)
app.command("serve")(serve.serve)
app.command("models")(models.models)
app.command("classify")(classify.classify)
app.command("probe")(classify.probe)
app.command("caption")(caption.caption)
app.command("ask")(caption.ask)
app.command("ocr")(ocr.ocr)
app.add_typer(classify.eval_app, name="eval")
classify.eval_app.command("feedback")(feedback.eval_feedback)
app.add_typer(feedback.feedback_app, name="feedback")
app.command("train")(train.train)
app.command("shapes")(shapes.shapes)
app.command("demo")(demo.demo)
app.command("info")(engines.info)
app.command("export")(engines.export)
app.add_typer(engines.cache_app, name="cache")


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say on stderr which engine "
                                 "runs and why, and what is exported or read from the cache."),
) -> None:
    if debug:
        configure(debug=True)
    if verbose and settings().log_level not in ("debug", "info"):  # keep a chattier one
        configure(log_level="info")
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
    except Exception as e:  # noqa: BLE001 -- typer's usage errors and real bugs alike
        code = _framework_exit(e)
        if code is None:
            _fail(e, 1, prefix=f"internal error ({type(e).__name__}): ")
        sys.exit(code)


def _framework_exit(error: Exception) -> int | None:
    """The exit code for typer's own exceptions (after saying what was wrong), None for
    anything else. (typer >= 0.29 vendors click: its usage errors are TyperExceptions, not
    click's classes.)"""
    from typer.exceptions import TyperException

    if isinstance(error, typer.Exit):
        return error.exit_code
    if isinstance(error, typer.Abort):
        return 130
    if not isinstance(error, TyperException):
        return None
    if type(error).__name__ == "NoArgsIsHelpError":
        error.show()  # no arguments: the help is the answer, not an error line
    else:
        _usage_line(error)
    return error.exit_code


def _usage_line(error: Exception) -> None:
    # click's own show() prints the usage, a hint and the error on three lines; scripts and
    # people read one.
    message = " ".join(error.format_message().split()).rstrip(".")
    ctx = getattr(error, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    print(f"error: {message}{hint}", file=sys.stderr)


def _flags_take_no_value() -> None:
    """Leave the value tag off flags in the help: typer 0.29's rich help shows ``--json
    <bool>`` though a flag takes no value (its plain help already leaves it off)."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "flags_untagged", False):  # older typer / done already
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag and self.metavar is None else shown(self, ctx)

    display_type_rich.flags_untagged = True
    TyperOption.display_type_rich = display_type_rich


_flags_take_no_value()  # at import: every way of running `app` shows the same help


def _fail(error: BaseException, code: int, prefix: str = "") -> None:
    if settings().debug:
        raise error
    print(f"error: {prefix}{error}", file=sys.stderr)
    if prefix:
        print("run again with --debug for the traceback", file=sys.stderr)
    sys.exit(code)
