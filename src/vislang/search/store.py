"""The search index's source of truth: one SQLite database (WAL) of files, vectors and models.

Files and vectors are joined by the file's content hash, not its path: a moved or copied file
finds its vector already there, and a vector exists once however many copies share it. Vectors
belong to one model each (``model_key``: name + revision) and are never compared across models.

Every write is a short transaction, so a killed process loses at most the batch in flight. Each
model's ``version`` goes up in the same transaction as any change to its vectors, which is what
tells the derived FAISS cache that it is stale.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA_VERSION = "1"


def _word_search(table: str) -> str:
    """SQL for ``{table}_fts``: the words of ``table.text`` for keyword search (porter:
    "dogs" finds "dog"), kept in step with the table by triggers."""
    fts = f"{table}_fts"
    remove = f"INSERT INTO {fts} ({fts}, rowid, text) VALUES ('delete', old.rowid, old.text);"
    add = f"INSERT INTO {fts} (rowid, text) VALUES (new.rowid, new.text);"
    return f"""
CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(
    text, content='{table}', content_rowid='rowid', tokenize='porter unicode61');
CREATE TRIGGER IF NOT EXISTS {table}_insert AFTER INSERT ON {table} BEGIN {add} END;
CREATE TRIGGER IF NOT EXISTS {table}_delete AFTER DELETE ON {table} BEGIN {remove} END;
CREATE TRIGGER IF NOT EXISTS {table}_update AFTER UPDATE ON {table} BEGIN {remove} {add} END;
"""


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT,              -- NULL when the file could not be read (see error)
    taken REAL NOT NULL,    -- EXIF capture time where present, else mtime (unix seconds)
    error TEXT
);
CREATE INDEX IF NOT EXISTS files_by_hash ON files (hash);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    model_key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,     -- what to pass to vislang.load to get this model back
    dim INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS vectors (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models (id),
    hash TEXT NOT NULL,
    vector BLOB NOT NULL,   -- float32, L2-normalised
    UNIQUE (model_id, hash)
);
CREATE TABLE IF NOT EXISTS failures (hash TEXT PRIMARY KEY, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS captions (
    hash TEXT PRIMARY KEY,  -- one caption per content, like vectors
    model TEXT NOT NULL,    -- model_key of the captioning model
    text TEXT NOT NULL
);
""" + _word_search("captions") + """
-- Text read in the images (vislang index --ocr, vislang ocr --index), one row per content.
-- Added after schema 1 was released: CREATE IF NOT EXISTS adds it to an older index as it
-- opens, and an older vislang ignores it, so the schema version stays.
CREATE TABLE IF NOT EXISTS ocr (
    hash TEXT PRIMARY KEY,
    reader TEXT NOT NULL,   -- the reader's identity and version (TextReader.key)
    text TEXT NOT NULL,     -- the lines, one per line of the string; '' when none was found
    lines TEXT NOT NULL     -- JSON: [{"text", "confidence", "box": 4 corners}] in image pixels
);
""" + _word_search("ocr")


@dataclass(frozen=True)
class FileRow:
    path: str
    size: int
    mtime_ns: int
    hash: str | None
    taken: float
    error: str | None = None


@dataclass(frozen=True)
class ModelRow:
    id: int
    model_key: str
    name: str
    dim: int
    version: int


