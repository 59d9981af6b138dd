"""Indexes beyond memory: the chooser, the streaming build from the store, re-rank, filters
on a compressed index, the choice kept with the index, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from vislang.errors import InputError
from vislang.search import Index, ann
from vislang.search import plan as plans

N, QUERIES = 20_000, 100


def embedding_like(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors shaped like embeddings (bench/search.py's idea, smaller): clustered in a
    low-rank subspace, plus noise in every dimension and a direction they all share."""
    latent = dim // 4
    world = np.random.default_rng(4321)  # the same mixture for the set and the queries
    basis = np.linalg.qr(world.standard_normal((dim, latent + 1)))[0].T
    centres = world.standard_normal((300, latent)) * 0.7
    rng = np.random.default_rng(seed)
    z = centres[rng.integers(0, 300, n)] + rng.standard_normal((n, latent)) * 0.6
    x = z @ basis[1:] + rng.standard_normal((n, dim)) * 0.5 * 4 / np.sqrt(dim) + 3 * basis[0]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]]


def recall(found: list[list[int]], true: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, true)]))


@pytest.fixture(scope="module")
def shapes_clip():
    import vislang

    return vislang.load("shapes-clip")  # 64-d: big enough for product quantisation


@pytest.fixture(scope="module")
def large(tmp_path_factory, shapes_clip):
    """An index whose store holds N embedding-like vectors of the tiny model's dimension,
    written through the store's public methods, with an IVF-PQ index built from it in
    batches (returns the folder, ids, vectors, queries and what the build did)."""
    folder = tmp_path_factory.mktemp("large")
    clip_model = shapes_clip
    dim = clip_model.embed_dim
    vectors = embedding_like(N, dim, seed=1)
    with Index.open(folder, clip_model) as index:
        row = index.store.ensure_model(clip_model.model_key, index.model_name, dim)
        index.store.set_meta("model", index.model_name)
        for start in range(0, N, 5_000):
            index.store.put_vectors(row.id, [f"h{i}" for i in range(start, start + 5_000)],
                                    vectors[start:start + 5_000])
        ids = index.store.vector_ids(row)
        batches, whole = [], []
        store = index.store
        iterate, read = store.iter_vectors, store.vectors
        store.iter_vectors = lambda *a, **kw: (batches.append(len(b[0])) or b
                                               for b in iterate(*a, **kw))
        store.vectors = lambda model, some=None: whole.append(some is None) or read(model, some)
        plan = index.build_ann("ivf-pq")
    return {"folder": folder, "ids": ids, "vectors": vectors, "plan": plan, "batches": batches,
            "whole": whole, "queries": embedding_like(QUERIES, dim, seed=2), "model": clip_model}


def test_ivf_pq_built_in_batches_recalls_the_exact_top_10_with_rerank(large):
    plan = large["plan"]
    assert plan.kind == "ivf-pq" and plan.approximate_scores and "PQ" in plan.factory
    # streamed: several batches of at most ADD_BATCH, and all vectors never read at once
    assert sum(large["batches"]) == N and max(large["batches"]) <= plans.ADD_BATCH
    assert not any(large["whole"])
    true = exact_top(large["vectors"], large["ids"], large["queries"], 10)
    with Index.open(large["folder"], large["model"]) as index:
        reranked = [[i for i, _ in index.nearest(q, 10, rerank=50)] for q in large["queries"]]
        codes_only = [[i for i, _ in index.nearest(q, 10, rerank=0)] for q in large["queries"]]
        by_default = index.nearest(large["queries"][0], 10)
    assert recall(reranked, true) >= 0.9
    assert recall(reranked, true) > recall(codes_only, true)  # what re-rank is for
    # the default re-ranks a compressed index: its scores are the exact cosines
    exact = large["vectors"][np.searchsorted(large["ids"], [i for i, _ in by_default])]
    np.testing.assert_allclose([s for _, s in by_default], exact @ large["queries"][0],
                               atol=1e-5)


@pytest.mark.parametrize("size", [30, 2_000])
def test_filters_on_a_pq_index_return_only_allowed_ids(large, size):
    allowed = np.sort(np.random.default_rng(size).choice(large["ids"], size, replace=False))
    rows = np.searchsorted(large["ids"], allowed)
    true = exact_top(large["vectors"][rows], allowed, large["queries"][:20], 10)
    with Index.open(large["folder"], large["model"]) as index:
        found = [[i for i, _ in index.nearest(q, 10, allowed)] for q in large["queries"][:20]]
    assert all(len(f) == 10 and set(f) <= set(allowed.tolist()) for f in found)
    assert recall(found, true) >= 0.9


