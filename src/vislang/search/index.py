"""``Index``: a photo collection searchable by meaning, kept current by re-running ``update``.

    index = Index.open("~/.local/share/vislang/index", model="ViT-B/32")
    index.update(["~/Pictures"])            # walk, hash, embed what is new or changed
    index.search(text="a dog on a beach", k=10)

An update has two steps, each committed in batches so a killed run resumes where it stopped:
1. walk the roots and bring the ``files`` table in line (size + mtime decide what to re-read;
   the content hash recognises moves and copies);
2. embed every content that has no vector for the model yet.
The FAISS index is rebuilt from the store whenever the store has changed since it was built.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vislang.errors import IndexBusyError, InputError
from vislang.images import is_image_path
from vislang.parallel import batched, ordered_map
from vislang.progress import progress_bar
from vislang.search import ann, keywords
from vislang.search import plan as plans
from vislang.search.query import Filters, Term, combine
from vislang.search.scan import FileStat, exif_time, read_content, walk
from vislang.search.store import FileRow, ModelRow, Store, fold
from vislang.settings import settings

if TYPE_CHECKING:  # vislang.runtime imports torch, which a search process may never need
    from vislang.runtime import EngineSpec

DB_NAME = "index.db"
LOCK_NAME = "write.lock"
HOLDER_NAME = "write.pid"  # the lock holder's pid, for the message a second writer gets
BATCH = 32  # images per commit (more on CUDA): a killed run loses at most this many embeddings
ANN_TYPE, ANN_MAX_MEMORY = "ann_type", "ann_max_memory"  # meta keys: the index kind chosen


def default_index_path() -> Path:
    return settings().index


@dataclass(frozen=True)
class Result:
    path: str
    score: float
    taken: float
    caption: str | None = None  # stored by vislang caption --index
    # The lines of text read in the image (vislang index --ocr) that the query's words or the
    # text filter matched: {"text", "box": 4 corners in image pixels, "words": [{"text",
    # "box"}]}, the words' boxes cut from the line's by character position. None: no match.
    ocr: list[dict] | None = None


@dataclass
class Summary:
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0  # contents the model actually ran on (moves and copies need none)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0  # the whole update
    # Apart, because loading a model can take far longer than embedding a few new images.
    load_seconds: float = 0.0  # finding and loading the model (0 when it was not needed)
    embed_seconds: float = 0.0  # running the model on the new contents

    def as_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "moved": self.moved,
                "removed": self.removed, "unchanged": self.unchanged, "embedded": self.embedded,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "seconds": round(self.seconds, 3), "load_seconds": round(self.load_seconds, 3),
                "embed_seconds": round(self.embed_seconds, 3)}


class Index:
    """Files, their vectors for one or more models, and search over them."""

    def __init__(self, folder: Path, model=None, backend: str = "auto", precision: str = "auto",
                 exact_limit: int = ann.EXACT_LIMIT, engine: EngineSpec | None = None):
        self.folder = folder
        self.store = Store(folder / DB_NAME)
        # ``engine`` wins over backend / precision; made into an EngineSpec only when a model
        # loads (building one imports vislang.runtime, and with it torch).
        self.engine = engine
        self.backend, self.precision, self.exact_limit = backend, precision, exact_limit
        model = os.fspath(model) if isinstance(model, os.PathLike) else model  # a directory
        if isinstance(model, str):
            model = _lasting_name(model)
        self._clip = model if not isinstance(model, (str, type(None))) else None
        self.model_name: str | None = (self._clip.checkpoint.name if self._clip else model) \
            or self.store.get_meta("model")
        # model id -> (version, settings, faiss index, its plan)
        self._ann: dict[int, tuple[int, str, object, plans.Plan]] = {}

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, model=None, backend: str = "auto",
             precision: str = "auto", exact_limit: int = ann.EXACT_LIMIT,
             create: bool = True, engine: EngineSpec | None = None) -> "Index":
        """Open the index in folder ``path`` (default: the per-user one), creating it if needed
        and ``create`` (readers of an index that must exist pass ``create=False``).

        ``model``: a name for ``vislang.load`` or a loaded ``ClipModel``; default: the model
        the index was last updated with. ``engine``: what to run a model loaded by name on
        (default: ``backend`` / ``precision``, both ``auto``); its mode is chosen per use.
        """
        folder = Path(path).expanduser() if path is not None else default_index_path()
        if folder.exists() and not folder.is_dir():
            raise InputError(f"--index {folder} is a file; give the folder that holds (or will "
                             f"hold) the index")
        if not create and not (folder / DB_NAME).is_file():
            raise InputError(f"no index at {folder}; build one first with vislang index DIR "
                             f"--index {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, model, backend, precision, exact_limit, engine)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the model ---------------------------------------------------------------------------
    def model(self, mode: str = "throughput"):
        """The ClipModel, loaded on first use (a no-op update never loads it)."""
        if self._clip is None:
            if self.model_name is None:
                raise InputError(f"the index at {self.folder} has no model yet; pass one "
                                 "(--model NAME)")
            from vislang.models.clip import load

            spec = dataclasses.replace(self._engine_spec(), mode=mode)
            self._clip = load(self.model_name, engine=spec)
        return self._clip

    def _engine_spec(self) -> EngineSpec:
        """What a model loaded by name runs on: ``engine`` if given, else backend / precision."""
        from vislang.runtime import EngineSpec

        return self.engine or EngineSpec(self.backend, self.precision)

    def _model_row(self) -> ModelRow:
        """The vector set of this index's model, found without loading the model's weights."""
        if self._clip is not None:
            key = self._clip.model_key
        else:
            from vislang.models.hub import locate

            if self.model_name is None:
                raise InputError(f"the index at {self.folder} is empty; run vislang index DIR")
            key = locate(self.model_name).model_key
        row = self.store.model(key)
        if row is None:
            raise InputError(f"the index at {self.folder} has no vectors for {key}; run "
                             f"vislang index --model {self.model_name} to embed the collection "
                             "with it")
        return row

    # -- writing -----------------------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the index's write lock: one writer at a time, and a second one fails at once
        with ``IndexBusyError`` naming the holder. The operating system drops the lock when
        its holder exits or is killed, so a crashed run never leaves the index locked."""
        from filelock import FileLock, Timeout  # only writers need it

        lock = FileLock(self.folder / LOCK_NAME, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise IndexBusyError(f"the index at {self.folder} is being updated by "
                                 f"{self._lock_holder()}; wait for it to finish and run "
                                 "again") from None
        holder = self.folder / HOLDER_NAME
        try:
            holder.write_text(f"pid {os.getpid()}")
            yield
        finally:
            holder.unlink(missing_ok=True)
            lock.release()

    def _lock_holder(self) -> str:
        try:
            return (self.folder / HOLDER_NAME).read_text().strip() or "another process"
        except OSError:  # not written yet, or already gone
            return "another process"

    def update(self, roots: Iterable[str | os.PathLike] | None = None, exclude: Sequence[str] = (),
               hidden: bool = False, progress: bool = False) -> Summary:
        """Add ``roots`` (folders) to the index and bring them up to date; with no roots, all of
        the index's roots. Returns what changed."""
        started = time.perf_counter()
        folders = [_absolute(r) for r in roots] if roots else self.store.roots()
        for folder in folders:
            if not os.path.isdir(folder):
                raise InputError(f"no such folder: {folder}")
        if not folders:
            raise InputError(f"the index at {self.folder} has no folders yet; run vislang "
                             "index DIR")
        summary = Summary()
        with self.writing():
            self.store.add_roots(folders)
            found = _walk_all(folders, exclude, hidden, summary)
            self._sync_files(found, self.store.files_under(folders), summary, progress)
            self._embed_missing(summary, progress)
            summary.skipped += self.store.unusable(folders)
        summary.seconds = time.perf_counter() - started
        return summary

    def add(self, paths: Iterable[str | os.PathLike], progress: bool = False) -> Summary:
        """Index files (and folders, which become roots) without touching anything else."""
        paths = [_absolute(p) for p in paths]
        folders = [p for p in paths if os.path.isdir(p)]
        files = [p for p in paths if p not in folders]
        summary = self.update(folders, progress=progress) if folders else Summary()
        if files:
            with self.writing():
                stats = {}
                for path in files:
                    try:
                        info = os.stat(path)
                    except OSError as error:
                        raise InputError(f"cannot add {path}: {error.strerror}") from None
                    stats[path] = FileStat(path, info.st_size, info.st_mtime_ns)
                known = {p: r for p in files if (r := self.store.file(p))}
                self._sync_files(stats, known, summary, progress, forget_missing=False)
                self._embed_missing(summary, progress)
                summary.skipped += [(p, r) for p, r in self._unusable(files)]
        return summary

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget files, or everything under a folder (which stops being a root). Files on disk
        are not touched. Returns how many index entries went."""
        paths = [_absolute(p) for p in paths]
        with self.writing():
            gone = list(self.store.files_under(paths))
            self.store.delete_files(gone)
            for path in paths:
                self.store.remove_root(path)
        return len(gone)

    def refresh(self, paths: Iterable[str | os.PathLike], exclude: Sequence[str] = (),
                hidden: bool = False) -> Summary:
        """Bring these paths in line with the disk in one write: files (and everything under
        folders) that exist are indexed when new or changed, those gone are forgotten, and a
        content that left one path for another counts as a move. The roots stay as they are:
        this is what a watcher calls with the paths its events named."""
        started = time.perf_counter()
        paths = sorted({_absolute(p) for p in paths})
        summary = Summary()
        with self.writing():
            found = _walk_all([p for p in paths if os.path.isdir(p)], exclude, hidden, summary)
            for path in paths:
                if path not in found and not os.path.isdir(path) and is_image_path(path):
                    try:
                        info = os.stat(path)
                    except OSError:  # gone: forgotten below
                        continue
                    found[path] = FileStat(path, info.st_size, info.st_mtime_ns)
            self._sync_files(found, self.store.files_under(paths), summary, False)
            self._embed_missing(summary, False)
            summary.skipped += self._unusable(sorted(found))
        summary.seconds = time.perf_counter() - started
        return summary

    def import_embeddings(self, folder: str | os.PathLike) -> Summary:
        """Make the images in ``vislang embed`` output (Parquet shards + _manifest.json, see
        docs/scale.md) searchable without embedding them again: each row whose file is on this
        machine, unchanged in size, becomes a file with its vector for the manifest's model.
        Rows that are not (tar members, files moved or changed since) are skipped, with why.
        A later ``vislang index`` of their folders finds them unchanged, vectors and all."""
        import json

        import pyarrow.parquet as pq

        started = time.perf_counter()
        source = Path(folder).expanduser()
        try:
            manifest = json.loads((source / "_manifest.json").read_text())
            key, name, dim = manifest["model_key"], manifest["model"], int(manifest["dim"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"{source} is not vislang embed output (its _manifest.json cannot "
                             f"be read: {error})") from None
        summary = Summary()
        with self.writing():
            row = self.store.ensure_model(key, name, dim)
            if self.model_name is None:
                self.model_name = name
                self.store.set_meta("model", name)
            for shard in manifest.get("shards", []):
                table = pq.read_table(source / shard["file"],
                                      columns=["path", "hash", "size", "embedding"])
                files, hashes, vectors = [], [], []
                for path, content, size, vector in zip(*(table.column(c).to_pylist()
                                                         for c in table.column_names)):
                    try:
                        info = os.stat(path)
                        with open(path, "rb") as file:
                            head = file.read(1 << 17)
                    except OSError:
                        summary.skipped.append((path, "not a file on this machine"))
                        continue
                    if info.st_size != size:
                        summary.skipped.append((path, "changed since it was embedded"))
                        continue
                    files.append(FileRow(path, size, info.st_mtime_ns, content,
                                         exif_time(head) or info.st_mtime_ns / 1e9))
                    hashes.append(content)
                    vectors.append(vector)
                if files:
                    rows = np.asarray(vectors, np.float32).reshape(len(files), dim)
                    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
                    self.store.put_files(files)
                    self.store.put_vectors(row.id, hashes, rows)
                    summary.added += len(files)
        summary.seconds = time.perf_counter() - started
        return summary

    def _sync_files(self, found: dict[str, FileStat], known: dict[str, FileRow],
                    summary: Summary, progress: bool, forget_missing: bool = True) -> None:
        """Step 1: record new and changed files (hashing them), forget deleted ones."""
        fresh = [s for p, s in found.items() if p not in known
                 or (known[p].size, known[p].mtime_ns) != (s.size, s.mtime_ns) or known[p].error]
        summary.unchanged = len(found) - len(fresh)
        gone = [p for p in known if p not in found] if forget_missing else []
        # Contents that left their old path: one of them reappearing elsewhere is a move.
        departed = Counter(known[p].hash for p in gone if known[p].hash)
        with progress_bar(len(fresh), "reading", unit="files", enabled=progress and
                          len(fresh) > 0) as advance:
            for batch in batched(ordered_map(lambda s: (s, read_content(s)), fresh), 256):
                rows = []
                for stat, content in batch:
                    rows.append(FileRow(stat.path, stat.size, stat.mtime_ns, content.hash,
                                        content.taken, content.error))
                    if stat.path in known:
                        summary.updated += 1
                    elif departed[content.hash] > 0:
                        departed[content.hash] -= 1
                        summary.moved += 1
                    else:
                        summary.added += 1
                self.store.put_files(rows)
                advance(len(batch))
        summary.removed = len(gone) - summary.moved
        if gone:
            self.store.delete_files(gone)

    def _embed_missing(self, summary: Summary, progress: bool) -> None:
        """Step 2: embed each content that has no vector for the model; adds to ``summary``
        how many, and the time spent loading the model and embedding, each apart."""
        if not self._needs_model():
            return
        started = time.perf_counter()
        clip = self.model("throughput")
        row = self.store.ensure_model(clip.model_key, self.model_name, clip.embed_dim)
        self.store.set_meta("model", self.model_name)
        todo = self.store.hashes_to_embed(row.id)
        if todo:
            clip.prepare()
        summary.load_seconds += time.perf_counter() - started
        started = time.perf_counter()
        summary.embedded += self._embed(clip, row, todo, progress)
        summary.embed_seconds += time.perf_counter() - started

    def _embed(self, clip, row: ModelRow, todo: list[tuple[str, str]], progress: bool) -> int:
        """Embed ``todo`` (content hash, path) with ``clip``; returns how many it could."""
        if not todo:
            return 0
        done = 0
        size = max(BATCH, clip.default_batch)  # a GPU embeds (and commits) more at a time
        for batch in clip.embed_batches(todo, size, source=lambda item: item[1],
                                        progress=progress):
            # one commit per batch: a killed run loses at most this batch
            self.store.put_vectors(row.id, [h for h, _ in batch.items], batch.vectors,
                                   [(h, error.reason) for (h, _), error in batch.failed])
            done += len(batch.items)
        return done

    def _needs_model(self) -> bool:
        """Whether any content lacks a vector, checked without loading weights when possible."""
        if self._clip is not None or self.model_name is None:
            return True
        from vislang.models.hub import locate

        row = self.store.model(locate(self.model_name).model_key)
        return row is None or bool(self.store.hashes_to_embed(row.id))

    def _unusable(self, paths: list[str]) -> list[tuple[str, str]]:
        out = []
        for path in paths:
            out += [(p, r) for p, r in self.store.unusable([path]) if p == path]
        return out

    # -- reading -----------------------------------------------------------------------------
    def search(self, text: str | None = None, image=None, k: int = 10,
               add: Sequence[Term | str] = (), sub: Sequence[Term | str] = (),
               filters: Filters | None = None, threshold: float | None = None,
               caption_weight: float = keywords.CAPTION_WEIGHT,
               text_weight: float = keywords.TEXT_WEIGHT,
               text_filter: str | None = None, rerank: int | None = None) -> list[Result]:
        """Best ``k`` files for a text and/or image query, plus weighted terms to add or
        subtract (rclip style), within ``filters``. Scores are cosine similarities, raised
        for images whose stored caption or read text (OCR) holds ``text``'s words: per word,
        ``text_weight`` when the read text holds it, else ``caption_weight`` when the caption
        does, summed, over the number of words, times the query's score spread (the rule in
        ``vislang.search.keywords``; a weight of 0 turns that source off).

        ``text_filter``: only images whose read text contains this phrase (case and line
        breaks aside). Results carry the read lines the query's words or the phrase matched.

        ``rerank``: re-score this many candidates with the exact stored vectors (default: 100
        on a compressed index, whose own scores are estimates, else none).
        """
        terms = ([Term(text)] if text else []) + ([Term(image, is_image=True)] if image else [])
        terms += [Term.parse(t) if isinstance(t, str) else t for t in add]
        terms += [(Term.parse(t) if isinstance(t, str) else t).negated() for t in sub]
        if not terms:
            raise InputError("nothing to search for: give a text, an image, or --add terms")
        if k < 1:
            raise InputError(f"k must be at least 1, not {k}")
        _check_threshold(threshold, -1.0)
        row = self._model_row()
        query = combine(terms, self._vector_of)
        allowed, where, params = None, "", ()
        if filters is not None and not filters.empty:
            where, params = filters.sql()
            allowed = self.store.vector_ids_where(row, where, params)
            if len(allowed) == 0:
                return []
        phrase = fold(text_filter)
        if text_filter is not None:
            if not phrase:
                raise InputError("the text filter is empty; give the words to look for")
            having = self.store.vector_ids_with_phrase(row, phrase)
            allowed = having if allowed is None else np.intersect1d(allowed, having)
            if len(allowed) == 0:
                return []
        def best_among(ids: np.ndarray | None, n: int = k) -> dict[int, float]:
            return dict(self._nearest(row, query, n, ids, rerank))

        words = keywords.query_words(text or "")
        read_text = bool(text_weight) and self.store.has_ocr()
        blending = bool(words) and bool(caption_weight and self.store.has_captions()
                                        or read_text)
        hits = best_among(allowed, max(k, keywords.SPREAD_RANK) if blending else k)
        if blending:
            more = [(text_weight, lambda w: self.store.vector_ids_with_ocr_word(row, w))] \
                if read_text else []
            hits = keywords.blend(hits, words, caption_weight,
                                  lambda w: self.store.vector_ids_with_caption_word(row, w),
                                  best_among, allowed, more)
        ranked = sorted(hits.items(), key=lambda h: -h[1])[:k]
        # Copies share one vector: each hit may be several files (those the filters allow).
        files = self.store.files_of_vectors(row, [i for i, _ in ranked], where, params)
        hashes = {f.hash for fs in files.values() for f in fs}
        captions = self.store.captions_of(hashes)
        matched = self._matched_lines(hashes, words if read_text else [], phrase)
        results = [Result(f.path, score, f.taken, captions.get(f.hash), matched.get(f.hash))
                   for i, score in ranked for f in files.get(i, [])]
        if threshold is not None:
            results = [r for r in results if r.score >= threshold]
        return results[:k]

    def _matched_lines(self, hashes: set[str], words: list[str],
                       phrase: str) -> dict[str, list[dict]]:
        """hash -> the read lines holding a query word or (part of) the phrase."""
        if not (words or phrase) or not hashes:
            return {}
        marked = self.store.ocr_word_marks(hashes, words)
        stored = self.store.ocr_lines_of(set(marked) | (hashes if phrase else set()))
        out = {}
        for content, lines in stored.items():
            marks = marked.get(content, "").split("\n")
            found = []
            for number, line in enumerate(lines):
                spans = _spans(marks[number]) if number < len(marks) else []
                if phrase:
                    spans += _phrase_spans(line["text"], phrase)
                if spans:
                    found.append({"text": line["text"], "box": line["box"],
                                  "words": [{"text": line["text"][a:b],
                                             "box": _part_of_box(line["box"], a, b,
                                                                 len(line["text"]))}
                                            for a, b in sorted(set(spans))]})
            if found:
                out[content] = found
        return out

    def _vector_of(self, term: Term) -> np.ndarray:
        """A term's unit vector: stored for an indexed image, else computed by the model."""
        if not term.is_image:
            return self.model("latency").embed_texts([term.value])[0]
        if isinstance(term.value, (str, os.PathLike)):
            path = _absolute(term.value)
            if not os.path.isfile(path):
                raise InputError(f"no such image: {term.value}")
            known = self.store.file(path)
            if known is not None and known.hash:
                info = os.stat(path)
                if (info.st_size, info.st_mtime_ns) == (known.size, known.mtime_ns):
                    vector = self.store.vector_for_hash(self._model_row(), known.hash)
                    if vector is not None:
                        return vector
        return self.model("latency").embed_images([term.value])[0]

    def nearest(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None,
                rerank: int | None = None) -> list[tuple[int, float]]:
        """The ``k`` vector ids nearest to ``query`` (a unit vector of the model's dimension)
        with their cosines, best first: the vector search beneath ``search``, without files,
        filters by path or keyword blending. ``allowed``, ``rerank``: as in ``search``."""
        return self._nearest(self._model_row(), np.asarray(query, np.float32), k, allowed,
                             rerank)

    def _nearest(self, row: ModelRow, query: np.ndarray, k: int, allowed: np.ndarray | None,
                 rerank: int | None) -> list[tuple[int, float]]:
        index, plan = self._ann_for(row)
        depth = plan.rerank if rerank is None else rerank
        if depth <= 0:
            scores, found = ann.search(index, query[None], k, allowed)
            return [(int(i), float(s)) for i, s in zip(found[0], scores[0]) if i >= 0]
        if allowed is not None and len(allowed) <= max(depth, k):
            candidates = allowed  # a small filter: score every allowed vector exactly
        else:
            found = ann.search(index, query[None], max(depth, k), allowed)[1][0]
            candidates = found[found >= 0]
        ids, vectors = self.store.vectors(row, candidates.tolist())  # only the candidates
        scores, best = ann.rerank(query, ids, vectors, k)
        return [(int(i), float(s)) for i, s in zip(best, scores)]

    # -- the vector index (derived, rebuilt when stale) --------------------------------------
    def ann_settings(self) -> tuple[str, int | None]:
        """The index kind asked for (``auto`` unless set) and the memory budget (None: none),
        as ``build_ann`` stored them: every later search and update builds the same kind."""
        budget = self.store.get_meta(ANN_MAX_MEMORY)
        return self.store.get_meta(ANN_TYPE) or "auto", int(budget) if budget else None

    def plan_ann(self, index_type: str | None = None,
                 max_memory: str | int | None = None) -> plans.Plan:
        """The index ``build_ann`` would build now for this model's vectors (``None``: the
        stored setting); raises InputError when the budget is too small, changing nothing."""
        kind, budget = self._resolve(index_type, max_memory)
        row = self._model_row()
        return plans.choose(self.store.vector_count(row.id), row.dim, kind, budget,
                            self.exact_limit)

    def check_ann(self, index_type: str | None = None,
                  max_memory: str | int | None = None) -> None:
        """Raise InputError now if the settings cannot hold the vectors the index already has
        for its model (none yet: nothing to check), before an update spends time on work."""
        try:
            self._model_row()
        except InputError:  # no vectors for this model yet
            return
        self.plan_ann(index_type, max_memory)

    def build_ann(self, index_type: str | None = None, max_memory: str | int | None = None,
                  progress: bool = False) -> plans.Plan:
        """Choose the vector index (``index_type``: one of ``plan.KINDS``; ``max_memory``:
        bytes or "2GB"), keep the choice with the index, and build it now. Returns the plan,
        which says what was chosen and why. A budget too small raises InputError before
        anything is written."""
        kind, budget = self._resolve(index_type, max_memory)
        self.plan_ann(kind, budget)  # fails here, with the old settings and cache intact
        with self.writing(), self.store.transaction():
            self.store.set_meta(ANN_TYPE, kind)
            self.store.set_meta(ANN_MAX_MEMORY, str(budget) if budget else "")
        return self._ann_for(self._model_row(), progress)[1]

    def _resolve(self, index_type: str | None,
                 max_memory: str | int | None) -> tuple[str, int | None]:
        kind, budget = self.ann_settings()
        if isinstance(max_memory, str):
            max_memory = plans.parse_memory(max_memory)
        return index_type or kind, max_memory if max_memory is not None else budget

    def _ann_for(self, row: ModelRow, progress: bool = False) -> tuple[object, plans.Plan]:
        """The FAISS index of a model's vectors and its plan: in memory, on disk, or rebuilt
        when the vectors or the settings changed."""
        kind, budget = self.ann_settings()
        settings_tag = f"{kind}-{budget or 'any'}"
        cached = self._ann.get(row.id)
        current = self.store.model(row.model_key)
        if cached and cached[:2] == (current.version, settings_tag):
            return cached[2], cached[3]
        plan = plans.choose(self.store.vector_count(row.id), row.dim, kind, budget,
                            self.exact_limit)
        path = self.folder / f"ann-{row.id}-v{current.version}-{settings_tag}.faiss"
        index = None
        if path.is_file():
            try:
                index = ann.load(path, _mapped(path, plan, budget))
            except ValueError:  # a damaged cache is only a cache: build it again
                index = None
        if index is None:
            index = self._build(current, plan, progress)
            if self.store.model(row.model_key).version == current.version:  # not stale yet
                ann.save(index, path)
                for old in self.folder.glob(f"ann-{row.id}-v*.faiss"):
                    if old != path:
                        old.unlink(missing_ok=True)
                if _mapped(path, plan, budget):  # serve from the file, not the build's copy
                    index = ann.load(path, mmap=True)
        self._ann[row.id] = (current.version, settings_tag, index, plan)
        return index, plan

    def _build(self, row: ModelRow, plan: plans.Plan, progress: bool):
        """Build ``plan``'s index from the store: train on a sample fetched by id, then add
        the vectors a batch at a time, so memory holds the index and one batch."""
        all_ids = self.store.vector_ids(row)
        chosen = all_ids[ann.sample_rows(len(all_ids), plan.train_rows)]
        del all_ids
        sample = self.store.vectors(row, chosen.tolist())[1] if plan.train_rows else \
            np.empty((0, row.dim), np.float32)
        with progress_bar(self.store.vector_count(row.id), f"building {plan.kind} index",
                          unit="vectors", enabled=progress) as advance:
            return ann.build_streaming(plan, row.dim, sample,
                                       self.store.iter_vectors(row, plans.ADD_BATCH), advance)

    def duplicates(self, threshold: float = 0.95) -> list[list[Result]]:
        """Groups of files whose images are near-duplicates (cosine >= threshold), largest
        group first; byte-identical copies always group together. ``threshold`` is in 0..1:
        a negative cosine means unlike images, never near-duplicates."""
        _check_threshold(threshold, 0.0)
        row = self._model_row()
        parent: dict[int, int] = {}
        best: dict[int, float] = {}

        def find(x: int) -> int:
            parent.setdefault(x, x)
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for a, b, score in self._duplicate_pairs(row, threshold):
            parent[find(a)] = find(b)
            best[a], best[b] = max(best.get(a, 0), score), max(best.get(b, 0), score)
        for i in self.store.vector_ids_with_copies(row):  # byte-identical files share a vector
            find(int(i))
        members: dict[int, list[int]] = {}
        for i in list(parent):
            members.setdefault(find(i), []).append(i)
        files = self.store.files_of_vectors(row, list(parent))
        groups = []
        for group in members.values():
            results = [Result(f.path, best.get(i, 1.0), f.taken) for i in group
                       for f in files.get(i, [])]
            if len(results) > 1:
                groups.append(sorted(results, key=lambda r: r.path))
        return sorted(groups, key=lambda g: (-len(g), g[0].path))

    def _duplicate_pairs(self, row: ModelRow,
                         threshold: float) -> Iterator[tuple[int, int, float]]:
        """(id_a, id_b, cosine) of near-duplicate vectors, reading the store a batch at a time
        (never every vector at once); on a PQ index the cosines are the stored vectors' own,
        since PQ scores can cross the threshold either way."""
        index, plan = self._ann_for(row)
        for ids, vectors in self.store.iter_vectors(row):
            if not plan.approximate_scores:
                yield from ann.neighbours(index, vectors, ids, threshold)
                continue
            pairs = ann.neighbours(index, vectors, ids, -1.0)
            known = dict(zip(ids.tolist(), vectors))
            partners = sorted({i for pair in pairs for i in pair[:2]} - known.keys())
            if partners:
                found, stored = self.store.vectors(row, partners)
                known.update(zip(found.tolist(), stored))
            scored = ((a, b, float(known[a] @ known[b])) for a, b, _ in pairs)
            yield from (pair for pair in scored if pair[2] >= threshold)

    def drop_model(self, name: str) -> int:
        """Remove one model's vector set (by the name it was indexed with, or its model key),
        e.g. the old one after ``vislang index --model NEW``; returns how many vectors went.
        The index's current model is refused: search needs it."""
        rows = [m for m in self.store.models() if name in (m.name, m.model_key)]
        if not rows:
            held = ", ".join(f"{m.name} ({m.model_key})" for m in self.store.models()) or "none"
            raise InputError(f"the index holds no vectors of {name!r}; it holds: {held}")
        current = self.model_name
        if any(current in (row.name, row.model_key) for row in rows):
            raise InputError(f"{name!r} is the index's current model; index with another "
                             "first (vislang index --model NEW), then remove this one")
        with self.writing():
            gone = sum(self.store.drop_model(row.id) for row in rows)
            for row in rows:
                self._ann.pop(row.id, None)
                for path in self.folder.glob(f"ann-{row.id}-v*.faiss"):
                    path.unlink(missing_ok=True)
        return gone

    def stats(self) -> dict:
        """Roots, counts, models and their vector counts, size on disk."""
        size = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
        return {"path": str(self.folder), "roots": self.store.roots(), **self.store.counts(),
                "model": self.model_name,
                "ann": dict(zip(("index_type", "max_memory"), self.ann_settings())),
                "models": [{"name": m.name, "model_key": m.model_key, "dim": m.dim,
                            "vectors": self.store.vector_count(m.id)}
                           for m in self.store.models()],
                "bytes_on_disk": size}


