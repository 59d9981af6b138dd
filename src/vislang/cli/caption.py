"""``vislang caption`` and ``vislang ask``: BLIP captions and answers."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vislang.cli.common import JsonOption, existing_files, print_json, stderr, stdout

BeamsOption = typer.Option(1, "--beams", help="Beam width (1: greedy decoding).")


def _load(name: str, quiet: bool):
    from vislang.models.blip import load_blip

    if quiet or not stderr.is_terminal:
        return load_blip(name)
    with stderr.status(f"loading {name}..."):
        return load_blip(name)


def caption(
    images: list[Path] = typer.Argument(..., help="Image files to caption."),
    model: str = typer.Option(None, "--model", "-m", help="BLIP captioning model: name, hub id "
                              "or directory. Default: Salesforce/blip-image-captioning-base."),
    prompt: str = typer.Option(None, "--prompt", help='Text every caption starts with, e.g. '
                               '"a picture of".'),
    beams: int = BeamsOption,
    max_tokens: int = typer.Option(20, "--max-tokens", help="Most tokens to generate."),
    json_out: bool = JsonOption,
) -> None:
    """Describe each image in a sentence (BLIP image captioning)."""
    from vislang.captioning import DEFAULT_CAPTION_MODEL, caption as run_caption

    existing_files(images)
    from vislang.captioning import check_settings

    check_settings(beams, max_tokens)  # bad input fails before model work
    blip = _load(model or DEFAULT_CAPTION_MODEL, json_out)
    texts = run_caption(images, blip, prompt=prompt, beams=beams, max_tokens=max_tokens)
    if json_out:
        print_json([{"path": str(p), "caption": t} for p, t in zip(images, texts)])
        return
    table = Table("image", "caption")
    table.columns[0].overflow = "fold"
    for path, text in zip(images, texts):
        table.add_row(str(path), text)
    stdout.print(table)


def ask(
    image: Path = typer.Argument(..., help="The image the question is about."),
    question: str = typer.Argument(..., help='The question, e.g. "what colour is the car?"'),
    model: str = typer.Option(None, "--model", "-m", help="BLIP VQA model: name, hub id or "
                              "directory. Default: Salesforce/blip-vqa-base."),
    beams: int = BeamsOption,
    max_tokens: int = typer.Option(10, "--max-tokens", help="Most tokens to generate."),
    json_out: bool = JsonOption,
) -> None:
    """Answer a question about an image (BLIP visual question answering)."""
    from vislang.captioning import DEFAULT_VQA_MODEL, ask as run_ask

    existing_files([image])
    from vislang.captioning import check_settings

    check_settings(beams, max_tokens)
    blip = _load(model or DEFAULT_VQA_MODEL, json_out)
    answer = run_ask(image, question, blip, beams=beams, max_tokens=max_tokens)
    if json_out:
        print_json({"path": str(image), "question": question, "answer": answer})
        return
    stdout.print(answer, highlight=False, markup=False)
