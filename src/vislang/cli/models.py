"""``vislang models``: what can be loaded, and what is already on disk."""

from __future__ import annotations

from dataclasses import asdict

from rich.table import Table

from vislang.cli.common import JsonOption, print_json, stdout
from vislang.models.registry import available_models


def models(json_out: bool = JsonOption) -> None:
    """List model names `vislang load` knows and whether each is on disk."""
    infos = available_models()
    if json_out:
        print_json([asdict(i) for i in infos])
        return
    table = Table("name", "source", "on disk")
    for info in infos:
        table.add_row(info.name, info.source, "yes" if info.on_disk else "no (needs network)")
    stdout.print(table)
    stdout.print("Any CLIP or SigLIP hub id, or a directory saved with save_pretrained, works too.")
