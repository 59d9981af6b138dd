"""The one image loader every vislang capability uses.

``load_image`` turns a path, bytes, a binary file object or a PIL image into a fully decoded RGB
image, or raises ``ImageLoadError`` with the path and a reason a person can act on. Models only
ever see 8-bit RGB, so every odd mode (alpha, palette, CMYK, 16-bit, float, ...) is normalised
here once, instead of each caller guessing.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat as st
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vislang.errors import ImageLoadError, ImageTooLargeError

MAX_PIXELS: int = 128_000_000
"""Default limit on width*height, checked from the header before any pixel is decoded."""

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image

# What Pillow's decoders raise on malformed input (its own fuzzers treat these as "clean" failures).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)

_PILLOW_LIMIT = threading.RLock()  # see pillow_limit_off

_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the file name has an image extension vislang can load (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS,
               min_side: int | None = None) -> Image.Image:
    """Load ``source`` as a fully decoded RGB image, EXIF orientation applied.

    ``min_side``: the caller only needs this many pixels on each side, so a JPEG may be decoded
    at 1/2, 1/4 or 1/8 scale (libjpeg's draft mode) while staying at least that large. A 12 MP
    photo bound for a 224-pixel model then decodes several times faster.
    Raises ImageLoadError for anything that is not a readable image within ``max_pixels``.
    Files opened here are closed before returning; a caller's file object is left open.
    """
    _register_heif()
    if isinstance(source, Image.Image):
        label = getattr(source, "filename", "") or "<PIL image>"
        return _finish(source, label, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_stream(io.BytesIO(source), "<bytes>", max_pixels, min_side)
    if isinstance(source, (str, os.PathLike)):
        return _load_path(source, max_pixels, min_side)
    if hasattr(source, "read"):
        return _load_stream(source, getattr(source, "name", "<file object>"), max_pixels,
                            min_side)
    kind = type(source).__name__
    raise TypeError(f"load_image expects a path, bytes, file object or PIL image, not {kind}")


@functools.cache
def _register_heif() -> None:
    # Registering costs an import of libheif, so do it on first use and only once.
    try:
        import pillow_heif
    except ImportError:  # a broken install: HEIC then reads as "unsupported format"
        return
    pillow_heif.register_heif_opener()


_SPECIAL_KINDS = ((st.S_ISFIFO, "a FIFO"), (st.S_ISSOCK, "a socket"),
                  (st.S_ISCHR, "a character device"), (st.S_ISBLK, "a block device"))


class NotRegularFile(OSError):
    """A path that is there but is no regular file; its message is the reason."""


def not_regular(mode: int) -> str | None:
    """Why a file of this mode cannot be read as an image, or None for a regular file: reading
    a FIFO blocks until someone writes, and a device may never end (/dev/zero)."""
    if st.S_ISREG(mode):
        return None
    kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def open_regular(path: str | os.PathLike, follow: bool = True) -> BinaryIO:
    """Open a regular file for reading, refusing anything else (NotRegularFile) without ever
    blocking on it. Stat first so a device is never opened; O_NONBLOCK so a FIFO swapped in
    after that stat cannot hang the open; fstat checks what was actually opened."""
    if reason := not_regular(os.stat(path, follow_symlinks=follow).st_mode):
        raise NotRegularFile(reason)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    if reason := not_regular(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(reason)
    os.set_blocking(fd, True)
    return open(fd, "rb")


def _load_path(path: str | os.PathLike, max_pixels: int, min_side: int | None) -> Image.Image:
    # Open the file ourselves so it is closed by the `with`, whatever Pillow does with it.
    try:
        file = open_regular(path)
    except NotRegularFile as exc:
        raise ImageLoadError(path, str(exc)) from None
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageLoadError(path, "is a directory, not a file") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageLoadError(path, exc.strerror or str(exc)) from None
    with file:
        return _load_stream(file, path, max_pixels, min_side)


def _load_stream(stream: BinaryIO, label: object, max_pixels: int,
                 min_side: int | None = None) -> Image.Image:
    if not stream.seekable():  # Pillow needs to seek; pipes and sockets cannot
        stream = io.BytesIO(stream.read())
    start = stream.tell()
    is_empty = not stream.read(1)
    stream.seek(start)
    if is_empty:
        raise ImageLoadError(label, "empty file (0 bytes)")
    image = _open(stream, label)
    if min_side and image.format == "JPEG":
        _check_pixels(image, label, max_pixels)  # the limit is on the file, not the draft
        image.draft(image.mode, (min_side, min_side))
    with image:  # frees decoder state; never closes a stream we were handed
        return _finish(image, label, max_pixels)


@contextlib.contextmanager
def pillow_limit_off() -> Iterator[None]:
    """Pillow's own pixel limit off, for reading an image header whose size the caller checks.

    Pillow warns on stderr above its limit (89 MP) and refuses above twice that, with its own
    error; vislang has one limit of its own (``max_pixels``), checked right after the header,
    so every image over it is an ImageTooLargeError and nothing else speaks. Hold this only
    around ``Image.open`` (which reads the header alone): the limit is a process-wide setting,
    so it is switched under a lock and restored to whatever it was.
    """
    with _PILLOW_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open(stream: BinaryIO, label: object) -> Image.Image:
    try:
        with pillow_limit_off():  # our limit follows: _check_pixels
            return Image.open(stream)
    except UnidentifiedImageError:
        raise ImageLoadError(label, "not an image or unsupported format") from None
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(label, f"truncated or corrupt image data: {exc}") from None


def _finish(image: Image.Image, label: object, max_pixels: int) -> Image.Image:
    _check_pixels(image, label, max_pixels)
    try:
        image.load()  # decode now: lazy decoding would fail later, far from the path
        # Always returns a new image, so the caller's (or our soon-closed) image is untouched.
        image = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(label, f"truncated or corrupt image data: {exc}") from None
    try:
        return _to_rgb(image)
    except ValueError as exc:
        raise ImageLoadError(label, f"unsupported pixel mode {image.mode}: {exc}") from None


def _check_pixels(image: Image.Image, label: object, max_pixels: int) -> None:
    width, height = image.size
    pixels = width * height
    if pixels > max_pixels:
        reason = f"image is {width}x{height} = {pixels:,} pixels, over the limit of {max_pixels:,}"
        raise ImageTooLargeError(label, reason)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I") or image.mode == "F":
        return _high_depth_to_rgb(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _flatten_on_white(image)
    if image.mode == "RGB":
        return image
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, HSV; LAB goes through LittleCMS


def _flatten_on_white(image: Image.Image) -> Image.Image:
    # Transparent areas are usually "no content"; white matches how viewers show them, where
    # dropping alpha would expose whatever colour the encoder left behind (often black).
    background = Image.new("RGBA", image.size, _WHITE)
    background.alpha_composite(image.convert("RGBA"))
    return background.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow's convert() clips these modes at 255, turning most 16-bit photos white.
    if image.mode == "F":
        raw = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        full_scale = 1.0  # floats in [0, 1] are normalised intensities
    else:
        raw = np.asarray(image.convert("I"), dtype=np.float32)
        full_scale = 65535.0  # I;16* are 16-bit; "I" is usually 16-bit data in a wider container
    # initial=0 anchors the range at zero, so a stretched image keeps zero as black.
    low, high = float(raw.min(initial=0.0)), float(raw.max(initial=0.0))
    values = raw
    if low < 0 or high > full_scale:  # not in the expected range: stretch what is there
        values, full_scale = raw - low, max(high - low, 1e-12)
    gray = np.rint(values * (255.0 / full_scale)).clip(0, 255).astype(np.uint8)
    key = image.info.get("transparency")
    if isinstance(key, (int, float)):  # a PNG tRNS key value, in the original units
        gray[raw == key] = 255  # fully transparent over white is white
    return Image.fromarray(gray).convert("RGB")  # 2-D uint8 -> mode L
