"""``vislang models``: what can be loaded, what is already on disk, and what reads many scripts."""

from __future__ import annotations

from dataclasses import asdict

from rich.table import Table

from vislang.cli.common import JsonOption, print_json, stdout
from vislang.models.registry import model_records


def models(json_out: bool = JsonOption) -> None:
    """List model names `vislang load` knows, whether each is on disk and is multilingual."""
    infos = model_records()
    if json_out:
        print_json([asdict(i) for i in infos])
        return
    table = Table("name", "source", "on disk", "multilingual", "for")
    for info in infos:
        table.add_row(info.name, info.source, "yes" if info.on_disk else "no (needs network)",
                      "yes" if info.multilingual else "no (English)",
                      "caption / ask" if info.family == "blip" else "load")
    stdout.print(table)
    stdout.print("Any CLIP, SigLIP or SigLIP 2 hub id, or a directory saved with save_pretrained, "
                 "works too.")
