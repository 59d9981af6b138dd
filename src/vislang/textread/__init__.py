"""Reading the text in images (OCR) with PP-OCRv6, the models the ``rapidocr`` wheel ships.

    >>> import vislang
    >>> vislang.ocr("sign.jpg").text
    'PLATFORM 2'
    >>> [r.text for r in vislang.textread.read(["a.jpg", "b.png"])]

Needs the OCR extra: ``pip install 'vislang[ocr]'``. The recogniser reads Chinese (simplified
and traditional), Japanese kana, Latin scripts with their accented letters, Greek, digits and
common punctuation and symbols; not Cyrillic, Korean Hangul, Arabic, Hebrew, Devanagari or Thai.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

from vislang.images import ImageSource
from vislang.textread.models import INSTALL_HINT, OcrNotInstalledError
from vislang.textread.reader import OcrBatch, TextReader
from vislang.textread.results import OcrLine, OcrResult

__all__ = ["INSTALL_HINT", "OcrBatch", "OcrLine", "OcrNotInstalledError", "OcrResult",
           "TextReader", "default_reader", "ocr", "read", "read_one"]


@functools.cache
def default_reader() -> TextReader:
    """One reader per process with the default settings: its model sessions are made once."""
    return TextReader()


def read(images: Iterable[ImageSource], batch_size: int = 16,
         progress: bool = False) -> list[OcrResult]:
    """The text of each image, in order; unreadable images are skipped with a reason
    (``result.skipped``) while the others are read. See TextReader for the settings."""
    return default_reader().read(images, batch_size, progress)


def read_one(image: ImageSource) -> OcrResult:
    """The text of one image (a path, bytes, a file object or a PIL image); raises
    ImageLoadError when it cannot be read."""
    return default_reader().read_one(image)


def ocr(images: ImageSource | Iterable[ImageSource]):
    """``vislang.ocr(image)``: the OcrResult of one image, or a list of them for a list."""
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(
            images, "read") or not isinstance(images, Iterable):
        return read_one(images)
    return read(images)
