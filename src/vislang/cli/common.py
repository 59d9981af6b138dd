"""Options and output helpers shared by the commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from vislang.errors import InputError

DEFAULT_MODEL = os.environ.get("VISLANG_MODEL", "ViT-B/32")

ModelOption = typer.Option(DEFAULT_MODEL, "--model", "-m",
                           help="Model name (see `vislang models`), hub id or directory. "
                                "Default: $VISLANG_MODEL or ViT-B/32.")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")

# Piped output is not a terminal: Rich would squeeze tables to 80 columns and cut file paths.
stdout = Console(width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def existing_files(paths: list[Path]) -> list[Path]:
    """Fail before any model work if an input path is missing or not a file."""
    for path in paths:
        if not path.exists():
            raise InputError(f"no such file: {path}")
        if not path.is_file():
            raise InputError(f"not a file: {path}")
    return paths


def load_model(name: str, quiet: bool = False):
    from vislang.models.clip import load

    if quiet:
        return load(name)
    with stderr.status(f"loading {name}..."):
        return load(name)
