"""The FAISS layer: exact and IVF search, filters, save/load, near-duplicate pairs."""

from __future__ import annotations

import sys

import faiss
import numpy as np
import pytest

from vislang.search import ann


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int = 64, clusters: int = 200, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``clusters`` centres: nearest neighbours mean something."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((clusters, dim))
    return unit(centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)))


def brute(vectors, ids, queries, k):
    """Exact top-k by numpy: the reference every index is checked against."""
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def recall(found: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, true)]))


@pytest.fixture(scope="module")
def big():
    """20k clustered vectors with sparse, shuffled ids, in an IVF index (exact_limit=1000)."""
    vectors = clustered(20_000)
    ids = np.random.default_rng(1).permutation(20_000).astype(np.int64) * 5 + 11
    index = ann.build(vectors, ids, exact_limit=1_000)
    queries = clustered(200, seed=7)
    return vectors, ids, index, queries


def test_exact_path_returns_the_true_nearest_ids():
    vectors = unit(np.random.default_rng(0).standard_normal((3_000, 32)))
    ids = np.arange(3_000, dtype=np.int64)[::-1] * 3 + 7
    queries = unit(np.random.default_rng(1).standard_normal((50, 32)))
    index = ann.build(vectors, ids)  # 3,000 <= EXACT_LIMIT
    assert faiss.try_extract_index_ivf(index) is None

    scores, found = ann.search(index, queries, 10)
    true_scores, true_ids = brute(vectors, ids, queries, 10)
    assert found.dtype == np.int64 and scores.dtype == np.float32
    assert found.shape == scores.shape == (50, 10)
    np.testing.assert_array_equal(found, true_ids)
    np.testing.assert_allclose(scores, true_scores, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first


def test_approximate_path_recall_at_10(big):
    vectors, ids, index, queries = big
    assert faiss.try_extract_index_ivf(index) is not None  # above exact_limit: IVF
    assert index.ntotal == len(vectors)
    scores, found = ann.search(index, queries, 10)
    true_scores, true_ids = brute(vectors, ids, queries, 10)
    assert recall(found, true_ids) >= 0.9
    assert np.all(np.diff(scores, axis=1) <= 0)
    # The data is hard enough for the test to mean something: one cell per query is not.
    _, one_cell = index.search(queries, 10, params=faiss.SearchParametersIVF(nprobe=1))
    assert recall(one_cell, true_ids) < 0.85
    # IVF-Flat keeps vectors whole: the scores it returns are the exact cosines.
    row_of = {int(i): r for r, i in enumerate(ids)}
    exact = [[queries[q] @ vectors[row_of[int(i)]] for i in found[q]] for q in range(len(found))]
    np.testing.assert_allclose(scores, exact, atol=1e-5)


def test_more_than_there_are_gives_minus_one_ids():
    vectors = unit(np.random.default_rng(0).standard_normal((5, 8)))
    scores, found = ann.search(ann.build(vectors, np.arange(5)), vectors[:2], 8)
    assert (found[:, :5] >= 0).all() and (found[:, 5:] == -1).all()
    assert np.isneginf(scores[:, 5:]).all()


@pytest.mark.parametrize("size", [1, 5, 300])
def test_allowed_restricts_results_even_for_a_tiny_set_with_ivf(big, size):
    vectors, ids, index, queries = big
    rows = np.random.default_rng(size).choice(len(ids), size, replace=False)
    allowed = ids[rows]
    scores, found = ann.search(index, queries[:20], 10, allowed)
    true_scores, true_ids = brute(vectors[rows], allowed, queries[:20], 10)
    hit = found >= 0
    assert set(found[hit].tolist()) <= set(allowed.tolist())
    assert hit.sum(axis=1).tolist() == [min(10, size)] * 20  # all of them when fewer than k
    np.testing.assert_array_equal(found[:, :min(10, size)], true_ids)
    np.testing.assert_allclose(scores[:, :min(10, size)], true_scores, atol=1e-5)


def test_allowed_with_a_large_set_and_unknown_ids(big):
    vectors, ids, index, queries = big
    rows = np.random.default_rng(3).choice(len(ids), 8_000, replace=False)
    allowed = np.concatenate([ids[rows], [-5, 10**12, 3]])  # ids the index does not hold
    _, found = ann.search(index, queries, 10, allowed)
    _, true_ids = brute(vectors[rows], ids[rows], queries, 10)
    assert set(found.ravel().tolist()) <= set(ids[rows].tolist())
    assert recall(found, true_ids) >= 0.9


def test_allowed_on_the_exact_index_and_empty_allowed():
    vectors = unit(np.random.default_rng(0).standard_normal((1_000, 16)))
    ids = np.arange(1_000, dtype=np.int64) + 100
    index = ann.build(vectors, ids)
    allowed = np.array([105, 900, 333, 777])
    _, found = ann.search(index, vectors[:3], 6, allowed)
    _, true_ids = brute(vectors[allowed - 100], allowed, vectors[:3], 4)
    np.testing.assert_array_equal(found[:, :4], true_ids)
    assert (found[:, 4:] == -1).all()
    scores, found = ann.search(index, vectors[:3], 6, np.array([], dtype=np.int64))
    assert (found == -1).all() and np.isneginf(scores).all()


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_save_load_round_trip(tmp_path, big, kind):
    vectors, ids, index, queries = big
    if kind == "exact":
        vectors, ids = vectors[:2_000], ids[:2_000]
        index = ann.build(vectors, ids)
    path = tmp_path / "sub" / "index.faiss"
    ann.save(index, path)
    ann.save(index, path)  # replaces the old file
    loaded = ann.load(path)
    assert loaded.ntotal == index.ntotal
    if kind == "ivf":
        assert loaded.nprobe == index.nprobe == ann.NPROBE
    np.testing.assert_array_equal(ann.search(loaded, queries, 10)[1],
                                  ann.search(index, queries, 10)[1])
    assert [p.name for p in path.parent.iterdir()] == ["index.faiss"]  # no temp files left


def test_save_killed_midway_keeps_the_old_file(tmp_path, monkeypatch):
    vectors = unit(np.random.default_rng(0).standard_normal((100, 8)))
    path = tmp_path / "index.faiss"
    ann.save(ann.build(vectors, np.arange(100)), path)
    before = path.read_bytes()

    def half_then_die(index, name):
        with open(name, "wb") as f:
            f.write(b"IxM")
        raise KeyboardInterrupt

    monkeypatch.setattr(faiss, "write_index", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        ann.save(ann.build(vectors[:10], np.arange(10)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["index.faiss"]


def test_load_of_a_broken_file_says_so(tmp_path):
    path = tmp_path / "broken.faiss"
    path.write_bytes(b"not an index")
    with pytest.raises(ValueError, match="broken.faiss"):
        ann.load(path)


def test_empty_index(tmp_path):
    index = ann.build(np.zeros((0, 16), np.float32), np.zeros(0, np.int64))
    assert index.ntotal == 0 and index.d == 16
    queries = unit(np.random.default_rng(0).standard_normal((2, 16)))
    scores, found = ann.search(index, queries, 5)
    assert found.shape == (2, 5) and (found == -1).all() and np.isneginf(scores).all()
    assert ann.neighbours(index, np.zeros((0, 16), np.float32), np.zeros(0), 0.9) == []
    ann.save(index, tmp_path / "empty.faiss")
    assert ann.load(tmp_path / "empty.faiss").ntotal == 0


def test_bad_shapes_are_refused():
    index = ann.build(unit(np.ones((3, 8))), np.arange(3))
    with pytest.raises(ValueError, match="8"):
        ann.search(index, np.ones((1, 9), np.float32), 3)
    with pytest.raises(ValueError, match="k must"):
        ann.search(index, np.ones((1, 8), np.float32), 0)
    with pytest.raises(ValueError, match="one id per vector"):
        ann.build(unit(np.ones((3, 8))), np.arange(2))


@pytest.mark.parametrize("exact_limit", [ann.EXACT_LIMIT, 100])
def test_neighbours_finds_planted_near_duplicates_and_nothing_else(exact_limit):
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal((3_000, 64)))  # random pairs: cosine well below 0.9
    originals = rng.choice(3_000, 30, replace=False)
    copies = unit(base[originals] + 0.03 * rng.standard_normal((30, 64)))  # cosine ~0.97
    third = unit(base[originals[:5]] + 0.03 * rng.standard_normal((5, 64)))  # groups of 3
    vectors = np.concatenate([base, copies, third])
    ids = np.arange(len(vectors), dtype=np.int64) * 2 + 1
    index = ann.build(vectors, ids, exact_limit=exact_limit)

    pairs = ann.neighbours(index, vectors, ids, threshold=0.9)
    expected = {(int(ids[o]), int(ids[3_000 + i])) for i, o in enumerate(originals)}
    expected |= {(int(ids[o]), int(ids[3_030 + i])) for i, o in enumerate(originals[:5])}
    expected |= {(int(ids[3_000 + i]), int(ids[3_030 + i])) for i in range(5)}
    assert {(a, b) for a, b, _ in pairs} == expected
    assert len(pairs) == len(expected)  # each pair once
    assert all(a < b and 0.9 <= s <= 1.0001 for a, b, s in pairs)
    for a, b, s in pairs:  # the score is the pair's cosine
        assert s == pytest.approx(float(vectors[(a - 1) // 2] @ vectors[(b - 1) // 2]), abs=1e-5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_memory_mapped_index_answers_alike_and_holds_its_lists_on_disk(tmp_path):
    """mmap=True leaves the inverted lists in the file: the loading process's peak memory
    stays far under the index's size, and the answers are the same."""
    import subprocess

    vectors = clustered(200_000, dim=64)
    ids = np.arange(len(vectors), dtype=np.int64)
    path = tmp_path / "ivf.faiss"
    ann.save(ann.build(vectors, ids, exact_limit=1000), path)
    queries = vectors[:5] + 0.01
    expected = ann.search(ann.load(path), queries, 10)[1]
    size_mb = path.stat().st_size / 2**20
    # The resident memory the load adds (VmRSS after minus before, in a fresh process).
    probe = ("import sys; from vislang.search import ann\n"
             "def rss(): return int(next(l for l in open('/proc/self/status') "
             "if l.startswith('VmRSS')).split()[1]) / 1024\n"
             "before = rss(); index = ann.load(sys.argv[1], mmap=sys.argv[2] == 'map')\n"
             "print(rss() - before)")
    added = {how: float(subprocess.run([sys.executable, "-c", probe, str(path), how],
                                       capture_output=True, text=True, check=True).stdout)
             for how in ("read", "map")}
    assert added["read"] > 0.7 * size_mb and added["map"] < 0.3 * size_mb, (added, size_mb)
    assert np.array_equal(ann.search(ann.load(path, mmap=True), queries, 10)[1], expected)
