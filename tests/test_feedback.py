"""Search feedback: the server records searches and the results chosen, vislang feedback
exports and erases them, vislang train learns from them and vislang eval feedback measures it.

The end-to-end test is the seed's loop on the shapes world: simulated users who look for "a
red circle on the left" always open the red circle on the left, a place the shipped
shapes-clip never learnt (its captions name no positions). After training on their clicks the
held-out searches' mean reciprocal rank must rise.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3

import pytest
from conftest import run_cli
from serve_gallery import Gallery, build  # skips without fastapi

from fastapi.testclient import TestClient  # noqa: E402
from vislang.search.feedback import FeedbackLog  # noqa: E402
from vislang.search.index import Index  # noqa: E402
from vislang.serve import Limits, create_app  # noqa: E402

LOOPBACK = "http://127.0.0.1"
TOKEN = "s3cret-token-of-24-chars"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Gallery:
    return build(tmp_path_factory.mktemp("feedback"), n=12)


@pytest.fixture
def serve(gallery, tmp_path):
    """A fresh server over the gallery, its recorded feedback cleared first."""
    apps = []

    def make(base_url: str = LOOPBACK, **options) -> TestClient:
        with Index.open(gallery.index, create=False) as index:
            FeedbackLog(index.store).clear()
        app = create_app(gallery.index, thumbnails=tmp_path, **options)
        apps.append(app)
        return TestClient(app, base_url=base_url)

    yield make
    for app in apps:
        app.state.vislang.close()


def stats(gallery) -> dict:
    with Index.open(gallery.index, create=False) as index:
        return FeedbackLog(index.store).stats()


def search(client: TestClient, q: str, k: int = 5, **headers) -> dict:
    response = client.get("/api/search", params={"q": q, "k": k}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def click(client: TestClient, page: dict, rank: int, kind: str = "opened", **headers):
    return client.post("/api/feedback", headers=headers, json={
        "search_id": page["search_id"], "id": page["results"][rank]["id"], "kind": kind})


# -- recording ---------------------------------------------------------------------------------
def test_a_search_and_its_choices_are_exported_as_a_training_record(serve, gallery):
    client = serve()
    page = search(client, "two red circles")
    assert client.get("/api/status").json()["feedback"] is True
    opened = click(client, page, 2)
    assert opened.status_code == 200 and opened.json() == {"recorded": True, "ignored": None}
    assert click(client, page, 2, "this one").json()["recorded"] is True
    assert click(client, page, 2).json()["recorded"] is True  # opened twice: one choice

    result = run_cli("feedback", "export", "--index", gallery.index)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    shown = [hit["path"] for hit in page["results"]]
    assert record["query"] == "two red circles"
    assert record["clicked"] == record["marked"] == [shown[2]]
    assert record["shown"] == shown
    assert "exported 1 searches" in result.stderr
    assert stats(gallery)["clicks"] == 2  # opened + this one


def test_a_search_with_no_choice_is_recorded_but_not_exported(serve, gallery):
    client = serve()
    search(client, "a blue square")
    found = json.loads(run_cli("feedback", "export", "--index", gallery.index, "--json").stdout)
    assert found["records"] == [] and found["searches_without_clicks"] == 1
    assert stats(gallery)["searches"] == 1


def test_clicks_on_results_gone_or_never_shown_are_ignored_and_counted(serve, gallery,
                                                                       tmp_path):
    client = serve()
    page = search(client, "a green triangle")
    assert click(client, page, 0).json()["recorded"] is True
    other = search(client, "a yellow circle", k=2)
    stranger = next(h["id"] for h in other["results"] if h["id"] not in
                    {r["id"] for r in page["results"]})
    wrong = client.post("/api/feedback", json={"search_id": page["search_id"], "id": stranger,
                                               "kind": "opened"})
    unknown = client.post("/api/feedback", json={"search_id": 99999, "id": stranger,
                                                 "kind": "opened"})
    assert wrong.json() == {"recorded": False, "ignored": "not shown in that search"}
    assert unknown.json() == {"recorded": False, "ignored": "unknown search"}

    # The file of result 1 goes away (moved out of the collection), then the user clicks it.
    gone = page["results"][1]["path"]
    moved = tmp_path / "elsewhere.png"
    moved.write_bytes(open(gone, "rb").read())
    try:
        os.remove(gone)
        with Index.open(gallery.index, create=False) as index:
            index.refresh([gone])
        late = click(client, page, 1)
        assert late.json() == {"recorded": False, "ignored": "no longer in the index"}
        ignored = stats(gallery)["ignored"]
        assert ignored == {"unknown search": 1, "not shown in that search": 1,
                           "no longer in the index": 1}
        # Export skips the gone result in the shown list too, and says how many it skipped.
        found = json.loads(run_cli("feedback", "export", "--index", gallery.index,
                                   "--json").stdout)
        assert found["missing_ids"] == 1
        assert all(gone not in r["shown"] for r in found["records"])
    finally:
        moved.replace(gone)  # back, for the other tests (torch: no engine export to wait for)
        with Index.open(gallery.index, create=False, backend="torch") as index:
            index.refresh([gone])


def test_malformed_or_oversized_posts_are_4xx_and_leave_the_database_intact(serve, gallery):
    client = serve(limits=Limits(feedback_bytes=256))
    page = search(client, "two red circles")
    good = {"search_id": page["search_id"], "id": page["results"][0]["id"], "kind": "opened"}
    for body, status, said in (
            (b"{not json", 422, "JSON"),
            (json.dumps({**good, "kind": "liked"}).encode(), 422, "kind"),
            (json.dumps({**good, "extra": 1}).encode(), 422, "extra"),
            (json.dumps({**good, "id": "'; DROP TABLE files; --"}).encode(), 422, "id"),
            (json.dumps({**good, "search_id": -1}).encode(), 422, "search_id"),
            (json.dumps([good]).encode(), 422, "request"),
            (json.dumps({**good, "pad": "x" * 300}).encode(), 413, "256 bytes")):
        response = client.post("/api/feedback", content=body,
                               headers={"content-type": "application/json"})
        assert response.status_code == status, (body[:40], response.text)
        assert said in response.json()["error"]
    assert stats(gallery)["clicks"] == 0
    with sqlite3.connect(gallery.index / "index.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == len(gallery.scenes)
    assert client.post("/api/feedback", json=good).json()["recorded"] is True


def test_feedback_off_the_loopback_needs_the_token_like_every_request(serve, gallery):
    client = serve(token=TOKEN, hosts=None, base_url="http://photos.example")
    bearer = {"authorization": f"Bearer {TOKEN}"}
    page = search(client, "two red circles", **bearer)
    refused = click(client, page, 0)
    assert refused.status_code == 401 and "token" in refused.json()["error"]
    assert stats(gallery)["clicks"] == 0
    assert click(client, page, 0, **bearer).json()["recorded"] is True


def test_no_feedback_records_nothing_and_says_so(serve, gallery):
    client = serve(feedback=False)
    page = search(client, "two red circles")
    assert page["search_id"] is None and all(h["id"] is None for h in page["results"])
    assert client.get("/api/status").json()["feedback"] is False
    refused = client.post("/api/feedback", json={"search_id": 1, "id": "ab", "kind": "opened"})
    assert refused.status_code == 404 and "--no-feedback" in refused.json()["error"]
    assert stats(gallery)["searches"] == 0


def test_clear_erases_the_searches_from_the_files_themselves(serve, gallery):
    client = serve()
    page = search(client, "a very private query about circles")
    click(client, page, 0)
    result = run_cli("feedback", "clear", "--index", gallery.index)
    assert result.returncode == 0, result.stderr
    assert "erased 1 searches and 1 clicks" in result.stdout
    assert stats(gallery) == {"searches": 0, "searches_with_clicks": 0, "clicks": 0,
                              "ignored": {"unknown search": 0, "not shown in that search": 0,
                                          "no longer in the index": 0}}
    written = b"".join(p.read_bytes() for p in gallery.index.glob("index.db*"))
    assert b"very private query" not in written


def test_an_index_that_does_not_exist_is_one_clear_error(tmp_path):
    result = run_cli("feedback", "export", "--index", tmp_path / "none")
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "no index at" in result.stderr


# -- the loop, end to end ------------------------------------------------------------------------
# The concept the users search by: the object's size, which shapes-clip's captions never name
# (so its rank among same-looking objects is near chance); CONCEPT(scene) -> the word or None.
def concept(scene) -> str | None:
    return scene.objects[0].size


def query_for(scene) -> str:
    obj = scene.objects[0]
    return f"a {concept(scene)} {obj.colour} {obj.shape}"


WORLD_SCENES, SEARCHES, SHOWN, HELD_OUT = 240, 240, 16, 0.25
# Measured with these settings (docs/training.md): held-out MRR 0.150 -> 0.317, recall@5
# 13% -> 47%; the test asks for a rise a little under that.
TRAIN = ("--freeze", "towers", "--steps", "600", "--lr", "3e-2", "--warmup", "10",
         "--feedback-batch", "32")
MARGIN = 0.12


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One-object shapes scenes, indexed with the shipped shapes-clip, and simulated users'
    searches: each looks for one scene ("a large red circle"), gets the shipped model's top
    results (scrolling down to the scene when it is not among them) and opens it."""
    from vislang.datasets.shapes import generate_scenes

    folder = tmp_path_factory.mktemp("world")
    root = folder / "photos"
    root.mkdir()
    scenes = {}
    for scene in generate_scenes(WORLD_SCENES, seed=2020, n_objects=1, image_size=64):
        path = root / f"{scene.index:04d}.png"
        scene.image.save(path)
        scenes[str(path)] = scene
    with Index.open(folder / "index", "shapes-clip", backend="torch") as index:
        index.update([root])
        log = FeedbackLog(index.store)
        targets = sorted(p for p, s in scenes.items() if concept(s))
        rng = random.Random(7)
        for _ in range(SEARCHES):
            target = rng.choice(targets)
            query = query_for(scenes[target])
            shown = [r.path for r in index.search(text=query, k=SHOWN)]
            if target not in shown:
                shown[-1] = target  # they scrolled down to it
            ids = log.content_ids(shown)
            search_id = log.record_search(query, [ids[p] for p in shown])
            assert log.record_click(search_id, ids[target], "opened") is None
    return folder / "index"


