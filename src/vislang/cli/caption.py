"""``vislang caption`` and ``vislang ask``: BLIP captions and answers."""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from vislang.cli.common import (
    DeviceOption,
    JsonOption,
    engine_spec,
    existing_files,
    load_blip_model,
    print_json,
    stderr,
    stdout,
)
from vislang.settings import settings

BeamsOption = typer.Option(1, "--beams", help="Beam width (1: greedy decoding).")


BlipPrecisionOption = typer.Option("auto", "--precision", help="fp32, bf16, fp16 (torch on "
                                   "CUDA), int8 (openvino: fastest) or auto (bf16 on CPUs with "
                                   "AMX, fp16 on CUDA, else fp32).")
BlipBackendOption = typer.Option("auto", "--backend", help="Engine: auto (openvino on a CPU "
                                 "where installed, else torch), openvino, onnx or torch.")


def _load(name: str, spec, quiet: bool):
    """Load and prepare a BLIP. A first use of an exported engine exports (and for int8,
    calibrates) its graphs: minutes for a real BLIP, so the person watching is told why."""
    blip = load_blip_model(name, spec)
    if quiet or not stderr.is_terminal:
        blip.prepare()
        return blip
    choice = blip.engine_choice
    with stderr.status(f"loading {name} ({choice.backend}/{choice.precision}; a first use "
                       "exports and compiles its graphs, cached after)..."):
        blip.prepare()
    return blip


def caption(
    images: list[Path] = typer.Argument(None, help="Image files to caption (with --index: the "
                                        "index folder, default: the one vislang search uses)."),
    model: str = typer.Option(None, "--model", "-m", help="BLIP captioning model: name, hub id "
                              "or directory. Default: $VISLANG_CAPTION_MODEL or "
                              "Salesforce/blip-image-captioning-base."),
    prompt: str = typer.Option(None, "--prompt", help='Text every caption starts with, e.g. '
                               '"a picture of".'),
    beams: int = BeamsOption,
    max_tokens: int = typer.Option(20, "--max-tokens", help="Most tokens to generate."),
    backend: str = BlipBackendOption,
    precision: str = BlipPrecisionOption,
    device: str = DeviceOption,
    index: bool = typer.Option(False, "--index", help="Caption every image of a search index "
                               "that has no caption by this model yet, and store the captions: "
                               "vislang search then matches their words too."),
    json_out: bool = JsonOption,
) -> None:
    """Describe each image in a sentence (BLIP image captioning)."""
    from vislang.captioning import caption as run_caption, check_settings
    from vislang.errors import InputError

    spec = engine_spec(backend, precision, device=device)
    name = model or settings().caption_model
    if index:
        if len(images or []) > 1:
            raise InputError("--index takes one index folder, not image files; caption files "
                             "without --index")
        check_settings(beams, max_tokens)
        from vislang.search import Index

        with Index.open(images[0] if images else None, create=False) as idx:
            blip = _load(name, spec, quiet=json_out)
            return _caption_index(idx, blip, prompt, beams, max_tokens, json_out)
    if not images:
        raise InputError("no images given: vislang caption IMAGE... (or --index to caption a "
                         "search index)")
    existing_files(images)
    check_settings(beams, max_tokens)  # bad input fails before model work
    blip = _load(name, spec, quiet=json_out)
    with _note_cuts():
        texts = run_caption(images, blip, prompt=prompt, beams=beams, max_tokens=max_tokens)
    if json_out:
        print_json([{"path": str(p), "caption": t} for p, t in zip(images, texts)])
        return
    table = Table("image", "caption")
    table.columns[0].overflow = "fold"
    for path, text in zip(images, texts):
        table.add_row(str(path), text)
    stdout.print(table)


def _caption_index(idx, blip, prompt: str | None, beams: int, max_tokens: int,
                   json_out: bool) -> None:
    from vislang.captioning import caption_index

    with _note_cuts():
        summary = caption_index(idx, blip, prompt, beams, max_tokens, progress=not json_out)
    total = idx.store.caption_count()
    if json_out:
        return print_json({**summary.as_dict(), "captions": total})
    stdout.print(f"captioned {summary.captioned} images in {summary.seconds:.1f} s, skipped "
                 f"{len(summary.skipped)}; the index holds {total} captions")
    for p, reason in summary.skipped:
        stdout.print(f"  skipped {p}: {reason}", highlight=False)


def ask(
    image: Path = typer.Argument(..., help="The image the question is about."),
    question: str = typer.Argument(..., help='The question, e.g. "what colour is the car?"'),
    model: str = typer.Option(None, "--model", "-m", help="BLIP VQA model: name, hub id or "
                              "directory. Default: $VISLANG_VQA_MODEL or "
                              "Salesforce/blip-vqa-base."),
    beams: int = BeamsOption,
    max_tokens: int = typer.Option(10, "--max-tokens", help="Most tokens to generate."),
    backend: str = BlipBackendOption,
    precision: str = BlipPrecisionOption,
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Answer a question about an image (BLIP visual question answering)."""
    from vislang.captioning import ask as run_ask, check_settings

    spec = engine_spec(backend, precision, device=device)
    existing_files([image])
    check_settings(beams, max_tokens)
    blip = _load(model or settings().vqa_model, spec, quiet=json_out)
    with _note_cuts():
        answer = run_ask(image, question, blip, beams=beams, max_tokens=max_tokens)
    if json_out:
        print_json({"path": str(image), "question": question, "answer": answer})
        return
    stdout.print(answer, highlight=False, markup=False)


@contextmanager
def _note_cuts():
    """A question or prompt cut to the model's text window: one ``note:`` line on stderr, once
    (the library warns per batch, and Python's warning format takes two lines)."""
    from vislang.captioning import TextTruncatedWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TextTruncatedWarning)
        yield
    notes = [w for w in caught if issubclass(w.category, TextTruncatedWarning)]
    for message in dict.fromkeys(str(w.message) for w in notes):
        print(f"note: {message}", file=sys.stderr)
    for w in caught:
        if w not in notes:  # recording caught every warning; the others show as usual
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
