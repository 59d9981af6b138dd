"""Nearest-neighbour search over one model's vectors: FAISS, exact when small, IVF when large.

The SQLite store holds every vector; this module builds a *derived* FAISS index from them, so
any index may be thrown away and rebuilt. Vectors are L2-normalised, so inner product is cosine
similarity; ids are the store's row ids, kept inside the index so results need no mapping.

Why two kinds of index:

- Exact search (``IndexFlatIP``) reads every vector for every query: about 0.1 ms per 1,000
  512-d vectors here (measured: 1.9 ms at 20k, 5.2 ms at 50k, 15 ms at 100k, 160-300 ms at
  1M, memory-bound: a second thread does not help). Up to ``EXACT_LIMIT`` = 50,000 vectors
  that is within the 5 ms a query may take at a million, so small collections -- most photo
  folders -- get perfect results, no training, and an instant build.
- Above it, an inverted file (``IVF{nlist},Flat``): k-means cuts the space into ``nlist``
  cells and a query scans only the ``nprobe`` cells nearest to it. Vectors are kept in full
  (no compression), so the scores are exact cosines and only *which* vectors are looked at is
  approximate. At 1M x 512 on this 2-core CPU (see ``bench/search.py``): build about 50 s
  (HNSW with M=32 took about 6 minutes), one query about 3 ms, recall@10 about 0.99 vs exact.

Choices, measured on 1M clustered synthetic embeddings (bench/search.py's generator):

- ``nlist`` = 4 * sqrt(N) (4,000 at 1M): a query costs the centroid scan (nlist vectors) plus
  nprobe cells of N / nlist vectors each; 4 * sqrt(N) keeps both small. With 4,096 cells a
  query took 2.8 ms against 4.9 ms with 2,048, at the same recall (0.992, nprobe 64);
  training took 32 s against 9 s, well inside the build budget.
- k-means (spherical, since the metric is cosine) trains on a random sample of 64 vectors per
  cell, 10 iterations: FAISS's defaults (256 per cell, so all of 1M, and 25 iterations) are
  about ten times the work.
- ``NPROBE`` = 64: recall@10 0.992 with 4,096 cells (0.988 at 48, 0.982 at 32, 0.964 at 16),
  about 3 ms. The margin over the 0.95 target is for real embeddings, which may be harder.

Filtered search (``allowed``): FAISS skips non-allowed ids while it scans (an ``IDSelector``:
a bitmap of ids, or a hash set where ids are sparse), but an IVF index only scans nprobe
cells, where a small allowed set may have no members at all. So the number of cells probed
grows as the allowed fraction shrinks -- nprobe * N / len(allowed), at most every cell --
which keeps the expected number of allowed candidates scanned the same as unfiltered. A
small allowed set thus probes every cell and gets exact results; the cost is a bit test per
stored id. Measured at 1M: 3-10 ms per query for allowed sets of 10 to 300,000 ids,
recall@10 1.0 up to 100,000 and 0.994 at 300,000.

Near-duplicates (``neighbours``): every vector is a query, so its cost is N single searches,
batched over all threads. A near-duplicate lies so close to its vector that it falls in one of
the few nearest cells: with 2,000 planted copies at 1M, cosine 0.93 and 0.97, 16 cells found
every pair (8 missed one in 4,000) at a quarter of the cost of the 64 a search probes.

Threads: FAISS (OpenMP) uses as many threads as this process may use cores (the CPU
affinity, not the host's core count) -- for building and for batches of queries. A single
query runs on one thread, which keeps its latency steady on a machine that is busy elsewhere.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

EXACT_LIMIT = 50_000  # vectors; above it an IVF index (see the module docstring for why)
NPROBE = 64  # IVF cells scanned per query
LISTS_PER_SQRT_N = 4  # nlist = 4 * sqrt(N)
TRAIN_POINTS_PER_LIST = 64  # k-means sample size, per cell
TRAIN_MIN_POINTS_PER_LIST = 39  # below this FAISS warns that k-means is under-fed
TRAIN_ITERATIONS = 10
SEED = 1234  # k-means sample and initialisation: the same vectors give the same index
BITMAP_BYTES_PER_ID = 32  # filters: a bitmap of ids up to this size (~a hash set's), else a set
NEIGHBOUR_NPROBE = 16  # IVF cells neighbours() probes: near-duplicates share nearby cells
NEIGHBOUR_BATCH = 16_384  # queries per FAISS call in neighbours(): bounds its memory


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


faiss.omp_set_num_threads(_cores())


def build(vectors: np.ndarray, ids: np.ndarray, exact_limit: int = EXACT_LIMIT) -> faiss.Index:
    """An inner-product index of ``vectors`` (float32 [N, D], unit length) under ``ids``
    (int64 [N], unique): exact up to ``exact_limit`` vectors, IVF above. N may be 0."""
    vectors = _matrix(vectors)
    ids = _ids(ids, len(vectors))
    n, dim = vectors.shape
    if n <= exact_limit:
        index = faiss.index_factory(dim, "IDMap,Flat", faiss.METRIC_INNER_PRODUCT)
    else:
        nlist = _nlist(n)
        index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True
        index.cp.niter = TRAIN_ITERATIONS
        index.cp.seed = SEED
        index.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
        sample = min(n, nlist * TRAIN_POINTS_PER_LIST)
        rows = np.sort(np.random.default_rng(SEED).choice(n, sample, replace=False))
        index.train(vectors[rows])
        index.nprobe = min(NPROBE, nlist)  # saved with the index
    if n:
        index.add_with_ids(vectors, ids)
    return index


def _nlist(n: int) -> int:
    """IVF cells for ``n`` vectors: 4 * sqrt(n), but never so many that k-means is under-fed."""
    return max(1, min(round(LISTS_PER_SQRT_N * math.sqrt(n)), n // TRAIN_MIN_POINTS_PER_LIST))


def search(index: faiss.Index, queries: np.ndarray, k: int,
           allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ids for each query, best first: (scores float32 [Q, k], ids int64 [Q, k]).
    Missing results (fewer than ``k`` vectors, or allowed ones) have id -1 and score -inf.
    ``allowed``: the ids results may come from (a filter); None allows all."""
    return _search(index, queries, k, allowed)


