"""Reading images for the web: only from the index's roots, whatever a request says.

A path from a request is resolved (``..``, symbolic links) and must then lie inside one of
the index's roots and name an image file. The file is opened without following a final
symbolic link, and on Linux the opened descriptor's own path is checked again, so swapping a
folder for a link between the check and the open gains nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from vislang.errors import ImageLoadError
from vislang.images import NotRegularFile, is_image_path, load_image, open_regular

THUMB_SIZES = (128, 256, 512, 1024)
# What browsers show as they are; anything else (HEIC, TIFF) is sent as a JPEG rendition.
BROWSER_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                 ".gif": "image/gif", ".webp": "image/webp", ".bmp": "image/bmp"}


class Forbidden(Exception):
    """A path outside the roots, or not an image file: never read."""


class NotFound(Exception):
    """A path inside the roots with no image file behind it."""


@dataclass(frozen=True)
class Confined:
    """An open image file proven to lie inside a root."""

    path: str  # as the request gave it, made absolute: the index stores paths this way
    real: str  # symbolic links resolved
    file: BinaryIO
    size: int
    mtime_ns: int

    def __enter__(self) -> "Confined":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def load(self, max_pixels: int, min_side: int | None = None):
        """The decoded RGB image, EXIF-rotated; errors name the path, not a descriptor."""
        try:
            return load_image(self.file, max_pixels=max_pixels, min_side=min_side)
        except ImageLoadError as error:
            raise type(error)(self.path, error.reason) from None


class Roots:
    """The index's roots, re-read every few seconds: ``vislang index DIR`` may add one."""

    def __init__(self, read_roots: Callable[[], list[str]], ttl: float = 2.0):
        self._read, self._ttl = read_roots, ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[str]] = (-1e9, [])

    def real_roots(self) -> list[str]:
        with self._lock:
            when, roots = self._cached
            if time.monotonic() - when > self._ttl:
                roots = [os.path.realpath(r) for r in self._read()]
                self._cached = (time.monotonic(), roots)
            return roots

    def inside(self, real: str) -> bool:
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep)
                   for r in self.real_roots())

    def open(self, path: str) -> Confined:
        """Open the image at ``path`` for reading; Forbidden / NotFound otherwise."""
        if not path or "\x00" in path or not os.path.isabs(path):
            raise Forbidden(f"{path!r} is not an absolute path inside the index's folders")
        real = os.path.realpath(path)
        if not self.inside(real):
            raise Forbidden(f"{path} is not inside the index's folders")
        if not is_image_path(real):
            raise Forbidden(f"{path} is not an image file")
        # A FIFO or device would hold a file-queue thread for good, and a few such requests
        # would stall every thumbnail: open_regular refuses them without blocking.
        try:
            file = open_regular(real, follow=False)
        except NotRegularFile:
            raise NotFound(f"{path} is not a regular file (a pipe, socket or device); only "
                           "image files are served") from None
        except OSError:
            raise NotFound(f"no image at {path}") from None
        try:
            info = os.fstat(file.fileno())
            opened = _opened_path(file.fileno())
            if opened is not None and not self.inside(opened):
                raise Forbidden(f"{path} is not inside the index's folders")
        except BaseException:
            file.close()
            raise
        return Confined(os.path.abspath(path), real, file, info.st_size, info.st_mtime_ns)


def _opened_path(fd: int) -> str | None:
    """Where an open descriptor really points (Linux); None where the OS cannot say."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


class Thumbnails:
    """JPEG thumbnails, EXIF-rotated, cached on disk by (file, size, mtime, thumbnail size).

    The cache is only a cache: delete it any time. A changed file gets a new key, so a stale
    thumbnail is never served.
    """

    def __init__(self, folder: Path, max_pixels: int):
        self.folder, self.max_pixels = folder, max_pixels

    def get(self, image: Confined, side: int) -> bytes:
        key = hashlib.sha256(f"{image.real}\0{image.size}\0{image.mtime_ns}\0{side}".encode())
        cached = self.folder / key.hexdigest()[:2] / f"{key.hexdigest()}.jpg"
        try:
            return cached.read_bytes()
        except FileNotFoundError:
            pass
        data = render_jpeg(image.load(self.max_pixels, min_side=side), side)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
        partial.write_bytes(data)
        os.replace(partial, cached)  # atomic: a reader sees the whole file or none
        return data


def render_jpeg(picture: Image.Image, side: int) -> bytes:
    """``picture`` shrunk to fit ``side`` x ``side`` (never enlarged), as JPEG."""
    picture = picture.copy()
    picture.thumbnail((side, side))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()
