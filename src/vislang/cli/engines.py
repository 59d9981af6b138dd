"""``vislang info``, ``vislang export`` and ``vislang cache``: engines, precisions, exports."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import typer
from rich.table import Table

from vislang.cli.common import JsonOption, print_json, stderr, stdout
from vislang.errors import InputError

cache_app = typer.Typer(help="Exported and compiled engines kept between runs.",
                        no_args_is_help=True)


def info(json_out: bool = JsonOption) -> None:
    """This machine, the engines installed, what each can run, and what `auto` picks."""
    import torch

    from vislang.runtime import (
        BACKENDS,
        choose,
        installed,
        resolve_device,
        supported_precisions,
        why_device,
    )
    from vislang.runtime.cache import cache_root, library_versions, list_entries
    from vislang.runtime.cpu import cpu_class, cpu_has_amx, cpu_has_bf16, describe

    device = resolve_device("auto")
    choice = choose("auto", "auto", device)
    report = {
        "versions": library_versions() | {"python": platform.python_version()},
        "cpu": _cpu_name(), "cores": os.cpu_count(), "cpu_class": cpu_class(),
        "cpu_bf16": cpu_has_bf16(), "cpu_amx": cpu_has_amx(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "backends": {b: {"installed": installed(b), "precisions": list(supported_precisions(b))}
                     for b in BACKENDS},
        "auto": {"backend": choice.backend, "precision": choice.precision,
                 "reason": choice.reason, "device": device},
        "auto_device": {"device": device, "reason": why_device(device)},
        "openvino_devices": _openvino_devices() if installed("openvino") else [],
        "engine_cache": {"path": str(cache_root()), "entries": len(list_entries())},
    }
    if json_out:
        print_json(report)
        return
    stdout.print(f"cpu: {report['cpu']} ({report['cores']} cores), class {describe()}; "
                 f"CUDA: {report['cuda'] or 'none'}", highlight=False)
    versions = report["versions"]
    stdout.print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v != "-"))
    table = Table("backend", "installed", "precisions (best first)")
    for name, row in report["backends"].items():
        table.add_row(name, "yes" if row["installed"] else "no",
                      ", ".join(row["precisions"]) or "-")
    stdout.print(table)
    stdout.print(f"auto device: [bold]{device}[/] ({report['auto_device']['reason']})")
    if report["openvino_devices"]:
        names = ", ".join(f"{d['device']} ({d['name']})" for d in report["openvino_devices"])
        stdout.print(f"OpenVINO devices (--device NAME with --backend openvino): {names}, AUTO",
                     highlight=False)
    stdout.print(f"auto picks [bold]{choice.backend}/{choice.precision}[/]: {choice.reason}")
    stdout.print(f"engine cache: {report['engine_cache']['path']} "
                 f"({report['engine_cache']['entries']} exports)")


def _openvino_devices() -> list[dict]:
    import openvino as ov

    from vislang.runtime.devices import openvino_devices

    core = ov.Core()
    return [{"device": d, "name": core.get_property(d, "FULL_DEVICE_NAME")}
            for d in openvino_devices()]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def export(
    model: str = typer.Argument(..., help="Model name, hub id or directory."),
    backend: str = typer.Option(..., "--backend", help="openvino or onnx."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16, fp16 or int8."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: ./NAME-BACKEND-"
                                                       "PRECISION)."),
    calibration: Path = typer.Option(None, "--calibration",
                                     help="Folder of your images to calibrate int8 on "
                                          "(default: generated shapes scenes)."),
    json_out: bool = JsonOption,
) -> None:
    """Write a model's graphs with a dynamic batch dimension: CLIP's image and text towers;
    BLIP's vision encoder, question encoder (VQA), and decoder without and with past."""
    from vislang import runtime
    from vislang.images import is_image_path
    from vislang.models.blip import is_blip, load_blip
    from vislang.models.clip import load

    # refuses what this machine cannot run, with the way out, before any download
    runtime.check_export(backend, precision)
    images = None
    if calibration is not None:
        images = sorted(p for p in calibration.rglob("*") if p.is_file() and is_image_path(p))
        if not images:
            raise InputError(f"no images under {calibration} to calibrate int8 on")
    out = out or Path(f"{Path(model).name or 'model'}-{backend}-{precision}".replace("/", "-"))
    # the reference engine: the weights as the checkpoint holds them, which export lowers
    loaded = (load_blip if is_blip(model) else load)(model, engine=runtime.REFERENCE)
    with stderr.status(f"exporting {loaded.model_key} to {backend}/{precision}..."):
        paths = runtime.export(loaded, backend, precision, out, calibration=images)
    if json_out:
        print_json({"model": loaded.model_key, "backend": backend, "precision": precision,
                    "files": {graph: str(path) for graph, path in paths.items()}})
        return
    label = "{} tower" if loaded.family == "clip" else "{}"
    for graph, path in paths.items():
        stdout.print(f"{label.format(graph)}: {path}")


@cache_app.command("list")
def cache_list(json_out: bool = JsonOption) -> None:
    """Show cached exports: model, tower, engine, precision, size."""
    from vislang.runtime.cache import cache_root, list_entries

    entries = list_entries()
    if json_out:
        print_json([{"path": str(e.path), "model": e.model, "tower": e.tower,
                     "backend": e.backend, "precision": e.precision, "bytes": e.size_bytes}
                    for e in entries])
        return
    table = Table("model", "tower", "engine", "size", title=str(cache_root()))
    for e in entries:
        table.add_row(e.model, e.tower, f"{e.backend}/{e.precision}",
                      f"{e.size_bytes / 2**20:.1f} MiB")
    stdout.print(table if entries else f"no cached engines in {cache_root()}")


@cache_app.command("clear")
def cache_clear(json_out: bool = JsonOption) -> None:
    """Delete every cached export; the next run re-exports what it needs."""
    from vislang.runtime.cache import clear

    freed = clear()
    if json_out:
        print_json({"freed_bytes": freed})
        return
    stdout.print(f"freed {freed / 2**20:.1f} MiB")