@pytest.fixture(scope="module")
def tuned(world, tmp_path_factory):
    """shapes-clip trained on the world's recorded clicks, a quarter of the searches held out."""
    out = tmp_path_factory.mktemp("tuned") / "model"
    result = run_cli("train", "--feedback-from", world, "--init", "shapes-clip", "--out", out,
                     "--feedback-held-out", str(HELD_OUT), *TRAIN, "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_training_on_recorded_clicks_raises_the_held_out_mrr(world, tuned):
    out, report = tuned
    held = json.loads((out / "feedback_heldout.json").read_text())["searches"]
    assert len(held) == SEARCHES * HELD_OUT and report["searches"] == SEARCHES - len(held)
    result = run_cli("eval", "feedback", "--index", world, "--model", "shapes-clip",
                     "--model", out, "--backend", "torch", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert "feedback_heldout.json" in found["searches"]  # the trained model's own held-out part
    before, after = found["models"]
    assert before["searches"] == after["searches"] == len(held)
    assert after["mrr"] >= before["mrr"] + MARGIN, (before, after)
    assert after["recall@5"] > before["recall@5"]


def test_indexing_with_the_new_model_keeps_the_old_vectors(world, tuned):
    out, _ = tuned
    result = run_cli("index", "--index", world, "--model", out, "--backend", "torch")
    assert result.returncode == 0, result.stderr
    with Index.open(world, create=False) as index:
        counts = [index.store.vector_count(m.id) for m in index.store.models()]
    assert counts == [WORLD_SCENES, WORLD_SCENES]  # shapes-clip's, then the tuned model's
    # Searching with the old model still works: its vectors are untouched.
    with Index.open(world, "shapes-clip", create=False, backend="torch") as index:
        found = index.search(text="a red circle", k=3)
    assert len(found) == 3 and all(r.score > 0.5 for r in found)
