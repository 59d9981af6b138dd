"""Which FAISS index a vector set gets: chosen for its count, dimension and a memory budget.

autofaiss's idea, cut to what vislang needs: estimate the memory each kind of index takes
for N vectors of D dimensions, and pick the most accurate kind that fits the budget. Best
first:

- ``flat`` (exact; up to ``exact_limit`` vectors, as without a budget: above it a query reads
  too many vectors, see ``ann``'s docstring), then ``ivf-flat`` (full vectors, exact scores;
  only which cells are scanned is approximate): both ~4 * D bytes a vector.
- ``opq-ivf-pq`` / ``ivf-pq``: each vector compressed to M one-byte codes (product
  quantisation), M from D / 4 down to 4, the largest that fits: 10-100x smaller, at the
  price of approximate scores, which ``search --rerank`` repairs from the stored vectors.
  ``auto`` takes plain IVF-PQ: OPQ's rotation costs a long training on large D and the
  re-rank already recovers what the codes lose; ask for ``opq-ivf-pq`` by name.
- ``hnsw`` is never chosen by ``auto``: it needs the full vectors *plus* a graph (more memory
  than IVF-Flat) and took ~6 minutes to build at 1M x 512 here, against ~1 for IVF-Flat.

The budget counts the index in memory plus the most the build holds beside it (the training
sample, or one batch of vectors being added), not the Python process itself (~0.3 GB).
With no budget, ``auto`` is today's rule: flat up to ``exact_limit`` vectors, IVF-Flat above.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vislang.errors import InputError

KINDS = ("auto", "flat", "hnsw", "ivf-flat", "ivf-pq", "opq-ivf-pq")
PQ_KINDS = ("ivf-pq", "opq-ivf-pq")
EXACT_LIMIT = 50_000  # flat up to here (ann's docstring says why)
ID_BYTES = 8  # every kind keeps an int64 id per vector
HNSW_M = 32  # graph links per vector (both directions on level 0: 2 * M ids of 4 bytes)
HNSW_LINK_BYTES = 2 * HNSW_M * 4 * 1.05  # + ~5% for the upper levels
PQ_NBITS = 8  # one byte per sub-quantiser code
PQ_MIN_SUBSPACE = 4  # M <= D / 4: finer sub-spaces cost training time for little recall
PQ_MIN_CODES = 4
LISTS_PER_SQRT_N = 4  # nlist = 4 * sqrt(N), as ann builds IVF-Flat
TRAIN_POINTS_PER_LIST = 64
TRAIN_MIN_POINTS_PER_LIST = 39  # below this FAISS warns that k-means is under-fed
PQ_TRAIN_MAX = 262_144  # compressed kinds train on at most this many vectors: the budget is
                        # small next to the collection, and so must the sample be
ADD_BATCH = 32_768  # vectors read from the store and added at a time
BATCH_COPIES = 3  # a batch exists ~3 times at once: SQLite's blobs, joined bytes, float array
PQ_RERANK = 100  # candidates re-scored from the stored vectors when codes give the scores

UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20,
         "MB": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30,
         "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


@dataclass(frozen=True)
class Plan:
    """One index choice: what to build and what it costs."""

    kind: str  # one of KINDS but auto
    factory: str  # the faiss.index_factory string
    nlist: int  # IVF cells (0: no IVF)
    codes: int  # PQ bytes a vector (0: full vectors)
    nbits: int  # bits per PQ code
    train_rows: int  # vectors k-means / PQ train on
    index_bytes: int  # the index in memory once built
    peak_bytes: int  # index + the larger of training sample and one add batch
    reason: str  # why this kind, for people

    @property
    def approximate_scores(self) -> bool:
        """Whether the index's scores are estimates (re-rank them from the stored vectors)."""
        return self.codes > 0

    @property
    def rerank(self) -> int:
        """Candidates a search re-scores by default: only compressed kinds need it."""
        return PQ_RERANK if self.approximate_scores else 0

    def describe(self) -> str:
        return (f"{self.kind} ({self.factory}): about {format_bytes(self.index_bytes)} in "
                f"memory, {format_bytes(self.peak_bytes)} at most while building; "
                f"{self.reason}")


