"""Text read in the images of a search index: ``vislang index --ocr`` and ``vislang ocr --index``.

Per content hash, like embeddings and captions: a moved or copied file is never read again, an
edited one (a new hash) is. Each batch of read texts is one commit, so a killed run keeps what
it finished. The index's own store does the storing; this module only drives the reader (the
search package does not know the reader, and the reader package knows the index only through
the methods it calls here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vislang.textread.reader import TextReader


@dataclass
class OcrSummary:
    """What ``ocr_index`` did."""

    read: int = 0  # contents read now
    with_text: int = 0  # of those, how many held text
    lines: int = 0  # lines read in them
    unchanged: int = 0  # contents whose text this reader had read already
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0
    reader: str = ""

    def as_dict(self) -> dict:
        return {"read": self.read, "with_text": self.with_text, "lines": self.lines,
                "unchanged": self.unchanged,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "seconds": round(self.seconds, 3), "reader": self.reader}


def ocr_index(index, reader: TextReader | None = None, progress: bool = False,
              batch_size: int = 16) -> OcrSummary:
    """Read the text of every content of ``index`` (a ``vislang.search.Index``, not imported
    here: search and textread are sibling layers that never import each other) that ``reader`` (default: the shared
    default reader) has not read yet, and store it, a batch per commit. An unreadable image is
    recorded as a failure with its reason (as embedding and captioning do) and skipped."""
    if reader is None:
        from vislang.textread import default_reader

        reader = default_reader()
    started = time.perf_counter()
    summary = OcrSummary(reader=reader.key)
    with index.writing():
        todo = index.store.hashes_to_ocr(reader.key)  # (content hash, a path of it)
        contents = index.store.db.execute(
            "SELECT count(DISTINCT hash) FROM files WHERE hash IS NOT NULL "
            "AND hash NOT IN (SELECT hash FROM failures)").fetchone()[0]
        summary.unchanged = contents - len(todo)
        for batch in reader.read_batches(todo, batch_size, source=lambda item: item[1],
                                         progress=progress and bool(todo)):
            index.store.put_ocr(
                reader.key,
                [(h, result.text, [line.as_dict() for line in result.lines])
                 for (h, _), result in zip(batch.items, batch.results)],
                [(h, error.reason) for (h, _), error in batch.failed])
            summary.read += len(batch.items)
            summary.with_text += sum(1 for r in batch.results if r.lines)
            summary.lines += sum(len(r.lines) for r in batch.results)
            summary.skipped += [(path, error.reason) for (_, path), error in batch.failed]
    summary.seconds = time.perf_counter() - started
    return summary
