"""Options and output helpers shared by the commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from vislang.errors import InputError
from vislang.settings import settings

if TYPE_CHECKING:  # vislang.runtime imports torch: seconds that `vislang --help` must not wait
    from vislang.runtime import EngineSpec

DEFAULT_MODEL = settings().model

ModelOption = typer.Option(DEFAULT_MODEL, "--model", "-m",
                           help="Model name (see `vislang models`), hub id or directory. "
                                "Default: $VISLANG_MODEL or ViT-B/32.")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
BackendOption = typer.Option("auto", "--backend", help="Engine: auto, torch, openvino, onnx "
                             "(auto: the fastest installed; see `vislang info`).")
PrecisionOption = typer.Option("auto", "--precision", help="fp32, bf16, fp16, int8 or auto.")
DeviceOption = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (auto: cuda "
                            "when torch sees one, else cpu), or an OpenVINO device: CPU, GPU, "
                            "GPU.N, NPU, AUTO (see `vislang info`).")

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


def engine_spec(backend: str = "auto", precision: str = "auto",
                mode: str = "throughput", device: str = "auto") -> EngineSpec:
    """A command's --backend, --precision and --device as the one spec its models load with,
    the device resolved ("auto" -> cuda or cpu). A bad name, or a CUDA device this machine
    lacks, is an InputError here, before any work."""
    from vislang.runtime import EngineSpec, resolve_device

    return EngineSpec(backend, precision, mode, device=resolve_device(device))


def load_model(name: str, spec: EngineSpec, quiet: bool = False):
    """Load a model for a command; a first use of an engine exports and compiles it."""
    from vislang.models.clip import load

    if quiet:
        return load(name, engine=spec)
    with stderr.status(f"loading {name} ({spec.backend}/{spec.precision})..."):
        model = load(name, engine=spec)
    # A note for the person watching; scripts read stderr for the one error line only.
    if stderr.is_terminal:
        stderr.print(f"model {model.model_key}, engine {model.backend}", highlight=False)
    return model


def load_blip_model(name: str, spec: EngineSpec):
    """A BLIP captioning or VQA model for a command, on the command's engine (weights load,
    and exported graphs compile, on first use or ``prepare()``)."""
    from vislang.models.blip import load_blip

    return load_blip(name, engine=spec)
