"""Find the image files under a folder, and read what the index keeps about each one.

The walk follows symbolic links, because photo libraries are often assembled from them, but
visits each real directory once (by device and inode), so a link to a parent cannot loop.
Hidden files and folders (a leading ".") are skipped unless asked for: they are thumbnails,
caches and trash far more often than photos.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from vislang.images import is_image_path

HASH_CHUNK = 1 << 20
EXIF_IFD = 0x8769
EXIF_DATE_TAGS = ((EXIF_IFD, 0x9003), (EXIF_IFD, 0x9004), (None, 0x0132))  # taken, digitised, changed


@dataclass(frozen=True)
class FileStat:
    path: str
    size: int
    mtime_ns: int


@dataclass
class Walk:
    files: list[FileStat] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def walk(root: str, exclude: Sequence[str] = (), hidden: bool = False) -> Walk:
    """Image files at or below ``root`` (absolute paths), and what could not be looked at."""
    result = Walk()
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
        except OSError as error:
            result.problems.append((folder, _reason(error)))
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue  # reached again through a link: already walked
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:
            result.problems.append((folder, _reason(error)))
            continue
        subfolders = []
        for entry in entries:
            if (not hidden and entry.name.startswith(".")) or _excluded(entry.path, root, exclude):
                continue
            try:
                if entry.is_dir():  # follows links
                    subfolders.append(entry.path)
                elif is_image_path(entry.name):
                    stat = entry.stat()  # follows links: the target's size and time
                    result.files.append(FileStat(entry.path, stat.st_size, stat.st_mtime_ns))
            except OSError as error:  # a broken link, a file deleted as we looked
                if is_image_path(entry.name):
                    result.problems.append((entry.path, _reason(error)))
        stack.extend(reversed(subfolders))
    return result


def _excluded(path: str, root: str, patterns: Sequence[str]) -> bool:
    """A pattern matches the name, or the path relative to the root ("raw/*", "*.tmp.jpg")."""
    if not patterns:
        return False
    relative = os.path.relpath(path, root)
    name = os.path.basename(path)
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relative, p)
               for p in patterns)


def _reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "broken link or vanished file"
    if isinstance(error, PermissionError):
        return "permission denied"
    return error.strerror or str(error)


@dataclass(frozen=True)
class Content:
    hash: str | None
    taken: float  # EXIF capture time where the file has one, else its mtime
    error: str | None = None


def read_content(stat: FileStat) -> Content:
    """Hash a file's bytes and find when it was taken; never raises for a bad file.

    The hash (BLAKE2b, 128 bits) is what recognises a moved or copied file. Decoding errors
    are not looked for here: the embedding step meets them and records them by hash.
    """
    mtime = stat.mtime_ns / 1e9
    try:
        with open(stat.path, "rb") as file:
            digest = hashlib.file_digest(file, lambda: hashlib.blake2b(digest_size=16))
            file.seek(0)
            head = file.read(1 << 17)  # EXIF lives in the first 64 KiB of a JPEG
    except OSError as error:
        return Content(None, mtime, _reason(error))
    return Content(digest.hexdigest(), exif_time(head) or mtime)


def exif_time(head: bytes) -> float | None:
    """Capture time from EXIF (DateTimeOriginal, then digitised, then changed), or None."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(head)) as image:
            exif = image.getexif()
            for ifd, tag in EXIF_DATE_TAGS:
                value = (exif.get_ifd(ifd) if ifd else exif).get(tag)
                if isinstance(value, str) and value.strip():
                    return datetime.strptime(value.strip()[:19], "%Y:%m:%d %H:%M:%S").timestamp()
    except Exception:  # noqa: BLE001 -- any broken header just means "no EXIF date"
        return None
    return None
