"""What ``vislang embed`` reads: image folders, lists of paths, and WebDataset ``.tar`` shards.

Every source becomes a list of ``Item`` rows: small, picklable records that say where an
image's bytes are (a file, or a byte range inside a tar) without reading them, so a Ray task on
another core can read them itself.
"""

from __future__ import annotations

import csv
import hashlib
import os
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

from vislang.errors import InputError
from vislang.images import is_image_path

LIST_SUFFIXES = (".txt", ".csv", ".parquet")
CAPTION_SUFFIXES = (".txt", ".caption", ".cap")
HASH_BYTES = 16  # BLAKE2b-128, the content hash the search index keys vectors by


@dataclass(frozen=True)
class Item:
    id: str
    path: str  # the file, or "<tar path>#<key>" for a tar member
    file: str  # where the bytes are
    offset: int = -1  # a tar member's bytes start here; -1: the whole file
    size: int = -1
    caption: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def stable_id(path: str) -> str:
    """An id for an image given none: 16 hex digits of the BLAKE2b hash of its path (a file's
    absolute path, or ``<tar path>#<key>``), the same on every run and every machine that
    sees the same paths."""
    return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def content_hash(data: bytes) -> str:
    """The hash ``vislang index`` keys contents by (BLAKE2b, 128 bits, hex)."""
    return hashlib.blake2b(data, digest_size=HASH_BYTES).hexdigest()


def read_bytes(item: Item | dict) -> bytes:
    """The bytes of an item's image (a file, or its byte range in a tar). OSError if gone."""
    get = item.get if isinstance(item, dict) else lambda k: getattr(item, k)
    with open(get("file"), "rb") as file:
        if get("offset") < 0:
            return file.read()
        file.seek(get("offset"))
        return file.read(get("size"))


def collect(sources: list[str | os.PathLike]) -> list[Item]:
    """Every image the sources name, in order, each id once (the first one wins)."""
    items: list[Item] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            items += _folder(path)
        elif not path.exists():
            raise InputError(f"no such file or folder: {source}")
        elif path.suffix.lower() == ".tar":
            items += _tar(path)
        elif path.suffix.lower() in LIST_SUFFIXES:
            items += _listing(path)
        elif is_image_path(path):
            items.append(_file(path.resolve()))
        else:
            raise InputError(f"{source}: not a folder, an image, a list of images "
                             f"({', '.join(LIST_SUFFIXES)}) or a .tar shard")
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.id not in seen:
            seen.add(item.id)
            unique.append(item)
    return unique


def _file(path: Path, id: str | None = None, caption: str | None = None) -> Item:
    text = os.fspath(path)
    return Item(id or stable_id(text), text, text, caption=caption or None)


def _folder(root: Path) -> list[Item]:
    """Image files at or below ``root`` (hidden ones skipped), sorted by path."""
    found = []
    for folder, dirs, files in os.walk(root.resolve(), followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder, name) for name in sorted(files)
                  if not name.startswith(".") and is_image_path(name)]
    return [_file(path) for path in found]


def _listing(path: Path) -> list[Item]:
    """A .txt (one path a line), .csv or .parquet (a ``path`` column, optional ``id`` and
    ``caption``) list; relative paths are relative to the list's folder."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        rows = [{"path": line.strip()} for line in path.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    elif suffix == ".csv":
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    if rows and "path" not in rows[0]:
        raise InputError(f"{path}: a list needs a 'path' column (optional: 'id', 'caption'); "
                         f"it has {', '.join(map(str, rows[0]))}")
    items = []
    for row in rows:
        image = Path(str(row["path"])).expanduser()
        image = image if image.is_absolute() else path.parent / image
        id = row.get("id")
        items.append(_file(Path(os.path.abspath(image)), str(id) if id not in (None, "") else None,
                           row.get("caption")))
    return items


def _tar(path: Path) -> list[Item]:
    """A WebDataset shard: members grouped by key (the name up to its first dot after the last
    slash); an image member makes an item, a ``.txt`` member of the same key its caption."""
    shard = os.fspath(path.resolve())
    images: dict[str, tarfile.TarInfo] = {}
    captions: dict[str, str] = {}
    try:
        with tarfile.open(shard) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, name = member.name.rpartition("/")
                if name.startswith("."):
                    continue
                stem, dot, ext = name.partition(".")
                key = f"{folder}/{stem}" if folder else stem
                if is_image_path(name) and key not in images:
                    images[key] = member
                elif dot and "." + ext.lower() in CAPTION_SUFFIXES:
                    captions[key] = tar.extractfile(member).read().decode("utf-8", "replace").strip()
    except (tarfile.TarError, OSError) as error:
        raise InputError(f"{path}: not a readable tar shard ({error})") from None
    return [Item(stable_id(f"{shard}#{key}"), f"{shard}#{key}", shard, member.offset_data,
                 member.size, captions.get(key)) for key, member in images.items()]