def parse_memory(text: str) -> int:
    """Bytes in a size such as "2GB", "512MB", "1.5G" (powers of 1024, as RAM is sold)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text or "")
    unit = match.group(2).upper() if match else None
    if match is None or unit not in UNITS or float(match.group(1)) <= 0:
        raise InputError(f"--max-memory {text!r} is not a size; write it like 2GB or 512MB")
    return int(float(match.group(1)) * UNITS[unit])


def format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f}{unit}" if unit in ("B", "KB") else f"{count:.1f}{unit}"
        count /= 1024
    raise AssertionError("unreachable")


def choose(count: int, dim: int, kind: str = "auto", budget: int | None = None,
           exact_limit: int = EXACT_LIMIT) -> Plan:
    """The index for ``count`` vectors of ``dim`` dimensions: ``kind`` itself, or for
    ``auto`` the most accurate kind that fits ``budget`` bytes (module docstring). Raises
    InputError when nothing fits, naming the smallest budget that would."""
    if kind not in KINDS:
        raise InputError(f"--index-type {kind!r} is not one of {', '.join(KINDS)}")
    candidates = _candidates(count, dim, kind, exact_limit)
    if budget is None:
        return candidates[0]
    for plan in candidates:
        if plan.peak_bytes <= budget:
            return _with_reason(plan, count, dim, budget, kind, candidates)
    smallest = min(candidates, key=lambda p: p.peak_bytes)
    raise InputError(f"--max-memory {format_bytes(budget)} is too small for {count:,} vectors "
                     f"of {dim} dimensions: the smallest index that fits ({smallest.kind}, "
                     f"{smallest.codes or 4 * dim} bytes a vector) needs "
                     f"{format_bytes(smallest.peak_bytes)}; give --max-memory "
                     f"{_round_up(smallest.peak_bytes)} or more")


def _candidates(count: int, dim: int, kind: str, exact_limit: int) -> list[Plan]:
    """The plans ``kind`` allows, most accurate first."""
    if kind == "auto":
        full = [_flat(count, dim)] if count <= exact_limit else []
        full.append(_ivf_flat(count, dim))
        return full + [p for m in _code_sizes(dim) for p in _pq(count, dim, "ivf-pq", m)]
    if kind == "flat":
        return [_flat(count, dim)]
    if kind == "hnsw":
        return [_hnsw(count, dim)]
    if kind == "ivf-flat":
        return [_ivf_flat(count, dim)]
    return [p for m in _code_sizes(dim) for p in _pq(count, dim, kind, m)]


def _flat(count: int, dim: int) -> Plan:
    size = count * (4 * dim + ID_BYTES)
    return Plan("flat", "IDMap,Flat", 0, 0, 0, 0, size, size + _batch_bytes(count, dim),
                "exact search: every vector compared with every query")


def _hnsw(count: int, dim: int) -> Plan:
    size = int(count * (4 * dim + ID_BYTES + HNSW_LINK_BYTES))
    return Plan("hnsw", f"IDMap,HNSW{HNSW_M}", 0, 0, 0, 0, size,
                size + _batch_bytes(count, dim), "a graph walk over full vectors, exact scores")


def _ivf_flat(count: int, dim: int) -> Plan:
    nlist = nlist_for(count)
    train = min(count, nlist * TRAIN_POINTS_PER_LIST)
    size = count * (4 * dim + ID_BYTES) + nlist * 4 * dim
    return Plan("ivf-flat", f"IVF{nlist},Flat", nlist, 0, 0, train, size,
                size + max(train * 4 * dim, _batch_bytes(count, dim)),
                "full vectors in inverted lists: exact scores, a query scans a few cells")


def _pq(count: int, dim: int, kind: str, codes: int) -> list[Plan]:
    nlist = max(1, min(nlist_for(count), PQ_TRAIN_MAX // TRAIN_MIN_POINTS_PER_LIST))
    train = min(count, max(nlist * TRAIN_POINTS_PER_LIST, 256 * TRAIN_MIN_POINTS_PER_LIST),
                PQ_TRAIN_MAX)
    # A small set cannot feed 256 centroids per sub-quantiser: fewer bits a code, then.
    nbits = max(1, min(PQ_NBITS, int(math.log2(max(2, train // TRAIN_MIN_POINTS_PER_LIST)))))
    code_bytes = math.ceil(codes * nbits / 8)
    rotation = f"OPQ{codes}," if kind == "opq-ivf-pq" else ""
    size = (count * (code_bytes + ID_BYTES) + nlist * 4 * dim + (1 << nbits) * 4 * dim
            + (4 * dim * dim if rotation else 0))
    return [Plan(kind, f"{rotation}IVF{nlist},PQ{codes}x{nbits}", nlist, code_bytes, nbits,
                 train, size, size + max(train * 4 * dim, _batch_bytes(count, dim)),
                 f"{code_bytes} bytes a vector instead of {4 * dim}: approximate scores, "
                 "re-ranked from the stored vectors")]


def _code_sizes(dim: int) -> list[int]:
    """PQ code sizes M that divide ``dim``, largest (most accurate) first."""
    sizes = [m for m in range(dim // PQ_MIN_SUBSPACE, PQ_MIN_CODES - 1, -1) if dim % m == 0]
    return sizes or [1]


def nlist_for(count: int) -> int:
    """IVF cells for ``count`` vectors: 4 * sqrt(count), never so many k-means is under-fed."""
    return max(1, min(round(LISTS_PER_SQRT_N * math.sqrt(count)),
                      count // TRAIN_MIN_POINTS_PER_LIST))


def _batch_bytes(count: int, dim: int) -> int:
    return min(count, ADD_BATCH) * 4 * dim * BATCH_COPIES


def _with_reason(plan: Plan, count: int, dim: int, budget: int, kind: str,
                 candidates: list[Plan]) -> Plan:
    """``plan``, its reason saying why it won under ``budget``."""
    from dataclasses import replace

    if kind != "auto":
        why = f"asked for; fits {format_bytes(budget)}"
    else:
        better = [p for p in candidates[:candidates.index(plan)] if p.kind != plan.kind]
        bigger = f"; {better[-1].kind} would need {format_bytes(better[-1].peak_bytes)}" \
            if better else ""
        why = (f"the most accurate kind for {count:,} x {dim}-d vectors that fits "
               f"{format_bytes(budget)}{bigger}")
    return replace(plan, reason=f"{why} ({plan.reason})")


def _round_up(count: int) -> str:
    """A budget a person would type, at least ``count`` bytes."""
    if count <= 1 << 30:
        return f"{math.ceil(count / (1 << 20))}MB"
    return f"{math.ceil(count / (1 << 30) * 10) / 10:g}GB"
