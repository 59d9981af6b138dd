"""/api/search takes every option vislang search has, and /api/dups the near-duplicates; an
option the route does not know is a 422 naming it, never ignored."""

from __future__ import annotations

import os
import shutil
from datetime import datetime

import pytest

from serve_gallery import CAPTION_MODEL, VQA_MODEL  # skips without fastapi

from fastapi.testclient import TestClient
from vislang.datasets.shapes import generate_scenes
from vislang.search import Filters, Index
from vislang.serve import create_app

LOOPBACK = "http://127.0.0.1"
OLD, NEW = datetime(2020, 6, 1).timestamp(), datetime(2023, 6, 1).timestamp()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """photos/a: 20 PNGs from 2020; photos/b: 20 JPEGs from 2023; a byte copy of one PNG."""
    folder = tmp_path_factory.mktemp("options")
    root = folder / "photos"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for scene in generate_scenes(40, seed=424242, n_objects=2, image_size=64):
        sub, ext, when = ("a", "png", OLD) if scene.index < 20 else ("b", "jpg", NEW)
        path = root / sub / f"scene-{scene.index:04d}.{ext}"
        scene.image.save(path, quality=95) if ext == "jpg" else scene.image.save(path)
        os.utime(path, (when, when))
    shutil.copy2(root / "a" / "scene-0000.png", root / "b" / "copy-of-0000.png")
    with Index.open(folder / "index", "shapes-clip") as index:
        index.update([root])
    return root, folder / "index"


@pytest.fixture(scope="module")
def client(gallery, tmp_path_factory):
    app = create_app(gallery[1], caption_model=CAPTION_MODEL, vqa_model=VQA_MODEL,
                     thumbnails=tmp_path_factory.mktemp("thumbs"))
    yield TestClient(app, base_url=LOOPBACK)
    app.state.vislang.close()


def search(client, **params) -> list[str]:
    response = client.get("/api/search", params={"q": "a red circle", "k": 40, **params})
    assert response.status_code == 200, response.text
    return [hit["path"] for hit in response.json()["results"]]


def direct(gallery, **options) -> list[str]:
    with Index.open(gallery[1], create=False) as index:
        return [r.path for r in index.search(**{"text": "a red circle", "k": 40, **options})]


def test_under_restricts_to_a_subfolder(client, gallery):
    root = gallery[0]
    everything = search(client)
    assert any("/a/" in p for p in everything) and any("/b/" in p for p in everything)
    only_a = search(client, under=str(root / "a"))
    assert only_a and all(p.startswith(str(root / "a") + "/") for p in only_a)
    assert only_a == direct(gallery, filters=Filters(under=str(root / "a")))


def test_ext_repeated_or_as_a_comma_list(client, gallery):
    jpegs = search(client, ext="jpg")
    assert len(jpegs) == 20 and all(p.endswith(".jpg") for p in jpegs)
    both = search(client, ext="jpg,png")
    assert both == search(client, ext=["jpg", "png"]) == search(client)


def test_since_and_until_as_the_cli_reads_them(client, gallery):
    recent = search(client, since="2022")
    assert recent and all(p.endswith(".jpg") for p in recent)
    old = search(client, until="2020-06")
    assert old and not any(p.endswith(".jpg") for p in old)
    assert search(client, since="2021", until="2022") == []


def test_threshold_drops_low_scores(client):
    page = client.get("/api/search", params={"q": "a red circle", "k": 40}).json()["results"]
    cut = page[len(page) // 2]["score"]
    kept = client.get("/api/search", params={"q": "a red circle", "k": 40,
                                             "threshold": cut}).json()["results"]
    assert 0 < len(kept) < len(page) and all(h["score"] >= cut for h in kept)


def test_add_and_sub_terms_steer_the_results_as_the_cli_does(client, gallery):
    plain = search(client, k=10)
    steered = search(client, k=10, sub="0.8:red", add="blue")
    assert steered != plain
    assert steered == direct(gallery, k=10, sub=["0.8:red"], add=["blue"])
    image = str(gallery[0] / "b" / "scene-0030.jpg")
    by_image = search(client, k=5, add=f"2:{image}")
    assert by_image == direct(gallery, k=5, add=[f"2:{image}"])
    assert image in by_image[:2]
    # add terms alone are a query
    alone = client.get("/api/search", params={"add": image, "k": 3}).json()["results"]
    assert alone[0]["path"] == image


def test_an_image_term_outside_the_roots_is_refused(client, tmp_path):
    outside = tmp_path / "secret.png"
    shutil.copy(__file__, tmp_path / "x.py")
    generate_scenes(1, seed=1, n_objects=1, image_size=32)[0].image.save(outside)
    response = client.get("/api/search", params={"q": "x", "add": str(outside)})
    assert response.status_code in (403, 404) and "error" in response.json()


@pytest.mark.parametrize("url,unknown", [
    ("/api/search?q=dog&undr=/tmp", "undr"),
    ("/api/search?q=dog&foo=1&bar=2", "bar, foo"),
    ("/api/status?verbose=1", "verbose"),
    ("/api/dups?threshold=0.9&min=2", "min"),
    ("/api/similar?path=/x&under=/y", "under"),
    ("/api/thumbnail?path=/x&width=100", "width"),
])
def test_unknown_query_parameters_are_a_422_naming_them(client, url, unknown):
    response = client.get(url)
    assert response.status_code == 422, response.text
    message = response.json()["error"]
    assert f"unknown query parameter" in message and unknown in message, message


@pytest.mark.parametrize("params,words", [
    ({"since": "last tuesday"}, "YYYY"),
    ({"until": "2024-13"}, "YYYY"),
    ({"threshold": "2"}, "threshold"),
    ({"under": "/etc"}, "inside the index's folders"),
    ({"under": "photos"}, "absolute"),
    ({"ext": "j%g"}, "extension"),
    ({"add": "0.5:  "}, "empty"),
])
def test_bad_option_values_say_what_is_wrong(client, params, words):
    response = client.get("/api/search", params={"q": "a red circle", **params})
    assert response.status_code in (400, 422), response.text
    assert words in response.json()["error"], response.json()


def test_near_duplicates_come_in_groups_with_size_date_and_thumbnail(client, gallery):
    root = gallery[0]
    response = client.get("/api/dups", params={"threshold": 0.999})
    assert response.status_code == 200, response.text
    groups = response.json()["groups"]
    copies = {str(root / "a" / "scene-0000.png"), str(root / "b" / "copy-of-0000.png")}
    group = next(g for g in groups if copies <= {f["path"] for f in g["files"]})
    for f in group["files"]:
        assert f["size"] == os.path.getsize(f["path"]) and f["taken"] == pytest.approx(OLD)
        assert client.get(f["thumbnail"]).headers["content-type"] == "image/jpeg"
    with Index.open(gallery[1], create=False) as index:
        assert [[f["path"] for f in g["files"]] for g in groups] == \
            [[r.path for r in g] for g in index.duplicates(0.999)]
    assert client.get("/api/dups", params={"threshold": -0.5}).status_code == 422
