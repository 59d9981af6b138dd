"""The batch reader: decode, detect per image, recognise all lines of a batch together.

Per batch of images: decoding runs in worker threads ahead of the models; each image is
scaled once to the working size (its long side at most ``max_side``, as RapidOCR does) and
that one BGR array serves the detector and the line crops; then the lines of the whole batch
go through the classifier and the recogniser in shared batches. An image where none of the
probe's candidate lines reads as text costs one small detector run and a few line reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vislang.errors import ImageLoadError
from vislang.images import MAX_PIXELS, ImageSource, load_image
from vislang.parallel import prepared_batches
from vislang.textread.detect import PROBE_SIDE, Detector
from vislang.textread.models import load_models
from vislang.textread.recognize import LineText, Recognizer, crop_lines
from vislang.textread.results import OcrLine, OcrResult

MAX_SIDE = 2000  # RapidOCR's Global.max_side_len: larger images are read at this size
MIN_CONFIDENCE = 0.5  # RapidOCR's Global.text_score: less sure lines are mostly noise
SINGLE_CHAR_CONFIDENCE = 0.9
# Bumped whenever a change to the reader changes what it reads: an index re-reads the text
# that an older version read (TextReader.key).
READER_VERSION = 1


@dataclass
class Page:
    """One decoded image at working size, and how to map its pixels back to the original."""

    label: str
    pixels: np.ndarray  # BGR uint8, the channel order the PaddleOCR models were trained on
    scale: tuple[float, float]  # original / working, for x and y
    size: tuple[int, int]  # original width, height


@dataclass(frozen=True)
class OcrBatch:
    """One batch from ``TextReader.read_batches``: the readable items and what they hold."""

    items: list  # the items that were read, in input order
    results: list[OcrResult]  # one per item
    failed: list[tuple[object, ImageLoadError]]  # (item, why) for each that could not be read


class TextReader:
    """Reads the text in images with PP-OCRv6 (RapidOCR's ONNX models).

    ``max_side``: images are read with their long side at most this (memory and time stay
    bounded for a 100-megapixel scan; text must then be large enough to survive the scaling).
    ``probe_side``: the size of the quick look for any text (None: always run the full
    detector). ``orient``: check each line for upside-down text. ``min_confidence``: lines
    read with less are dropped. ``threads``: ONNX Runtime threads (default: all cores).
    """

    def __init__(self, *, max_side: int = MAX_SIDE, probe_side: int | None = PROBE_SIDE,
                 orient: bool = True, min_confidence: float = MIN_CONFIDENCE,
                 threads: int | None = None, max_pixels: int = MAX_PIXELS):
        models = load_models(threads)
        self.detect = Detector(models.detector, probe_side)
        self.recognize = Recognizer(models.recognizer, models.classifier, models.characters)
        self.max_side, self.orient = max_side, orient
        self.min_confidence, self.max_pixels = min_confidence, max_pixels

    @property
    def key(self) -> str:
        """Who read a text, as an index stores it: the models (with the rapidocr release that
        ships them) and this reader's version. Settings such as ``min_confidence`` are not
        part of it: changing them does not make an index read everything again."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            shipped = version("rapidocr")
        except PackageNotFoundError:
            shipped = "unknown"
        return f"PP-OCRv6 (rapidocr {shipped}) vislang-textread-{READER_VERSION}"

    def read(self, images: Iterable[ImageSource], batch_size: int = 16,
             progress: bool = False) -> list[OcrResult]:
        """One result per image, in order; an unreadable image gives a result with no lines
        and the reason in ``skipped`` instead of stopping the run."""
        images = list(images)
        results: list[OcrResult | None] = [None] * len(images)
        for batch in self.read_batches(range(len(images)), batch_size, images.__getitem__,
                                       progress):
            for i, result in zip(batch.items, batch.results):
                results[i] = result
            for i, error in batch.failed:
                results[i] = OcrResult(_label(images[i]), skipped=error.reason)
        return results

    def read_one(self, image: ImageSource) -> OcrResult:
        """The text of one image; raises ImageLoadError when it cannot be read."""
        page = self._load(image)
        return self._read_pages([page])[0]

    def read_batches(self, items: Iterable, batch_size: int = 16,
                     source: Callable[[object], ImageSource] | None = None,
                     progress: bool = False) -> Iterator[OcrBatch]:
        """Read ``items`` a batch at a time, so a caller can store one batch before the next
        runs. ``source(item)`` is the image an item stands for (default: the item itself), so
        items can carry what the caller needs, e.g. ``(file id, path)``. An unreadable image
        is a failure of its batch, never an exception."""
        image_of = source or (lambda item: item)
        for batch in prepared_batches(items, lambda item: self._load(image_of(item)),
                                      batch_size, label="reading text", progress=progress):
            yield OcrBatch(batch.items, self._read_pages(batch.values), batch.failed)

    def _load(self, source: ImageSource) -> Page:
        image = load_image(source, max_pixels=self.max_pixels)
        width, height = image.size
        factor = self.max_side / max(width, height)
        if factor < 1:  # PIL's resize halves in steps first: fast, and no aliasing
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        scale = (width / image.width, height / image.height)
        return Page(_label(source), bgr, scale, (width, height))

    def _read_pages(self, pages: list[Page]) -> list[OcrResult]:
        # Pages big enough for a probe are read at the probe's boxes first: only those where
        # a candidate reads as text pay for the full-resolution detection.
        probed = [i for i, page in enumerate(pages) if self.detect.wants_probe(page.pixels)]
        candidates = self._lines(pages, probed, self.detect.probe)
        full = [i for i in range(len(pages)) if i not in probed or candidates[probed.index(i)]]
        found = dict(zip(full, self._lines(pages, full, self.detect.full)))
        return [OcrResult(page.label, found.get(i, []), size=page.size)
                for i, page in enumerate(pages)]

    def _lines(self, pages: list[Page], which: list[int], detect) -> list[list[OcrLine]]:
        """The lines ``detect`` finds on each of ``pages[which]``, read in one batch."""
        boxes = [detect(pages[i].pixels).boxes for i in which]
        crops = [c for i, b in zip(which, boxes) for c in crop_lines(pages[i].pixels, b)]
        texts = iter(self.recognize(crops, self.orient))
        return [[line for box, text in zip(page_boxes, texts)
                 if (line := self._line(pages[i], box, text))]
                for i, page_boxes in zip(which, boxes)]

    def _line(self, page: Page, box: np.ndarray, read: LineText) -> OcrLine | None:
        """The line in original pixels, or None when it is too unsure to be text."""
        text = read.text.strip()
        # A lone glyph read with middling confidence is mostly a shape (a circle as "O", a
        # square as a block): real single characters read with more.
        needed = SINGLE_CHAR_CONFIDENCE if len(text) == 1 else self.min_confidence
        if not text or read.confidence < max(needed, self.min_confidence):
            return None
        sx, sy = page.scale
        corners = tuple((float(x * sx), float(y * sy)) for x, y in box)
        return OcrLine(read.text, read.confidence, corners)


def _label(source: ImageSource) -> str:
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL image>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<file object>"))
