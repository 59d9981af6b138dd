"""Captions in the search index: vislang caption --index stores them, search blends their words."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest

import vislang
from conftest import run_cli
from test_search import write_gallery
from vislang.captioning import caption_index
from vislang.datasets.shapes import objects_named
from vislang.models.blip import load_blip
from vislang.search import Filters, Index
from vislang.search.keywords import CAPTION_WEIGHT, SPREAD_RANK, query_words


@pytest.fixture(scope="module")
def model():
    return vislang.load("shapes-clip")


def test_caption_index_captions_each_image_once_and_search_shows_them(tmp_path):
    root = tmp_path / "photos"
    truth = write_gallery(root, 24, seed=616161)
    idx = tmp_path / "idx"
    assert run_cli("index", root, "-i", idx, "-m", "shapes-clip").returncode == 0
    first = run_cli("caption", "--index", idx, "-m", "shapes-blip-caption", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["captioned"] == 24
    # Incremental: only a new image gets captioned on the next run.
    write_gallery(tmp_path / "more", 1, seed=717171)
    os.rename(tmp_path / "more" / "scene-0000.png", root / "new.png")
    assert run_cli("index", "-i", idx).returncode == 0
    second = json.loads(run_cli("caption", "--index", idx, "-m", "shapes-blip-caption",
                                "--json").stdout)
    assert second["captioned"] == 1 and second["captions"] == 25

    rows = json.loads(run_cli("search", "a red circle", "-i", idx, "--json", "-k", "25").stdout)
    assert len(rows) == 25 and all(r["caption"] for r in rows)
    # The stored captions are the shipped captioner's, and they are right.
    right = [objects_named(r["caption"]) == objects_named(truth[r["path"]])
             for r in rows if r["path"] in truth]
    assert sum(right) >= 0.85 * len(right)
    human = run_cli("search", "a red circle", "-i", idx, "-k", "3")
    assert "caption" in human.stdout and rows[0]["caption"][:20] in human.stdout


def test_deleted_images_take_their_captions_with_them(tmp_path, model):
    root = tmp_path / "photos"
    write_gallery(root, 6, seed=818181)
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
        caption_index(index, load_blip("shapes-blip-caption"))
        assert index.store.caption_count() == 6
        os.unlink(root / "scene-0002.png")
        index.update()
        assert index.store.caption_count() == 5


def _brute_force(index: Index, model, text: str, under: str | None = None):
    """Every file's blended score computed the slow, obvious way (keywords module docstring)."""
    query = model.embed_texts([text])[0]
    words = query_words(text)
    cosines, covered = {}, {}
    for path, content in index.store.db.execute("SELECT path, hash FROM files"):
        if under and not path.startswith(under):
            continue
        cosines[path] = float(index.store.vector_for_hash(index._model_row(), content) @ query)
        caption = index.store.captions_of([content]).get(content, "")
        caption_words = {w.rstrip("s") for w in query_words(caption)}  # plurals: the stemmer's
        covered[path] = sum(w.rstrip("s") in caption_words for w in words) / len(words)
    ordered = sorted(cosines.values(), reverse=True)
    spread = ordered[0] - ordered[min(SPREAD_RANK, len(ordered)) - 1]
    scores = {p: c + CAPTION_WEIGHT * spread * covered[p] for p, c in cosines.items()}
    return sorted(scores.items(), key=lambda s: -s[1])


def test_caption_words_lift_an_image_and_the_blend_is_exact(tmp_path, model):
    root = tmp_path / "photos"
    write_gallery(root / "a", 60, seed=919191)
    write_gallery(root / "b", 60, seed=929292)
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
        hashes = dict(index.store.db.execute("SELECT path, hash FROM files ORDER BY path"))
        paths = sorted(hashes)
        # Captions as a captioner that knows more than the embedding would write them.
        named = {paths[7]: "grandma with her red circle", paths[70]: "grandma in the garden",
                 paths[71]: "a red circle"}
        index.store.put_captions("test-captioner", [(hashes[p], c) for p, c in named.items()])

        def rank(path: str, text: str, weight: float = CAPTION_WEIGHT) -> int:
            found = [r.path for r in index.search(text=text, k=120, caption_weight=weight)]
            return found.index(path)

        # A word the model cannot see: the captioned images rise, and one reaches the top 3.
        for path in (paths[7], paths[70]):
            assert rank(path, "grandma") < rank(path, "grandma", weight=0)
        assert min(rank(paths[7], "grandma"), rank(paths[70], "grandma")) < 3
        shown = index.search(text="grandma's red circle", k=120)
        assert next(r for r in shown if r.path == paths[7]).caption == named[paths[7]]

        for text, under in [("grandma's red circle", None), ("red circles", None),
                            ("a grandma garden", str(root / "b"))]:
            filters = Filters(under=under) if under else None
            found = index.search(text=text, k=8, filters=filters)
            expected = _brute_force(index, model, text, under)[:8]
            assert [r.path for r in found] == [p for p, _ in expected]
            assert np.allclose([r.score for r in found], [s for _, s in expected], atol=1e-5)


def test_query_words_drop_stop_words_and_repeats():
    assert query_words("A photo of THE dog and the dog's ball") == ["dog", "ball"]


def test_caption_index_errors_are_one_line(tmp_path):
    missing = run_cli("caption", "--index", tmp_path / "nowhere", "-m", "shapes-blip-caption")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no index at")
    assert missing.stderr.count("\n") == 1
    nothing = run_cli("caption", "-m", "shapes-blip-caption")
    assert nothing.returncode == 2 and "no images given" in nothing.stderr
    vqa = tmp_path / "photos"
    write_gallery(vqa, 2, seed=1)
    assert run_cli("index", vqa, "-i", tmp_path / "idx", "-m", "shapes-clip").returncode == 0
    wrong = run_cli("caption", "--index", tmp_path / "idx", "-m", "shapes-blip-vqa")
    assert wrong.returncode != 0 and "question-answering" in wrong.stderr
    assert wrong.stderr.count("\n") == 1
