"""``vislang ocr``: the text in images (PP-OCRv6 through vislang's batch reader)."""

from __future__ import annotations

from pathlib import Path

import typer

from vislang.cli.common import JsonOption, print_json, stdout


def ocr(
    images: list[Path] = typer.Argument(None, help="Image files to read the text of (with "
                                        "--index: the index folder, default: the one vislang "
                                        "search uses)."),
    min_confidence: float = typer.Option(0.5, "--min-confidence", help="Leave out lines "
                                         "read with less confidence than this (0..1)."),
    max_side: int = typer.Option(2000, "--max-side", help="Read larger images scaled down "
                                 "to this many pixels on their long side."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images read together."),
    index: bool = typer.Option(False, "--index", help="Read the text of every image of a "
                               "search index not read yet and store it: vislang search then "
                               "matches its words, and --text filters by it."),
    json_out: bool = JsonOption,
) -> None:
    """Read the text in images: each line with its confidence and box (4 corners, pixels).

    Unreadable files are skipped with the reason; the others are still read. Needs the OCR
    extra: pip install 'vislang[ocr]'.
    """
    from vislang.errors import InputError
    from vislang.textread import TextReader

    if not 0 <= min_confidence <= 1:
        raise InputError(f"--min-confidence must be between 0 and 1, not {min_confidence}")
    if max_side < 32 or batch_size < 1:
        raise InputError("--max-side must be at least 32 and --batch-size at least 1")
    reader = TextReader(max_side=max_side, min_confidence=min_confidence)
    if index:
        if len(images or []) > 1:
            raise InputError("--index takes one index folder, not image files; read files "
                             "without --index")
        return _read_index(images[0] if images else None, reader, batch_size, json_out)
    if not images:
        raise InputError("no images given: vislang ocr IMAGE... (or --index to read the text "
                         "of a search index)")
    results = reader.read(images, batch_size, progress=not json_out and len(images) > 1)
    if json_out:
        return print_json([r.as_dict() for r in results])
    for result in results:
        _show(result)
    skipped = sum(1 for r in results if r.skipped)
    if skipped:
        stdout.print(f"{len(results) - skipped} read, {skipped} skipped", highlight=False)


def _read_index(path: Path | None, reader, batch_size: int, json_out: bool) -> None:
    from vislang.cli.search import print_ocr_summary
    from vislang.search import Index
    from vislang.textread.index import ocr_index

    with Index.open(path, create=False) as idx:
        summary = ocr_index(idx, reader, progress=not json_out, batch_size=batch_size)
        total = idx.store.ocr_count()
    if json_out:
        return print_json({**summary.as_dict(), "texts": total})
    print_ocr_summary(summary)


def _show(result) -> None:
    if result.skipped:
        stdout.print(f"{result.source}: skipped: {result.skipped}", highlight=False,
                     markup=False)
        return
    found = f"{len(result.lines)} line{'s' * (len(result.lines) != 1)}"
    stdout.print(f"{result.source}: {found}" if result.lines else f"{result.source}: no text",
                 highlight=False, markup=False)
    for line in result.lines:
        x0, y0, x1, y1 = (round(v) for v in line.bounds())
        stdout.print(f"  {line.confidence:.2f}  [{x0},{y0} {x1},{y1}]  {line.text}",
                     highlight=False, markup=False)
