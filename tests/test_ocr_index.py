"""Text read in indexed images: vislang index --ocr, ocr --index, search words and --text."""

from __future__ import annotations

import json
import sqlite3

import pytest

pytest.importorskip("rapidocr", reason="the OCR extra is not installed")

from conftest import run_cli  # noqa: E402
from test_search import write_gallery  # noqa: E402
from vislang.datasets.text_scenes import WORDS, generate_text_scene  # noqa: E402
from vislang.search import Index  # noqa: E402

N_TEXT, N_SHAPES = 24, 16
SIZE = (480, 360)


def text_scene(path, word: str, index: int) -> None:
    generate_text_scene(4242, index, size=SIZE, texts=[word.upper()],
                        text_height=(28, 48)).image.save(path)


def gallery(root, n_text: int = N_TEXT, n_shapes: int = N_SHAPES) -> dict[str, str]:
    """``n_text`` scenes each printing one word no other scene prints, among shapes scenes;
    returns word -> path."""
    write_gallery(root, n_shapes, seed=919191)
    words = {}
    for i, word in enumerate([w for w in WORDS if len(w) >= 4][:n_text]):
        path = root / f"text-{i:03d}.png"
        text_scene(path, word, i)
        words[word] = str(path)
    return words


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ocr-index")
    root = folder / "photos"
    words = gallery(root)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = run_cli("index", root, "-i", folder / "idx", "-m", "shapes-clip", "--ocr", "--json")
    assert out.returncode == 0, out.stderr
    return folder / "idx", words, json.loads(out.stdout)


def search(idx, *args) -> list[dict]:
    out = run_cli("search", *args, "-i", idx, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_index_ocr_reads_every_image_and_skips_the_corrupt_one(indexed):
    _, words, summary = indexed
    assert summary["ocr"]["read"] == N_TEXT + N_SHAPES
    assert summary["ocr"]["with_text"] >= N_TEXT - 1
    skipped = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in summary["skipped"]}
    assert "broken.jpg" in skipped and skipped["broken.jpg"]


def test_a_printed_word_ranks_its_image_first(indexed):
    idx, words, _ = indexed
    with Index.open(idx, create=False) as index:
        firsts = [index.search(text=word, k=1)[0].path == path for word, path in words.items()]
    assert sum(firsts) / len(firsts) >= 0.9, firsts


def test_json_carries_the_matched_lines_and_their_boxes(indexed):
    idx, words, _ = indexed
    word, path = next(iter(words.items()))
    top = search(idx, word, "-k", "3")[0]
    assert top["path"] == path
    line = top["ocr"][0]
    assert word in line["text"].lower()
    assert len(line["box"]) == 4 and all(len(p) == 2 for p in line["box"])
    assert line["words"][0]["text"].lower() == word
    x0 = min(p[0] for p in line["box"])
    assert min(p[0] for p in line["words"][0]["box"]) >= x0 - 1


def test_text_filters_to_images_holding_the_phrase(indexed):
    idx, words, _ = indexed
    word, path = list(words.items())[3]
    rows = search(idx, "a red circle", "--text", word.upper(), "-k", "10")
    assert [r["path"] for r in rows] == [path]
    assert rows[0]["ocr"][0]["words"][0]["text"].lower() == word
    assert search(idx, "a red circle", "--text", "no such words here") == []


def test_an_edited_image_is_read_again_and_no_other(tmp_path):
    root = tmp_path / "photos"
    words = gallery(root, n_text=3, n_shapes=2)
    idx = tmp_path / "idx"
    first = json.loads(run_cli("index", root, "-i", idx, "-m", "shapes-clip", "--ocr",
                               "--json").stdout)
    assert first["ocr"]["read"] == 5
    again = json.loads(run_cli("index", "-i", idx, "--ocr", "--json").stdout)
    assert again["ocr"]["read"] == 0 and again["ocr"]["unchanged"] == 5
    edited = words["closed"]
    text_scene(edited, "bridge", 1)
    third = json.loads(run_cli("index", "-i", idx, "--ocr", "--json").stdout)
    assert third["updated"] == 1 and third["ocr"]["read"] == 1
    assert search(idx, "x", "--text", "bridge")[0]["path"] == edited
    assert search(idx, "x", "--text", "closed") == []
    # vislang ocr --index: nothing left to read
    out = json.loads(run_cli("ocr", "--index", idx, "--json").stdout)
    assert out["read"] == 0 and out["texts"] == 5


def test_ocr_index_reads_an_existing_index_and_records_a_file_gone_bad(tmp_path):
    root = tmp_path / "photos"
    words = gallery(root, n_text=2, n_shapes=1)
    idx = tmp_path / "idx"
    assert run_cli("index", root, "-i", idx, "-m", "shapes-clip").returncode == 0
    bad = words["open"]
    with open(bad, "r+b") as f:  # corrupted after indexing: the stored hash is the old one
        f.write(b"garbage!" * 8)
    out = run_cli("ocr", "--index", idx, "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["read"] == 2
    assert [s["path"] for s in summary["skipped"]] == [bad] and summary["skipped"][0]["reason"]
    human = run_cli("ocr", "--index", idx)
    assert "read text in 0 images" in human.stdout


def test_an_index_from_before_ocr_opens_and_gains_the_table(tmp_path):
    root = tmp_path / "photos"
    words = gallery(root, n_text=2, n_shapes=2)
    idx = tmp_path / "idx"
    with Index.open(idx, "shapes-clip") as index:
        index.update([root])
    db = sqlite3.connect(idx / "index.db")
    for name in ("ocr_insert", "ocr_delete", "ocr_update"):
        db.execute(f"DROP TRIGGER {name}")
    db.execute("DROP TABLE ocr_fts")
    db.execute("DROP TABLE ocr")
    db.commit()
    db.close()
    assert search(idx, "a red circle", "-k", "2")  # opens, searches, as before
    out = run_cli("ocr", "--index", idx, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["read"] == 4
    word, path = next(iter(words.items()))
    assert search(idx, word, "-k", "1")[0]["path"] == path


def test_api_search_takes_a_text_filter_and_returns_boxes(indexed, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vislang.serve import create_app

    idx, words, _ = indexed
    word, path = list(words.items())[5]
    app = create_app(idx, thumbnails=tmp_path / "thumbs")
    try:
        client = TestClient(app, base_url="http://127.0.0.1")
        page = client.get("/api/search", params={"q": word, "k": 3}).json()
        assert page["results"][0]["path"] == path
        assert page["results"][0]["ocr"][0]["box"]
        filtered = client.get("/api/search", params={"q": "a blue square", "text": word}).json()
        assert [r["path"] for r in filtered["results"]] == [path]
        assert filtered["results"][0]["ocr"][0]["words"][0]["text"].lower() == word
        assert client.get("/api/search", params={"q": "x", "text": " "}).status_code == 422
    finally:
        app.state.vislang.close()