def _lasting_name(model: str) -> str:
    """The name an index keeps for its model: a folder named relative to here becomes its
    absolute path, since the index is searched later from anywhere (a shipped name or a hub id
    stays as it is, as ``locate`` reads those first)."""
    from vislang.models.registry import SHIPPED

    local = Path(model).expanduser()
    if model in SHIPPED or local.is_absolute() or not local.is_dir() or ":" in model:
        return model
    return str(local.resolve())


def _mapped(path: Path, plan: plans.Plan, budget: int | None) -> bool:
    """Whether an index file is memory-mapped rather than read in: IVF kinds (whose inverted
    lists FAISS can map) when a memory budget is set, or when the file is larger than half the
    memory this machine has free: queries then touch only the lists they scan."""
    if not plan.nlist:
        return False
    return budget is not None or path.stat().st_size > _available_memory() // 2


def _available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume plenty
        return 1 << 62


def _check_threshold(threshold: float | None, lowest: float) -> None:
    """Cosine similarities lie in -1..1, so a threshold outside its range (or NaN, which
    compares false with everything) is a mistake, not a request for everything or nothing."""
    if threshold is not None and not lowest <= threshold <= 1.0:
        raise InputError(f"threshold must be between {lowest:g} and 1 (a cosine similarity), "
                         f"not {threshold}")


