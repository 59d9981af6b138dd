"""``vislang shapes``: write a generated shapes-world data set to disk."""

from __future__ import annotations

from pathlib import Path

import typer

from vislang.cli.common import JsonOption, print_json, stdout


def shapes(
    out: Path = typer.Argument(..., help="Folder to write (created if missing)."),
    n: int = typer.Option(200, "--n", "-n", min=1, help="How many scenes."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same scenes, on every machine."),
    image_size: int = typer.Option(64, "--image-size", min=32, help="Side of each image, pixels."),
    objects: int = typer.Option(None, "--objects", min=1, max=3,
                                help="Objects per scene (default: 1 to 3 at random)."),
    json_out: bool = JsonOption,
) -> None:
    """Generate shapes-world scenes: images, pairs.jsonl (captions, boxes, Q&A), ImageFolder."""
    from vislang.datasets.shapes import write_dataset

    root = write_dataset(out, n, seed, image_size=image_size, n_objects=objects)
    summary = {"dir": str(root), "scenes": n, "pairs": str(root / "pairs.jsonl"),
               "image_folder": str(root / "classes")}
    has_classes = (root / "classes").is_dir()  # only one-object scenes have a class
    if not has_classes:
        summary["image_folder"] = None
    if json_out:
        print_json(summary)
        return
    stdout.print(f"wrote {n} scenes to {root}\n  captions, boxes, Q&A: {summary['pairs']}")
    if has_classes:
        stdout.print(f"  one-object scenes as an ImageFolder: {summary['image_folder']}")