class Store:
    def __init__(self, path: Path):
        self.path = path
        # isolation_level=None: we open transactions ourselves, so each batch is one commit.
        # check_same_thread=False: a server shares one store; SQLite serialises the calls.
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # the phrase filter's case- and spacing-blind comparison (SQLite's lower() is ASCII only)
        self.db.create_function("vislang_fold", 1, fold, deterministic=True)
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints,
        self.db.executescript(SCHEMA)                  # never corrupt after a crash
        with self.transaction():
            found = self.get_meta("schema")
            if found is None:
                self.set_meta("schema", SCHEMA_VERSION)
            elif found != SCHEMA_VERSION:
                from vislang.errors import InputError

                raise InputError(f"{path} was written by another vislang (index schema {found}, "
                                 f"this one reads {SCHEMA_VERSION}); re-create it with "
                                 "vislang index into a new --index")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- meta and roots ----------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def roots(self) -> list[str]:
        return [r for (r,) in self.db.execute("SELECT path FROM roots ORDER BY path")]

    def add_roots(self, paths: Iterable[str]) -> None:
        with self.transaction():
            self.db.executemany("INSERT OR IGNORE INTO roots VALUES (?)", ((p,) for p in paths))

    def remove_root(self, path: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM roots WHERE path = ?", (path,))

    # -- files -------------------------------------------------------------------------------
    def files_under(self, folders: Sequence[str]) -> dict[str, FileRow]:
        """Every file row at or below any of ``folders`` (absolute paths)."""
        rows = {}
        for folder in folders:
            for row in self.db.execute("SELECT * FROM files WHERE path = ? OR path GLOB ?",
                                       (folder, _glob_escape(folder.rstrip("/")) + "/*")):
                rows[row[0]] = FileRow(*row)
        return rows

    def file(self, path: str) -> FileRow | None:
        row = self.db.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return FileRow(*row) if row else None

    def put_files(self, rows: Iterable[FileRow]) -> None:
        with self.transaction():
            self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                                ((r.path, r.size, r.mtime_ns, r.hash, r.taken, r.error)
                                 for r in rows))

    def delete_files(self, paths: Iterable[str]) -> None:
        """Forget these files; vectors no file refers to any more go with them."""
        with self.transaction():
            self.db.executemany("DELETE FROM files WHERE path = ?", ((p,) for p in paths))
            orphans = "SELECT DISTINCT model_id FROM vectors WHERE hash NOT IN " \
                      "(SELECT hash FROM files WHERE hash IS NOT NULL)"
            self.db.execute(f"UPDATE models SET version = version + 1 WHERE id IN ({orphans})")
            self.db.execute("DELETE FROM vectors WHERE hash NOT IN "
                            "(SELECT hash FROM files WHERE hash IS NOT NULL)")
            for table in ("failures", "captions", "ocr"):
                self.db.execute(f"DELETE FROM {table} WHERE hash NOT IN "
                                "(SELECT hash FROM files WHERE hash IS NOT NULL)")

    def paths_for_hashes(self, hashes: Iterable[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for chunk in _chunks(list(hashes)):
            marks = ",".join("?" * len(chunk))
            for path, h in self.db.execute(
                    f"SELECT path, hash FROM files WHERE hash IN ({marks}) ORDER BY path", chunk):
                out.setdefault(h, []).append(path)
        return out

    def unusable(self, folders: Sequence[str]) -> list[tuple[str, str]]:
        """(path, reason) for files below ``folders`` that cannot be read as images."""
        out = []
        for folder in folders:
            pattern = _glob_escape(folder.rstrip("/")) + "/*"
            out += self.db.execute(
                "SELECT f.path, coalesce(f.error, x.reason) FROM files f "
                "LEFT JOIN failures x ON x.hash = f.hash "
                "WHERE (f.path = ? OR f.path GLOB ?) AND (f.error IS NOT NULL "
                "OR x.reason IS NOT NULL) ORDER BY f.path", (folder, pattern)).fetchall()
        return out

    # -- models and vectors ------------------------------------------------------------------
    def model(self, model_key: str) -> ModelRow | None:
        row = self.db.execute("SELECT * FROM models WHERE model_key = ?", (model_key,)).fetchone()
        return ModelRow(*row) if row else None

    def models(self) -> list[ModelRow]:
        return [ModelRow(*r) for r in self.db.execute("SELECT * FROM models ORDER BY id")]

    def ensure_model(self, model_key: str, name: str, dim: int) -> ModelRow:
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO models (model_key, name, dim) VALUES (?, ?, ?)",
                            (model_key, name, dim))
        return self.model(model_key)

    def drop_model(self, model_id: int) -> int:
        """Forget a model and every vector of it; returns how many vectors went."""
        with self.transaction():
            gone = self.db.execute("DELETE FROM vectors WHERE model_id = ?",
                                   (model_id,)).rowcount
            self.db.execute("DELETE FROM models WHERE id = ?", (model_id,))
        return gone

    def hashes_to_embed(self, model_id: int) -> list[tuple[str, str]]:
        """(hash, a path with that content) for readable content with no vector yet."""
        return self.db.execute(
            "SELECT f.hash, min(f.path) FROM files f WHERE f.hash IS NOT NULL "
            "AND f.hash NOT IN (SELECT hash FROM vectors WHERE model_id = ?) "
            "AND f.hash NOT IN (SELECT hash FROM failures) GROUP BY f.hash ORDER BY min(f.path)",
            (model_id,)).fetchall()

    def put_vectors(self, model_id: int, hashes: Sequence[str], vectors: np.ndarray,
                    failures: Iterable[tuple[str, str]] = ()) -> None:
        """One batch of embeddings (and the contents that failed to decode), one commit."""
        rows = ((model_id, h, np.ascontiguousarray(v, np.float32).tobytes())
                for h, v in zip(hashes, vectors))
        with self.transaction():
            self.db.executemany("INSERT OR REPLACE INTO vectors (model_id, hash, vector) "
                                "VALUES (?, ?, ?)", rows)
            self.db.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?)", failures)
            self.db.execute("UPDATE models SET version = version + 1 WHERE id = ?", (model_id,))

    def vectors(self, model: ModelRow, ids: Sequence[int] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [N], vectors float32 [N, D]) of a model: all of them, or just ``ids``."""
        if ids is None:
            rows = self.db.execute("SELECT id, vector FROM vectors WHERE model_id = ? "
                                   "ORDER BY id", (model.id,)).fetchall()
        else:
            rows = []
            for chunk in _chunks(list(ids)):
                marks = ",".join("?" * len(chunk))
                # "+model_id": look the ids up by rowid; SQLite would otherwise walk the
                # (model_id, hash) index through every vector of the model (7 ms for 100
                # ids at 20k vectors, 80 ms at 200k)
                rows += self.db.execute(f"SELECT id, vector FROM vectors WHERE +model_id = ? "
                                        f"AND id IN ({marks})", (model.id, *chunk)).fetchall()
        return _unpack(rows, model.dim)

    def vector_ids(self, model: ModelRow) -> np.ndarray:
        """A model's vector ids, ascending (8 bytes each: cheap where the vectors are not)."""
        rows = self.db.execute("SELECT id FROM vectors WHERE model_id = ? ORDER BY id",
                               (model.id,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def iter_vectors(self, model: ModelRow, batch: int = 32_768
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """A model's (ids, vectors) in ascending id order, ``batch`` at a time: an index
        build holds one batch, never the whole set. Each batch starts after the last id seen
        (not at an OFFSET, which SQLite would count up to on every call)."""
        last = -1
        while True:
            rows = self.db.execute("SELECT id, vector FROM vectors WHERE model_id = ? AND id > ? "
                                   "ORDER BY id LIMIT ?", (model.id, last, batch)).fetchall()
            if not rows:
                return
            ids, vectors = _unpack(rows, model.dim)
            del rows  # the blobs: a batch should exist as few times over as it can
            last = int(ids[-1])
            yield ids, vectors

    def vector_for_hash(self, model: ModelRow, content_hash: str) -> np.ndarray | None:
        row = self.db.execute("SELECT vector FROM vectors WHERE model_id = ? AND hash = ?",
                              (model.id, content_hash)).fetchone()
        return np.frombuffer(row[0], np.float32) if row else None

    def files_of_vectors(self, model: ModelRow, ids: Sequence[int], where: str = "",
                         params: Sequence = ()) -> dict[int, list[FileRow]]:
        """vector id -> the files holding that content (one vector, maybe several copies)."""
        out: dict[int, list[FileRow]] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                    f"SELECT v.id, f.* FROM vectors v JOIN files f ON f.hash = v.hash "
                    f"WHERE +v.model_id = ? AND v.id IN ({marks}) {where} ORDER BY f.path",
                    (model.id, *chunk, *params)):
                out.setdefault(row[0], []).append(FileRow(*row[1:]))
        return out

    def vector_ids_with_copies(self, model: ModelRow) -> np.ndarray:
        """Ids of the vectors whose content more than one file holds (byte-identical copies)."""
        rows = self.db.execute("SELECT v.id FROM vectors v JOIN files f ON f.hash = v.hash "
                               "WHERE v.model_id = ? GROUP BY v.id HAVING count(*) > 1",
                               (model.id,)).fetchall()
        return np.array([r[0] for r in rows], np.int64)

    def vector_ids_where(self, model: ModelRow, where: str, params: Sequence) -> np.ndarray:
        """Ids of the vectors that have at least one file matching a filter on ``files f``."""
        rows = self.db.execute(f"SELECT DISTINCT v.id FROM vectors v JOIN files f "
                               f"ON f.hash = v.hash WHERE v.model_id = ? {where}",
                               (model.id, *params)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    # -- captions ----------------------------------------------------------------------------
    def hashes_to_caption(self, model_key: str) -> list[tuple[str, str]]:
        """(hash, a path with that content) for readable content with no caption by this
        captioning model (a caption by another model is replaced)."""
        return self.db.execute(
            "SELECT f.hash, min(f.path) FROM files f WHERE f.hash IS NOT NULL "
            "AND f.hash NOT IN (SELECT hash FROM captions WHERE model = ?) "
            "AND f.hash NOT IN (SELECT hash FROM failures) GROUP BY f.hash ORDER BY min(f.path)",
            (model_key,)).fetchall()

    def put_captions(self, model_key: str, captions: Sequence[tuple[str, str]],
                     failures: Iterable[tuple[str, str]] = ()) -> None:
        """One batch of (hash, caption) (and contents that failed to decode), one commit."""
        with self.transaction():
            self.db.executemany(
                "INSERT INTO captions (hash, model, text) VALUES (?, ?, ?) ON CONFLICT (hash) "
                "DO UPDATE SET model = excluded.model, text = excluded.text",
                ((h, model_key, text) for h, text in captions))
            self.db.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?)", failures)

    def captions_of(self, hashes: Iterable[str]) -> dict[str, str]:
        out = {}
        for chunk in _chunks(list(hashes)):
            marks = ",".join("?" * len(chunk))
            out.update(self.db.execute(
                f"SELECT hash, text FROM captions WHERE hash IN ({marks})", chunk))
        return out

    def caption_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM captions").fetchone()[0]

    def has_captions(self) -> bool:
        """Whether any caption is stored: asked on every search, so it must not count them."""
        return bool(self.db.execute("SELECT EXISTS (SELECT 1 FROM captions)").fetchone()[0])

    def vector_ids_with_caption_word(self, model: ModelRow, word: str) -> np.ndarray:
        """Ids of a model's vectors whose content's caption contains ``word`` (stemmed)."""
        return self._vector_ids_with_word(model, "captions", word)

    # -- text read in the images (OCR) -------------------------------------------------------
    def hashes_to_ocr(self, reader: str) -> list[tuple[str, str]]:
        """(hash, a path with that content) for readable content whose text this reader has
        not read yet (text read by another reader, or an older version, is read again)."""
        return self.db.execute(
            "SELECT f.hash, min(f.path) FROM files f WHERE f.hash IS NOT NULL "
            "AND f.hash NOT IN (SELECT hash FROM ocr WHERE reader = ?) "
            "AND f.hash NOT IN (SELECT hash FROM failures) GROUP BY f.hash ORDER BY min(f.path)",
            (reader,)).fetchall()

    def put_ocr(self, reader: str, texts: Sequence[tuple[str, str, list[dict]]],
                failures: Iterable[tuple[str, str]] = ()) -> None:
        """One batch of (hash, text, lines as dicts) (and contents that failed to decode),
        one commit."""
        with self.transaction():
            self.db.executemany(
                "INSERT INTO ocr (hash, reader, text, lines) VALUES (?, ?, ?, ?) ON CONFLICT "
                "(hash) DO UPDATE SET reader = excluded.reader, text = excluded.text, "
                "lines = excluded.lines",
                ((h, reader, text, json.dumps(lines)) for h, text, lines in texts))
            self.db.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?)", failures)

    def ocr_lines_of(self, hashes: Iterable[str]) -> dict[str, list[dict]]:
        """hash -> its lines as stored ({"text", "confidence", "box"}), for contents read."""
        out = {}
        for chunk in _chunks(list(hashes)):
            marks = ",".join("?" * len(chunk))
            out.update((h, json.loads(lines)) for h, lines in self.db.execute(
                f"SELECT hash, lines FROM ocr WHERE hash IN ({marks})", chunk))
        return out

    def ocr_count(self) -> int:
        """Texts of contents some file still has: an edited image's old text is kept (its
        content may come back) but is no longer one of the collection's."""
        return self.db.execute("SELECT count(*) FROM ocr WHERE hash IN "
                               "(SELECT hash FROM files)").fetchone()[0]

    def has_ocr(self) -> bool:
        """Whether any image's text is stored (an image with no text counts): asked on every
        search, so it must not count them."""
        return bool(self.db.execute("SELECT EXISTS (SELECT 1 FROM ocr)").fetchone()[0])

    def vector_ids_with_ocr_word(self, model: ModelRow, word: str) -> np.ndarray:
        """Ids of a model's vectors whose content's read text contains ``word`` (stemmed)."""
        return self._vector_ids_with_word(model, "ocr", word)

    def _vector_ids_with_word(self, model: ModelRow, table: str, word: str) -> np.ndarray:
        rows = self.db.execute(
            f"SELECT v.id FROM {table}_fts JOIN {table} t ON t.rowid = {table}_fts.rowid "
            f"JOIN vectors v ON v.hash = t.hash AND v.model_id = ? "
            f"WHERE {table}_fts MATCH ?", (model.id, fts_string(word))).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vector_ids_with_phrase(self, model: ModelRow, phrase: str) -> np.ndarray:
        """Ids of a model's vectors whose content's read text contains ``phrase``, ignoring
        case and how the white space runs (a phrase may span two lines read)."""
        rows = self.db.execute(
            "SELECT v.id FROM ocr o JOIN vectors v ON v.hash = o.hash AND v.model_id = ? "
            "WHERE instr(vislang_fold(o.text), ?) > 0", (model.id, fold(phrase))).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def ocr_word_marks(self, hashes: Iterable[str], words: Sequence[str]) -> dict[str, str]:
        """hash -> its read text with each of ``words`` found (as the word search finds it,
        stemmed) wrapped in \x02 ... \x03, for contents whose text holds any of them."""
        if not words:
            return {}
        query = " OR ".join(fts_string(w) for w in words)
        out = {}
        for chunk in _chunks(list(hashes)):
            marks = ",".join("?" * len(chunk))
            out.update(self.db.execute(
                "SELECT o.hash, highlight(ocr_fts, 0, char(2), char(3)) FROM ocr_fts "
                f"JOIN ocr o ON o.rowid = ocr_fts.rowid WHERE ocr_fts MATCH ? "
                f"AND o.hash IN ({marks})", (query, *chunk)))
        return out

    # -- numbers -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {"files": one("SELECT count(*) FROM files"),
                "unreadable": one("SELECT count(*) FROM files f LEFT JOIN failures x ON "
                                  "x.hash = f.hash WHERE f.error IS NOT NULL OR x.hash IS NOT NULL"),
                "distinct_contents": one("SELECT count(DISTINCT hash) FROM files"),
                "captions": self.caption_count(), "ocr": self.ocr_count()}

    def vector_count(self, model_id: int) -> int:
        return self.db.execute("SELECT count(*) FROM vectors WHERE model_id = ?",
                               (model_id,)).fetchone()[0]


def fts_string(word: str) -> str:
    """A word as a quoted FTS5 string: matched as text, never read as query syntax."""
    return '"' + word.replace('"', '""') + '"'


def fold(text: str | None) -> str:
    """Text as the phrase filter compares it: case-folded, white-space runs as one space."""
    return " ".join((text or "").casefold().split())


def _unpack(rows: list, dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    vectors = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim)
    return ids, vectors


def _chunks(items: list, size: int = 900) -> Iterator[list]:
    # SQLite caps the number of ? parameters in one statement.
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _glob_escape(text: str) -> str:
    """Make a literal path safe inside a GLOB pattern ([, *, ? are special there)."""
    return "".join(f"[{c}]" if c in "[*?" else c for c in text)