def _spans(marked: str) -> list[tuple[int, int]]:
    """(start, end) in the unmarked text of each \x02...\x03 span FTS5's highlight() made."""
    spans, plain, start = [], 0, None
    for char in marked:
        if char == "\x02":
            start = plain
        elif char == "\x03":
            if start is not None:
                spans.append((start, plain))
            start = None
        else:
            plain += 1
    return spans


def _phrase_spans(line: str, phrase: str) -> list[tuple[int, int]]:
    """Where a line holds the folded phrase, or, for a phrase that runs over several lines,
    the whole line when it is part of the phrase."""
    folded = fold(line)
    if not folded:
        return []
    if phrase in folded:
        # map the folded position back: positions agree when folding keeps the length
        if len(line) == len(folded) and line.casefold() == folded:
            at = folded.index(phrase)
            return [(at, at + len(phrase))]
        return [(0, len(line))]
    return [(0, len(line))] if folded in phrase else []


def _part_of_box(box: list, start: int, end: int, length: int) -> list[list[float]]:
    """The part of a line's 4-corner box (top-left, top-right, bottom-right, bottom-left)
    holding characters start..end, by their share of the line (exact for monospace text)."""
    if length <= 0 or (start, end) == (0, length):
        return box
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = box
    a, b = start / length, end / length

    def along(p, q, t):
        return [round(p[0] + (q[0] - p[0]) * t, 1), round(p[1] + (q[1] - p[1]) * t, 1)]

    top, bottom = ((x0, y0), (x1, y1)), ((x3, y3), (x2, y2))
    return [along(*top, a), along(*top, b), along(*bottom, b), along(*bottom, a)]


def _walk_all(folders: Sequence[str], exclude: Sequence[str], hidden: bool,
              summary: Summary) -> dict[str, FileStat]:
    """Every image file under ``folders`` by path; what could not be walked goes to
    ``summary.skipped``."""
    found: dict[str, FileStat] = {}
    for folder in folders:
        walked = walk(folder, exclude, hidden)
        found.update((f.path, f) for f in walked.files)
        summary.skipped += walked.problems
    return found


def _absolute(path: str | os.PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))