def _search(index: faiss.Index, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
            nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``search``, with the IVF cells to probe (before any filter) other than the index's."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    queries = _matrix(queries, index.d)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    if allowed is not None:
        allowed = np.ascontiguousarray(allowed, dtype=np.int64).ravel()
    if len(queries) == 0 or index.ntotal == 0 or (allowed is not None and len(allowed) == 0):
        return scores, ids
    selector = bitmap = None
    if allowed is not None:
        selector, bitmap = _selector(allowed)  # both must outlive the search call
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        params = faiss.SearchParameters(sel=selector) if selector is not None else None
    else:
        probes = nprobe or ivf.nprobe
        if allowed is not None:  # the fewer ids allowed, the more cells (module docstring)
            probes = math.ceil(probes * index.ntotal / len(allowed))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=min(ivf.nlist, probes))
    index.search(queries, k, params=params, D=scores, I=ids)
    scores[ids < 0] = -np.inf  # FAISS fills them with -FLT_MAX
    return scores, ids


def _selector(allowed: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray | None]:
    """A FAISS membership test for ``allowed`` (and the array it reads, if any): a bitmap over
    ids 0..max when it is no bigger than FAISS's hash set would be (store row ids are dense,
    so it nearly always is): it takes ~12 ms to build for a million ids, the set ~180 ms."""
    low, high = int(allowed.min()), int(allowed.max())
    if low < 0 or high // 8 >= max(BITMAP_BYTES_PER_ID * len(allowed), 1 << 20):
        return faiss.IDSelectorBatch(allowed), None
    bitmap = np.zeros(high // 8 + 1, dtype=np.uint8)  # id i is bit i % 8 of byte i // 8
    np.bitwise_or.at(bitmap, allowed >> 3, (1 << (allowed & 7)).astype(np.uint8))
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap


def save(index: faiss.Index, path: Path) -> None:
    """Write ``index`` to ``path`` atomically: readers see the old file or the whole new one,
    never half of one, even if this process is killed mid-write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.close(fd)
        faiss.write_index(index, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> faiss.Index:
    """The index ``save`` wrote to ``path``. Raises ValueError for a file FAISS cannot read;
    the index is a cache, so the cure is to delete the file and build again."""
    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:  # FAISS reports missing and corrupt files alike
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise ValueError(f"cannot read the FAISS index {path}: {first}") from None


def neighbours(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, threshold: float,
               k: int = 16) -> list[tuple[int, int, float]]:
    """Pairs (id_a, id_b, score), id_a < id_b, each once, sorted, of ``vectors`` (under
    ``ids``) and their ``k`` nearest neighbours in ``index`` with cosine >= ``threshold``:
    the edges of near-duplicate groups."""
    vectors = _matrix(vectors, index.d)
    ids = _ids(ids, len(vectors))
    lows, highs, scores = [], [], []
    for start in range(0, len(vectors), NEIGHBOUR_BATCH):
        own = ids[start:start + NEIGHBOUR_BATCH, None]
        found_scores, found = _search(index, vectors[start:start + NEIGHBOUR_BATCH], k + 1,
                                      nprobe=NEIGHBOUR_NPROBE)
        keep = (found >= 0) & (found != own) & (found_scores >= threshold)  # +1 was itself
        own = np.broadcast_to(own, found.shape)[keep]
        lows.append(np.minimum(own, found[keep]))
        highs.append(np.maximum(own, found[keep]))
        scores.append(found_scores[keep])
    if not lows:
        return []
    low, high, score = np.concatenate(lows), np.concatenate(highs), np.concatenate(scores)
    # A pair is usually found from both ends: keep it once, with the higher score.
    order = np.lexsort((-score, high, low))
    low, high, score = low[order], high[order], score[order]
    first = np.ones(len(low), dtype=bool)
    first[1:] = (low[1:] != low[:-1]) | (high[1:] != high[:-1])
    return [(int(a), int(b), float(s)) for a, b, s in zip(low[first], high[first], score[first])]


def _matrix(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or (dim is not None and vectors.shape[1] != dim):
        want = f"[N, {dim}]" if dim is not None else "[N, D]"
        raise ValueError(f"vectors must be a {want} matrix, not shape {vectors.shape}")
    return vectors


def _ids(ids: np.ndarray, n: int) -> np.ndarray:
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.shape != (n,):
        raise ValueError(f"need one id per vector: {n} vectors, ids of shape {ids.shape}")
    return ids
