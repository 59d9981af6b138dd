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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from vislang.images import is_image_path, not_regular, open_regular, pillow_limit_off

HASH_CHUNK = 1 << 20
EXIF_IFD = 0x8769
# (IFD, date tag, its sub-second tag, its UTC-offset tag): taken, digitised, changed; the
# sub-second and offset tags always live in the EXIF IFD.
EXIF_DATE_TAGS = ((EXIF_IFD, 0x9003, 0x9291, 0x9011), (EXIF_IFD, 0x9004, 0x9292, 0x9012),
                  (None, 0x0132, 0x9290, 0x9010))
_EXIF_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})")  # EXIF's "2012:09:17 15:53:45"


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
                    if reason := not_regular(stat.st_mode):  # opening a FIFO would block
                        result.problems.append((entry.path, reason))
                    else:
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
        with open_regular(stat.path) as file:
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
        with pillow_limit_off():  # a huge photo's size is index.py's to judge, not a warning
            image = Image.open(io.BytesIO(head))
        with image:
            exif = image.getexif()
            details = exif.get_ifd(EXIF_IFD)
            for ifd, tag, subsec_tag, offset_tag in EXIF_DATE_TAGS:
                value = (details if ifd else exif).get(tag)
                taken = parse_exif_date(value, details.get(subsec_tag), details.get(offset_tag))
                if taken is not None:
                    return taken
    except Exception:  # noqa: BLE001 -- any broken header just means "no EXIF date"
        return None
    return None


def parse_exif_date(value: object, subsec: object = None, offset: object = None) -> float | None:
    """A timestamp from an EXIF date ("2012:09:17 15:53:45") or an ISO one as some tools write
    it ("2012-09-17T15:53:45-04:00"), with the sub-second and offset tags where the date has
    neither; None for a blank or impossible date ("0000:00:00 00:00:00"). Without any offset
    the date is local time, as cameras keep it."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(_EXIF_DATE.sub(r"\1-\2-\3", value.strip(" \0")))
    except ValueError:
        return None
    if isinstance(subsec, str) and subsec.strip().isdecimal() and not moment.microsecond:
        moment = moment.replace(microsecond=int(subsec.strip()[:6].ljust(6, "0")))
    if isinstance(offset, str) and moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=datetime.strptime(offset.strip(), "%z").tzinfo)
        except ValueError:
            pass  # an unreadable offset: keep the date as local time
    return moment.timestamp()