def test_the_choice_is_kept_with_the_index_and_rebuilt_after_changes(large, tmp_path):
    with Index.open(large["folder"], large["model"]) as index:
        assert index.ann_settings() == ("ivf-pq", None)
        assert index.stats()["ann"] == {"index_type": "ivf-pq", "max_memory": None}
        row = index.store.model(large["model"].model_key)
        index.store.put_vectors(row.id, ["new"], large["queries"][:1])  # a new version
        hit = index.nearest(large["queries"][0], 1)
        assert hit[0][1] == pytest.approx(1.0, abs=1e-5)  # the new vector, found
    assert [p.name.split("-v")[1].split("-", 1)[1] for p in large["folder"].glob("ann-*")] \
        == ["ivf-pq-any.faiss"]


def test_a_budget_too_small_names_the_smallest_that_fits_and_changes_nothing(large):
    with Index.open(large["folder"], large["model"]) as index:
        before = sorted(large["folder"].glob("ann-*"))
        count = index.store.vector_count(index.store.model(large["model"].model_key).id)
        with pytest.raises(InputError, match="too small") as error:
            index.build_ann("auto", "64KB")
        assert index.ann_settings() == ("ivf-pq", None)
        assert sorted(large["folder"].glob("ann-*")) == before
    named = str(error.value).split("give --max-memory ")[1].split()[0]
    dim = large["model"].embed_dim
    assert plans.choose(count, dim, "auto", plans.parse_memory(named)).kind == "ivf-pq"


def test_the_chooser_picks_the_most_accurate_kind_that_fits():
    gb = plans.parse_memory("2GB")
    assert gb == 2 * 2**30 and plans.parse_memory("512MB") == 512 * 2**20
    # no budget: today's rule
    assert plans.choose(20_000, 512).kind == "flat"
    assert plans.choose(1_000_000, 512).kind == "ivf-flat"
    # a budget: full vectors while they fit, then the largest PQ code that does
    assert plans.choose(200_000, 512, budget=gb).kind == "ivf-flat"
    large = plans.choose(5_000_000, 512, budget=gb)
    assert (large.kind, large.codes) == ("ivf-pq", 128) and large.peak_bytes <= gb
    assert "ivf-flat would need" in large.reason
    tighter = plans.choose(5_000_000, 512, budget=plans.parse_memory("800MB"))
    assert tighter.kind == "ivf-pq" and tighter.codes < 128
    assert plans.choose(1_000, 64, "hnsw").factory.startswith("IDMap,HNSW")
    assert plans.choose(100_000, 64, "opq-ivf-pq").factory.startswith("OPQ16,")
    with pytest.raises(InputError, match="not a size"):
        plans.parse_memory("2 parsecs")
    with pytest.raises(InputError, match="--index-type 'lsh' is not one of"):
        plans.choose(10, 4, "lsh")


@pytest.mark.parametrize("kind", ["hnsw", "opq-ivf-pq"])
def test_other_kinds_filter_too(kind):
    vectors = embedding_like(3_000, 32, seed=5)
    ids = np.arange(3_000, dtype=np.int64) * 2 + 1
    index = ann.build(vectors, ids, plan=plans.choose(3_000, 32, kind))
    queries = embedding_like(10, 32, seed=6)
    allowed = ids[::7]
    _, found = ann.search(index, queries, 10, allowed)
    assert (found >= 0).all() and set(found.ravel().tolist()) <= set(allowed.tolist())


def test_cli_index_type_rerank_and_a_budget_too_small(tmp_path):
    from test_search import unique_captions, write_gallery

    root = tmp_path / "photos"
    captions = write_gallery(root, 60, seed=515151)
    idx = tmp_path / "idx"
    built = run_cli("index", root, "--index", idx, "--model", "shapes-clip",
                    "--index-type", "ivf-pq", "--json")
    assert built.returncode == 0, built.stderr
    record = json.loads(built.stdout)
    assert record["added"] == 60 and record["ann"]["index_type"] == "ivf-pq"
    path, caption = next(iter(unique_captions(captions).items()))
    found = run_cli("search", caption, "--index", idx, "--rerank", "50", "--json", "-k", "3")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["path"] == path
    refused = run_cli("index", "--index", idx, "--max-memory", "1KB")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "smallest index that fits" in refused.stderr
    status = json.loads(run_cli("index", "--status", "--index", idx, "--json").stdout)
    assert status["ann"]["index_type"] == "ivf-pq" and status["files"] == 60
