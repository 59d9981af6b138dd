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

Beyond memory (``vislang.search.plan`` chooses; see docs/scale.md): the same functions build
any kind a ``Plan`` names -- flat, IVF-Flat, HNSW, IVF-PQ, OPQ+IVF-PQ -- from a training
sample and batches of vectors, so a caller streaming from the store never holds every vector
at once. Filters work on each: IVF kinds (PQ included) probe more cells as above, HNSW widens
its search list (``efSearch``) the same way. PQ scores are estimates from the codes; the
caller re-scores the best candidates with the stored vectors (``rerank``).

Threads: FAISS (OpenMP) uses as many threads as this process may use cores (the CPU
affinity, not the host's core count) -- for building and for batches of queries. A single
query runs on one thread, which keeps its latency steady on a machine that is busy elsewhere.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import faiss
import numpy as np

from vislang.search import plan as plans

EXACT_LIMIT = plans.EXACT_LIMIT  # vectors; above it an IVF index (see the module docstring)
NPROBE = 64  # IVF cells scanned per query
TRAIN_POINTS_PER_LIST = plans.TRAIN_POINTS_PER_LIST  # k-means sample size, per cell
TRAIN_ITERATIONS = 10
SEED = 1234  # k-means sample and initialisation: the same vectors give the same index
BITMAP_BYTES_PER_ID = 32  # filters: a bitmap of ids up to this size (~a hash set's), else a set
NEIGHBOUR_NPROBE = 16  # IVF cells neighbours() probes: near-duplicates share nearby cells
NEIGHBOUR_BATCH = 16_384  # queries per FAISS call in neighbours(): bounds its memory
HNSW_EF_SEARCH = 64  # HNSW candidates kept while walking the graph (FAISS's default is 16)
HNSW_MAX_EF = 4_096  # the most a filtered HNSW search widens it to


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


faiss.omp_set_num_threads(_cores())


def build(vectors: np.ndarray, ids: np.ndarray, exact_limit: int = EXACT_LIMIT,
          plan: plans.Plan | None = None) -> faiss.Index:
    """An inner-product index of ``vectors`` (float32 [N, D], unit length) under ``ids``
    (int64 [N], unique): the kind ``plan`` names, by default exact up to ``exact_limit``
    vectors and IVF above. N may be 0."""
    vectors = _matrix(vectors)
    ids = _ids(ids, len(vectors))
    n, dim = vectors.shape
    plan = plan or plans.choose(n, dim, exact_limit=exact_limit)
    return build_streaming(plan, dim, vectors[sample_rows(n, plan.train_rows)], [(ids, vectors)])


def sample_rows(n: int, size: int) -> np.ndarray:
    """``size`` of the row numbers 0..n-1, sorted, drawn the same way every time."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(SEED).choice(n, size, replace=False))


def build_streaming(plan: plans.Plan, dim: int, sample: np.ndarray,
                    batches: Iterable[tuple[np.ndarray, np.ndarray]],
                    on_batch: Callable[[int], None] | None = None) -> faiss.Index:
    """The index ``plan`` names, trained on ``sample`` (float32 [S, D]; unused by kinds that
    need no training) and filled from ``batches`` of (ids, vectors), one at a time, so only
    the index and one batch are ever in memory. ``on_batch(rows)`` after each, for progress."""
    index = faiss.index_factory(dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.cp.spherical = True  # cosine: centroids on the sphere, like the vectors
        ivf.cp.niter = TRAIN_ITERATIONS
        ivf.cp.seed = SEED
        ivf.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
        ivf.nprobe = min(NPROBE, ivf.nlist)  # saved with the index
        _lighten_pq_training(index, ivf)
    hnsw = _hnsw(index)
    if hnsw is not None:
        hnsw.efSearch = HNSW_EF_SEARCH
    if not index.is_trained:
        index.train(_matrix(sample, dim))
    for ids, vectors in batches:
        index.add_with_ids(_matrix(vectors, dim), _ids(ids, len(vectors)))
        if on_batch is not None:
            on_batch(len(ids))
    return index


def _lighten_pq_training(index: faiss.Index, ivf: faiss.IndexIVF) -> None:
    """PQ's sub-quantisers (and OPQ's rotation) train with the coarse k-means' budget, not
    FAISS's defaults: each sub-quantiser is a 256-centroid k-means in a few dimensions, which
    runs slowly here (~40 ms an iteration for 10,000 points), so FAISS's 65,536 points x 25
    iterations for each of 128 sub-quantisers would take a quarter of an hour to train.
    Polysemous training (on by default from index_factory) reorders codes for Hamming-distance
    filtering, which vislang never uses: it took 160 s of a 165 s build at 20k x 64-d."""
    ivf = faiss.downcast_index(ivf)  # the IndexIVFPQ behind the generic IndexIVF
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False
    if hasattr(ivf, "pq"):
        ivf.pq.cp.niter = TRAIN_ITERATIONS
        ivf.pq.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
        ivf.pq.cp.seed = SEED
        # the plan already gave a small set fewer bits a code (fewer centroids) to fit it
        ivf.pq.cp.min_points_per_centroid = 1
    if isinstance(index, faiss.IndexPreTransform):
        for step in range(index.chain.size()):
            rotation = faiss.downcast_VectorTransform(index.chain.at(step))
            if isinstance(rotation, faiss.OPQMatrix):
                rotation.niter = TRAIN_ITERATIONS
                rotation.max_train_points = 256 * TRAIN_POINTS_PER_LIST


def _hnsw(index: faiss.Index):
    """The HNSW graph inside ``index`` (an IDMap around an HNSW), or None."""
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    return inner.hnsw if hasattr(inner, "hnsw") else None


def rerank(query: np.ndarray, ids: np.ndarray, vectors: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of candidate ``ids`` by exact cosine with their stored ``vectors``:
    (scores float32 [<=k], ids int64 [<=k]), best first; ties keep the candidates' order."""
    scores = _matrix(vectors, len(query)) @ np.asarray(query, np.float32)
    order = np.argsort(-scores, kind="stable")[:k]
    return scores[order], np.asarray(ids, np.int64)[order]


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
    hnsw = _hnsw(index) if ivf is None else None
    if hnsw is not None:  # like IVF below: the fewer ids allowed, the wider the search
        ef = max(k, hnsw.efSearch)
        if allowed is not None:
            ef = min(max(k, HNSW_MAX_EF), math.ceil(ef * index.ntotal / len(allowed)))
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
    elif ivf is None:
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


def load(path: Path, mmap: bool = False) -> faiss.Index:
    """The index ``save`` wrote to ``path``. Raises ValueError for a file FAISS cannot read;
    the index is a cache, so the cure is to delete the file and build again.

    ``mmap``: map an IVF index's inverted lists from the file instead of reading them in
    (FAISS's IO_FLAG_MMAP): the process then holds only the lists its queries touch, in the
    page cache, which the OS reclaims under pressure: an index larger than RAM still serves."""
    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP if mmap else 0)
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
