"""Training data: (image, caption) pairs and search feedback, read from the user's files.

Bad records never stop a run: each one is skipped and reported with its line number
(``Problems``), and the run stops with a clear error only when nothing usable is left.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from vislang.errors import InputError
from vislang.prompts import DEFAULT_TEMPLATES

CSV_IMAGE_COLUMNS = ("image", "path", "filepath", "file")
CSV_CAPTION_COLUMNS = ("caption", "text", "title")


@dataclass(frozen=True)
class Pair:
    image: Path
    caption: str
    label: str | None = None  # a class name, when the data has classes (ImageFolder, "label")


@dataclass(frozen=True)
class Feedback:
    """One search: the query, the results the user clicked and those shown but skipped."""

    query: str
    clicked: tuple[Path, ...]
    skipped: tuple[Path, ...]


@dataclass
class Problems:
    """Records skipped while reading, each with where and why."""

    messages: list[str] = field(default_factory=list)

    def add(self, source: Path, line: int, why: str) -> None:
        self.messages.append(f"{source}:{line}: {why}")

    def __len__(self) -> int:
        return len(self.messages)


def read_pairs(source: str | Path, problems: Problems, *, seed: int = 0) -> list[Pair]:
    """Pairs from a JSONL or CSV file, or from an ImageFolder directory."""
    source = Path(source)
    if source.is_dir():
        pairs = _image_folder_pairs(source, seed)
    elif not source.is_file():
        raise InputError(f"no such training data: {source} (give a .jsonl, a .csv or a folder)")
    elif source.suffix.lower() == ".csv":
        pairs = _csv_pairs(source, problems)
    else:
        pairs = _jsonl_pairs(source, problems)
    if not pairs:
        raise InputError(f"{source} holds no usable (image, caption) pairs"
                         + (f"; first problem: {problems.messages[0]}" if problems else ""))
    return pairs


def _check(source: Path, line: int, image, caption, problems: Problems) -> Path | None:
    if not isinstance(caption, str) or not caption.strip():
        problems.add(source, line, "empty or missing caption")
        return None
    if not isinstance(image, str) or not image:
        problems.add(source, line, "missing image path")
        return None
    path = Path(image).expanduser()
    path = path if path.is_absolute() else source.parent / path
    if not path.is_file():
        problems.add(source, line, f"image not found: {path}")
        return None
    return path


def _jsonl_pairs(source: Path, problems: Problems) -> list[Pair]:
    pairs = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            problems.add(source, number, f"not valid JSON ({e.msg})")
            continue
        if not isinstance(record, dict):
            problems.add(source, number, "expected a JSON object")
            continue
        path = _check(source, number, record.get("image"), record.get("caption"), problems)
        if path is not None:
            pairs.append(Pair(path, record["caption"].strip(), record.get("label")))
    return pairs


def _csv_pairs(source: Path, problems: Problems) -> list[Pair]:
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        image_col = next((c for c in CSV_IMAGE_COLUMNS if c in header), None)
        caption_col = next((c for c in CSV_CAPTION_COLUMNS if c in header), None)
        if image_col is None or caption_col is None:
            raise InputError(f"{source}: the CSV header needs an image column "
                             f"({'/'.join(CSV_IMAGE_COLUMNS)}) and a caption column "
                             f"({'/'.join(CSV_CAPTION_COLUMNS)}); found {header}")
        pairs = []
        for number, row in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): v for k, v in row.items()}
            path = _check(source, number, row.get(image_col), row.get(caption_col), problems)
            if path is not None:
                pairs.append(Pair(path, row[caption_col].strip(), row.get("label")))
    return pairs


def _image_folder_pairs(root: Path, seed: int) -> list[Pair]:
    from vislang.datasets.folder import ImageFolder

    data = ImageFolder.open(root)
    rng = random.Random(seed)
    # A class name becomes a sentence through a template, as zero-shot prompts do.
    return [Pair(path, rng.choice(DEFAULT_TEMPLATES).format(data.classes[t]), data.classes[t])
            for path, t in zip(data.paths, data.targets)]


def read_feedback(source: str | Path, problems: Problems) -> list[Feedback]:
    """JSONL of ``{"query": ..., "clicked": [paths], "shown": [paths]}``."""
    source = Path(source)
    if not source.is_file():
        raise InputError(f"no such feedback file: {source}")
    records = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            query, clicked, shown = record["query"], record["clicked"], record.get("shown", [])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            problems.add(source, number, f"expected {{query, clicked, shown}} JSON ({e})")
            continue
        clicked_paths = _existing(source, number, clicked, problems)
        skipped = _existing(source, number, [p for p in shown if p not in clicked], problems)
        if not str(query).strip() or not clicked_paths:
            problems.add(source, number, "needs a query and at least one clicked image")
            continue
        records.append(Feedback(str(query).strip(), clicked_paths, skipped))
    if not records:
        raise InputError(f"{source} holds no usable feedback records")
    return records


def _existing(source: Path, line: int, paths, problems: Problems) -> tuple[Path, ...]:
    found = []
    for p in paths:
        path = Path(p).expanduser()
        path = path if path.is_absolute() else source.parent / path
        if path.is_file():
            found.append(path)
        else:
            problems.add(source, line, f"image not found: {path}")
    return tuple(found)
