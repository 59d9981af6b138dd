"""Search feedback, kept in the index's own database: what was searched, shown and chosen.

    log = FeedbackLog(index.store)
    ids = log.content_ids([r.path for r in results])
    search = log.record_search("a dog on a beach", list(ids.values()))
    log.record_click(search, content_id, "opened")
    log.export()  # -> records for vislang train --feedback

Results are remembered by content hash, the index's identity of an image (as vectors are): a
file moved or renamed after the search still counts, and export turns each hash back into the
file's path *now*. A hash that no file has any more is skipped and counted, never guessed at.

The tables live beside the store's, created here with CREATE TABLE IF NOT EXISTS, so an index
written by an older vislang gains them when first opened and an older vislang ignores them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vislang.errors import InputError
from vislang.search.store import Store

KINDS = ("opened", "this one")  # the two ways a result is chosen on the page

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback_searches (
    id INTEGER PRIMARY KEY,
    query TEXT NOT NULL,
    shown TEXT NOT NULL,    -- JSON list of content hashes, in the order shown
    time REAL NOT NULL      -- unix seconds
);
CREATE TABLE IF NOT EXISTS feedback_clicks (
    search_id INTEGER NOT NULL REFERENCES feedback_searches (id) ON DELETE CASCADE,
    hash TEXT NOT NULL,
    kind TEXT NOT NULL,     -- one of KINDS
    time REAL NOT NULL,
    PRIMARY KEY (search_id, hash, kind)   -- opening a result twice is one choice
);
-- Clicks refused (unknown search, a result not shown, content gone): counted, not kept.
CREATE TABLE IF NOT EXISTS feedback_ignored (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""

IGNORED_REASONS = ("unknown search", "not shown in that search", "no longer in the index")


@dataclass
class Export:
    """Training records ``{search, query, clicked, shown, marked}`` (paths as they are now) and
    what could not be exported."""

    records: list[dict] = field(default_factory=list)
    missing_ids: int = 0  # distinct recorded contents that no file has any more
    searches_without_clicks: int = 0  # nothing chosen (or every choice gone): no signal

    def summary(self) -> dict:
        return {"records": len(self.records), "missing_ids": self.missing_ids,
                "searches_without_clicks": self.searches_without_clicks}


class FeedbackLog:
    """The feedback tables of one index, on the index store's connection."""

    def __init__(self, store: Store):
        self.store, self.db = store, store.db
        self.db.executescript(SCHEMA)

    # -- recording ---------------------------------------------------------------------------
    def record_search(self, query: str, shown: Sequence[str], now: float | None = None) -> int:
        """Remember a search and the content ids shown (``content_ids``), in order; returns
        the search's id."""
        with self.store.transaction():
            cursor = self.db.execute(
                "INSERT INTO feedback_searches (query, shown, time) VALUES (?, ?, ?)",
                (query, json.dumps(list(shown)), now if now is not None else time.time()))
        return int(cursor.lastrowid)

    def content_ids(self, paths: Iterable[str]) -> dict[str, str]:
        """path -> content hash, for the indexed, readable files among ``paths``."""
        out = {}
        for path in paths:
            row = self.store.file(path)
            if row is not None and row.hash is not None:
                out[path] = row.hash
        return out

    def record_click(self, search_id: int, content_id: str, kind: str,
                     now: float | None = None) -> str | None:
        """Record that a result of a search was opened or marked; returns None when recorded,
        else why it was ignored (the ignored clicks are counted by reason)."""
        if kind not in KINDS:
            raise InputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        with self.store.transaction():
            reason = self._refusal(search_id, content_id)
            if reason is None:
                self.db.execute("INSERT OR IGNORE INTO feedback_clicks VALUES (?, ?, ?, ?)",
                                (search_id, content_id, kind,
                                 now if now is not None else time.time()))
            else:
                self.db.execute("INSERT INTO feedback_ignored VALUES (?, 1) ON CONFLICT "
                                "(reason) DO UPDATE SET count = count + 1", (reason,))
        return reason

    def _refusal(self, search_id: int, content_id: str) -> str | None:
        row = self.db.execute("SELECT shown FROM feedback_searches WHERE id = ?",
                              (search_id,)).fetchone()
        if row is None:
            return IGNORED_REASONS[0]
        if content_id not in json.loads(row[0]):
            return IGNORED_REASONS[1]
        if not self.store.paths_for_hashes([content_id]):
            return IGNORED_REASONS[2]
        return None

    # -- reading -----------------------------------------------------------------------------
    def stats(self) -> dict:
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        ignored = dict(self.db.execute("SELECT reason, count FROM feedback_ignored"))
        return {"searches": one("SELECT count(*) FROM feedback_searches"),
                "searches_with_clicks": one("SELECT count(DISTINCT search_id) "
                                            "FROM feedback_clicks"),
                "clicks": one("SELECT count(*) FROM feedback_clicks"),
                "ignored": {reason: ignored.get(reason, 0) for reason in IGNORED_REASONS}}

    def export(self) -> Export:
        """Every search with a choice whose content still exists, as a training record."""
        out = Export()
        clicks: dict[int, list[tuple[str, str]]] = {}
        for search_id, content, kind in self.db.execute(
                "SELECT search_id, hash, kind FROM feedback_clicks ORDER BY search_id, time"):
            clicks.setdefault(search_id, []).append((content, kind))
        searches = self.db.execute("SELECT id, query, shown, time FROM feedback_searches "
                                   "ORDER BY id").fetchall()
        shown_of = {s[0]: json.loads(s[2]) for s in searches}
        recorded = {h for ids in shown_of.values() for h in ids}
        paths = self._first_paths(recorded)
        out.missing_ids = len(recorded - paths.keys())
        for search_id, query, _, when in searches:
            record = _record(search_id, query, when, shown_of[search_id],
                             clicks.get(search_id, []), paths)
            if record is None:
                out.searches_without_clicks += 1
            else:
                out.records.append(record)
        return out

    def _first_paths(self, hashes: set[str]) -> dict[str, str]:
        """hash -> one current path (the first by name) for contents that still have a file."""
        return {h: found[0] for h, found in self.store.paths_for_hashes(hashes).items()}

    def collection(self) -> list[tuple[str, str]]:
        """(content hash, a current path) of every readable content: what a search ranks."""
        return self.db.execute(
            "SELECT hash, min(path) FROM files WHERE hash IS NOT NULL AND hash NOT IN "
            "(SELECT hash FROM failures) GROUP BY hash ORDER BY min(path)").fetchall()

    # -- erasing -----------------------------------------------------------------------------
    def clear(self) -> dict:
        """Erase every search, click and count; returns how many searches and clicks went."""
        before = self.stats()
        # secure_delete overwrites the freed pages with zeros, and the checkpoint empties the
        # write-ahead log: "erased" must mean gone from the files, not only from the tables.
        self.db.execute("PRAGMA secure_delete = ON")
        try:
            with self.store.transaction():
                for table in ("feedback_clicks", "feedback_searches", "feedback_ignored"):
                    self.db.execute(f"DELETE FROM {table}")
        finally:
            self.db.execute("PRAGMA secure_delete = OFF")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"searches": before["searches"], "clicks": before["clicks"]}


def _record(search_id: int, query: str, when: float, shown: list[str],
            chosen: list[tuple[str, str]], paths: dict[str, str]) -> dict | None:
    clicked = list(dict.fromkeys(h for h, _ in chosen if h in paths))
    if not clicked:
        return None
    marked = list(dict.fromkeys(h for h, kind in chosen if kind == "this one" and h in paths))
    return {"search": search_id, "query": query, "time": when,
            "clicked": [paths[h] for h in clicked],
            "marked": [paths[h] for h in marked],
            "shown": [paths[h] for h in shown if h in paths]}


def stored_vectors(store: Store, model_key: str) -> dict[str, np.ndarray]:
    """content hash -> the index's vector for it by ``model_key`` (empty when the index holds
    none for that model): evaluating a model the collection was indexed with embeds nothing."""
    row = store.model(model_key)
    if row is None:
        return {}
    return {h: np.frombuffer(blob, np.float32) for h, blob in store.db.execute(
        "SELECT hash, vector FROM vectors WHERE model_id = ?", (row.id,))}
