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
BackendOption = typer.Option("auto", "--backend", help="Engine: auto, torch, openvino, onnx "
                             "(auto: the fastest installed; see `vislang info`).")
PrecisionOption = typer.Option("auto", "--precision", help="fp32, bf16, fp16, int8 or auto.")

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


def load_model(name: str, quiet: bool = False, backend: str = "torch", precision: str = "fp32",
               mode: str = "throughput"):
    """Load a model for a command; a first use of an engine exports and compiles it."""
    from vislang.models.clip import load

    if quiet:
        return load(name, backend=backend, precision=precision, mode=mode)
    with stderr.status(f"loading {name} ({backend}/{precision})..."):
        model = load(name, backend=backend, precision=precision, mode=mode)
    # A note for the person watching; scripts read stderr for the one error line only.
    if stderr.is_terminal:
        stderr.print(f"model {model.model_key}, engine {model.backend}", highlight=False)
    return model
