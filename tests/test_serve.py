"""vislang serve, through its HTTP API: right answers, every limit, no way out of the roots."""

from __future__ import annotations

import asyncio
import io
import math
import os
import re
import subprocess
import tempfile
import threading
import time

import pytest
from PIL import Image

from serve_gallery import (  # skips without fastapi
    CAPTION_MODEL,
    VQA_MODEL,
    Gallery,
    ServerThread,
    build,
)

from conftest import VISLANG
from fastapi.testclient import TestClient
from test_images import png_with_declared_size
from vislang import errors
from vislang.serve import Limits, create_app
from vislang.serve.work import RETRY_CAP, Busy, WorkQueue

LOOPBACK = "http://127.0.0.1"  # the loopback server refuses other Host names


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Gallery:
    return build(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def app(gallery, tmp_path_factory):
    app = create_app(gallery.index, caption_model=CAPTION_MODEL, vqa_model=VQA_MODEL,
                     thumbnails=tmp_path_factory.mktemp("thumbs"))
    yield app
    app.state.vislang.close()


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return TestClient(app, base_url=LOOPBACK)


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def paths(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["path"] for hit in response.json()["results"]]


# -- answers -------------------------------------------------------------------------------------
def test_text_search_ranks_the_described_scene_first(client, gallery):
    wanted = list(gallery.unique().items())[:8]
    hits = 0
    for path, caption in wanted:
        page = client.get("/api/search", params={"q": caption, "k": 5}).json()
        scores = [hit["score"] for hit in page["results"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        top = page["results"][0]
        hits += gallery.scenes[top["path"]].caption == caption
        # The grid's links lead to this very file.
        assert client.get(top["thumbnail"]).headers["content-type"] == "image/jpeg"
        assert client.get(top["image"]).content == open(top["path"], "rb").read()
    assert hits >= 7


def test_pages_join_up_to_one_long_list_and_say_when_they_end(client, gallery):
    query = {"q": "a red circle and a blue square"}
    whole = paths(client.get("/api/search", params={**query, "k": 15}))
    pages = [client.get("/api/search", params={**query, "k": 5, "offset": o}).json()
             for o in (0, 5, 10)]
    assert [h["path"] for p in pages for h in p["results"]] == whole
    assert all(p["more"] for p in pages)
    last = client.get("/api/search", params={**query, "k": 20, "offset": 30}).json()
    assert len(last["results"]) == len(gallery.scenes) - 30 and last["more"] is False


def test_an_uploaded_image_finds_itself_first(client, gallery):
    path = sorted(gallery.scenes)[11]
    response = client.post("/api/search/image", params={"k": 3},
                           files={"file": ("mine.png", open(path, "rb").read(), "image/png")})
    assert paths(response)[0] == path
    assert response.json()["results"][0]["score"] > 0.999 and response.json()["query"] is None


def test_more_like_this_starts_with_the_image_then_its_kind(client, gallery):
    path = sorted(gallery.scenes)[5]
    found = paths(client.get("/api/similar", params={"path": path, "k": 4}))
    assert found[0] == path
    # The next ones share at least one object (colour and shape) with it.
    kinds = lambda p: {(o.colour, o.shape) for o in gallery.scenes[p].objects}  # noqa: E731
    assert all(kinds(p) & kinds(path) for p in found[1:3])


def pointing_scenes(gallery: Gallery, n: int) -> list[tuple[str, object]]:
    """Scenes with two different objects that do not overlap: (path, the object to find)."""
    chosen = []
    for path, scene in sorted(gallery.scenes.items()):
        a, b = scene.objects
        apart = a.box[2] <= b.box[0] or b.box[2] <= a.box[0] or a.box[3] <= b.box[1] \
            or b.box[3] <= a.box[1]
        if (a.colour, a.shape) != (b.colour, b.shape) and apart:
            chosen.append((path, a))
    return chosen[:n]


def test_saliency_points_at_the_object_named(client, gallery):
    inside = 0
    scenes = pointing_scenes(gallery, 6)
    for path, target in scenes:
        out = client.post("/api/saliency", data={"path": path, "method": "dense",
                                                 "q": f"a {target.colour} {target.shape}"})
        assert out.status_code == 200, out.text
        out = out.json()
        assert (out["width"], out["height"]) == (64, 64) and out["min"] <= out["max"]
        overlay = Image.open(io.BytesIO(__import__("base64").b64decode(
            out["overlay"].split(",", 1)[1])))
        assert overlay.format == "PNG" and overlay.size == (64, 64)
        x0, y0, x1, y1 = target.box
        inside += x0 <= out["argmax"]["x"] < x1 and y0 <= out["argmax"]["y"] < y1
    assert inside >= len(scenes) - 1


@pytest.mark.parametrize("method", ["crops", "relevance"])
def test_every_saliency_method_answers_an_uploaded_image_as_png(client, gallery, method):
    path, target = pointing_scenes(gallery, 1)[0]
    response = client.post("/api/saliency", files={"file": open(path, "rb").read()},
                           data={"q": f"a {target.colour} {target.shape}", "method": method,
                                 "n_iters": "40", "format": "png"})
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (64, 64)
    x, y = map(int, response.headers["x-saliency-argmax"].split(","))
    assert 0 <= x < 64 and 0 <= y < 64
    assert float(response.headers["x-saliency-min"]) <= float(response.headers["x-saliency-max"])


def test_captions_describe_the_scene(client, gallery):
    chosen = sorted(gallery.scenes)[:4]
    right = 0
    for path in chosen:
        out = client.post("/api/caption", data={"path": path}).json()
        right += out["caption"] == gallery.scenes[path].caption
        assert out["model"] == CAPTION_MODEL
    assert right >= 3
    upload = client.post("/api/caption", files={"file": open(chosen[0], "rb").read()}).json()
    assert upload["caption"] == client.post("/api/caption", data={"path": chosen[0]}).json()[
        "caption"]


def test_questions_get_the_right_answers(client, gallery):
    asked = right = 0
    for path, scene in sorted(gallery.scenes.items())[:4]:
        for qa in [q for q in scene.qa if q.kind in ("count", "colour")][:2]:
            out = client.post("/api/ask", data={"path": path, "question": qa.question}).json()
            asked, right = asked + 1, right + (out["answer"] == qa.answer)
    assert right >= asked - 1


def test_classify_puts_the_true_label_first(client, gallery):
    path, scene = sorted(gallery.scenes.items())[2]
    truth = f"{scene.objects[0].colour} {scene.objects[0].shape}"
    others = [f"{c} {s}" for c in ("red", "green") for s in ("circle", "square")]
    labels = [truth] + [label for label in others if label not in
                        {f"{o.colour} {o.shape}" for o in scene.objects}]
    out = client.post("/api/classify", data={"path": path, "labels": ", ".join(labels)}).json()
    names = [p["label"] for p in out["predictions"]]
    assert names[0] == truth and sorted(names) == sorted(labels)
    assert abs(sum(p["prob"] for p in out["predictions"]) - 1) < 1e-4


def test_status_describes_the_index(client, gallery):
    out = client.get("/api/status").json()
    assert out["index"]["roots"] == [str(gallery.root)]
    assert out["index"]["files"] == len(gallery.scenes)
    assert out["models"] == {"search": "shapes-clip", "caption": CAPTION_MODEL,
                             "vqa": VQA_MODEL}
    assert out["limits"]["k"] == 100 and out["auth"] is False


def test_the_engine_asked_for_runs_every_model_and_the_status_names_it(gallery, tmp_path):
    """--backend/--precision reach the BLIPs too, not just the search model (auto would run
    them on OpenVINO where it is installed)."""
    from vislang.runtime import EngineSpec

    app = create_app(gallery.index, caption_model=CAPTION_MODEL, vqa_model=VQA_MODEL,
                     engine=EngineSpec("torch", "fp32", "latency"), thumbnails=tmp_path)
    client = TestClient(app, base_url=LOOPBACK)
    assert client.get("/api/status").json()["engines"] == {"search": None, "caption": None,
                                                            "vqa": None}  # nothing loaded yet
    path = sorted(gallery.scenes)[0]
    assert client.get("/api/search", params={"q": "a red circle"}).status_code == 200
    assert client.post("/api/caption", data={"path": path}).status_code == 200
    assert client.post("/api/ask", data={"path": path, "question": "how many circles are "
                                         "there?"}).status_code == 200
    assert client.get("/api/status").json()["engines"] == {
        "search": "torch/fp32", "caption": "torch/fp32", "vqa": "torch/fp32"}
    services = app.state.vislang.services
    choice = services.blip(CAPTION_MODEL).engine_choice
    assert (choice.backend, choice.precision) == ("torch", "fp32")
    app.state.vislang.close()


def test_the_openapi_document_lists_every_operation(client):
    spec = client.get("/api/openapi.json").json()
    assert {"/api/search", "/api/search/image", "/api/similar", "/api/saliency", "/api/caption",
            "/api/ask", "/api/classify", "/api/status", "/api/thumbnail",
            "/api/image"} <= set(spec["paths"])


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    # It runs only its own scripts, cannot be framed, and nothing is sniffed into HTML.
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert client.get("/api/status").headers["x-content-type-options"] == "nosniff"
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]


# -- thumbnails ----------------------------------------------------------------------------------
def test_thumbnails_are_rotated_by_exif_shrunk_and_cached(client, gallery, app):
    photo = Image.new("RGB", (400, 200), "white")
    photo.paste((255, 0, 0), (0, 0, 200, 200))  # the left half is red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: rotate 90 degrees clockwise to view
    path = gallery.root / "sideways.jpg"
    photo.save(path, exif=exif)
    response = client.get("/api/thumbnail", params={"path": str(path), "size": 128})
    thumb = Image.open(io.BytesIO(response.content))
    assert thumb.format == "JPEG" and thumb.size == (64, 128)  # upright, within 128
    assert thumb.getpixel((32, 10))[0] > 200 > thumb.getpixel((32, 10))[1]  # red on top
    assert thumb.getpixel((32, 120))[1] > 200  # white below
    cached = list(app.state.vislang.thumbnails.folder.rglob("*.jpg"))
    assert any(p.read_bytes() == response.content for p in cached)
    again = client.get("/api/thumbnail", params={"path": str(path), "size": 128})
    assert again.content == response.content
    # A changed file is a new thumbnail, not the cached one.
    Image.new("RGB", (30, 30), "blue").save(path)
    fresh = Image.open(io.BytesIO(client.get(
        "/api/thumbnail", params={"path": str(path), "size": 128}).content))
    assert fresh.size == (30, 30)
    path.unlink()


def test_an_unreadable_image_in_a_root_is_a_clear_422(client, gallery):
    bad = gallery.root / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    response = client.get("/api/thumbnail", params={"path": str(bad)})
    assert response.status_code == 422 and str(bad) in response.json()["error"]
    bad.unlink()


def release_readers(fifo) -> None:
    """Let go any thread blocked opening ``fifo`` for reading (only a server that opens it
    without checking has one), so that the test process can still exit."""
    misses = 0
    while misses < 10:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the reader's open returns
            misses = 0
        except OSError:  # ENXIO: nobody is reading it now
            misses += 1
            time.sleep(0.1)


def test_a_fifo_in_a_root_is_refused_and_the_other_images_keep_coming(gallery, tmp_path):
    import httpx

    # An indexed image replaced by a FIFO: opening it for reading would wait for a writer.
    path = sorted(gallery.scenes)[-1]
    os.replace(path, tmp_path / "kept.png")
    os.mkfifo(path)
    app = create_app(gallery.index, thumbnails=tmp_path / "thumbs")
    workers = app.state.vislang.file_queue.workers
    try:
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            for endpoint in ["image", "thumbnail"] * (workers + 1):  # more than the threads
                response = http.get(f"/api/{endpoint}", params={"path": path})
                assert response.status_code == 404, response.text
                assert "not a regular file" in response.json()["error"]
            other = sorted(gallery.scenes)[0]
            assert http.get("/api/thumbnail", params={"path": other}).status_code == 200
            assert http.get("/api/status").status_code == 200
    finally:
        release_readers(path)
        os.replace(tmp_path / "kept.png", path)
        app.state.vislang.close()


# -- nothing outside the roots -------------------------------------------------------------------
def escape_routes(gallery: Gallery) -> list[str]:
    secret = gallery.outside / "secret.png"
    (gallery.root / "link-out.png").unlink(missing_ok=True)
    (gallery.root / "link-out.png").symlink_to(secret)
    if not (gallery.root / "dir-out").exists():
        (gallery.root / "dir-out").symlink_to(gallery.outside, target_is_directory=True)
    (gallery.root / "notes.txt").write_text("not an image")
    relative = os.path.relpath(secret, os.getcwd())
    return [f"{gallery.root}/../private/secret.png",  # ..
            str(secret),  # absolute
            f"{gallery.root}/link-out.png",  # a link to a file outside
            f"{gallery.root}/dir-out/secret.png",  # a link to a folder outside
            f"{gallery.root}/dir-out/../../private/secret.png",
            relative, "../private/secret.png", "/etc/passwd",
            f"{gallery.root}/notes.txt",  # inside, but not an image
            f"{gallery.root}/../private/secret.txt",
            f"{gallery.root}/%2e%2e/private/secret.png",  # encoded twice: stays literal
            f"{gallery.root}/scene-0000.png\x00/../../private/secret.png",
            f"{gallery.root}x/../private/secret.png"]


def test_no_request_reads_a_file_outside_the_roots(client, gallery):
    secret_bytes = (gallery.outside / "secret.png").read_bytes()
    calls = [lambda p: client.get("/api/thumbnail", params={"path": p}),
             lambda p: client.get("/api/image", params={"path": p}),
             lambda p: client.get("/api/similar", params={"path": p}),
             lambda p: client.post("/api/caption", data={"path": p}),
             lambda p: client.post("/api/ask", data={"path": p, "question": "what is it?"}),
             lambda p: client.post("/api/classify", data={"path": p, "labels": "a, b"}),
             lambda p: client.post("/api/saliency", data={"path": p, "q": "a red circle"})]
    for path in escape_routes(gallery):
        for call in calls:
            response = call(path)
            assert response.status_code in (403, 404), (path, response.status_code, response.text)
            assert secret_bytes not in response.content and b"the secret" not in response.content
            assert "error" in response.json()


def test_url_encoded_traversal_in_the_raw_query_string_is_refused(client, gallery):
    root = str(gallery.root).replace("/", "%2F")
    for raw in (f"{root}%2F..%2Fprivate%2Fsecret.png", f"{root}%2F%2e%2e%2Fprivate%2Fsecret.png",
                "%2Fetc%2Fpasswd", f"{root}%2F%252e%252e%2Fprivate%2Fsecret.png",
                f"{root}/%2E%2E/%2E%2E/%2E%2E/etc/passwd"):
        for endpoint in ("thumbnail", "image"):
            response = client.get(f"/api/{endpoint}?path={raw}")
            assert response.status_code in (403, 404), (raw, response.text)


def test_a_root_that_is_a_link_still_serves_its_own_images(tmp_path, gallery):
    """Links are resolved on both sides: a root reached through a link is still inside."""
    from vislang.search import Index

    (tmp_path / "via").symlink_to(gallery.root, target_is_directory=True)
    with Index.open(tmp_path / "idx", "shapes-clip") as index:
        index.update([tmp_path / "via"])
    app = create_app(tmp_path / "idx", thumbnails=tmp_path / "thumbs")
    client = TestClient(app, base_url=LOOPBACK)
    top = client.get("/api/search", params={"q": "two red circles", "k": 1}).json()["results"][0]
    assert top["path"].startswith(str(tmp_path / "via"))
    assert client.get(top["thumbnail"]).status_code == 200
    app.state.vislang.close()


# -- limits --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tight(gallery, tmp_path_factory) -> TestClient:
    limits = Limits(upload_bytes=20_000, pixels=100 * 100, query_chars=40, question_chars=30,
                    k=10, results=30, labels=3, label_chars=12, crops=50)
    app = create_app(gallery.index, caption_model=CAPTION_MODEL, vqa_model=VQA_MODEL,
                     limits=limits, thumbnails=tmp_path_factory.mktemp("thumbs"))
    yield TestClient(app, base_url=LOOPBACK)
    app.state.vislang.close()


def expect(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message


def test_upload_size_limit(tight):
    big = png_bytes(Image.effect_noise((120, 90), 60).convert("RGB"))  # ~30 kB, 10.8k px
    assert len(big) > 20_000
    expect(tight.post("/api/search/image", files={"file": big}), 413, "20,000")
    # Without a Content-Length (chunked), the body is counted as it arrives: a body far over
    # the limit is cut off by the guard before the form parser has it all.
    body = b"".join([b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n"
                     b"\r\n", os.urandom(200_000), b"\r\n--x--\r\n"])
    chunks = (body[i:i + 4096] for i in range(0, len(body), 4096))
    expect(tight.post("/api/search/image", content=chunks,
                      headers={"content-type": "multipart/form-data; boundary=x"}), 413)


def test_pixel_limit(tight, gallery):
    expect(tight.post("/api/caption", files={"file": png_bytes(Image.new("RGB", (200, 60)))}),
           413, "12,000 pixels", "10,000")
    expect(tight.post("/api/search/image", files={"file": png_bytes(Image.new("RGB", (101, 100)))}),
           413, "pixels")
    big = gallery.root / "big.png"
    Image.new("RGB", (150, 150)).save(big)
    expect(tight.get("/api/thumbnail", params={"path": str(big)}), 413, "pixels")
    big.unlink()
    assert tight.post("/api/caption", files={"file": png_bytes(Image.new("RGB", (100, 100)))}) \
        .status_code == 200


def test_every_image_over_the_pixel_limit_is_413(client, gallery):
    # 144 MP is within Pillow's own error limit (179 MP), 900 MP beyond it: the same answer.
    for side in (12_000, 30_000):
        header_only = png_with_declared_size(side, side)  # refused before any decoding
        expect(client.post("/api/caption", files={"file": ("huge.png", header_only)}), 413,
               f"{side}x{side} = {side * side:,} pixels", "50,000,000")
        on_disk = gallery.root / f"huge-{side}.png"
        on_disk.write_bytes(header_only)
        expect(client.get("/api/thumbnail", params={"path": str(on_disk)}), 413, "pixels")
        on_disk.unlink()


def test_query_and_question_length_limits(tight, gallery):
    path = sorted(gallery.scenes)[0]
    expect(tight.get("/api/search", params={"q": "a" * 41}), 422, "41 characters", "40")
    assert tight.get("/api/search", params={"q": "a red circle " * 3}).status_code == 200
    expect(tight.get("/api/search", params={"q": "   "}), 422, "empty")
    expect(tight.post("/api/saliency", data={"path": path, "q": "b" * 41}), 422, "40")
    expect(tight.post("/api/ask", data={"path": path, "question": "why " * 10}), 422, "30")
    expect(tight.post("/api/ask", data={"path": path, "question": ""}), 422)


def test_k_and_paging_limits(tight):
    expect(tight.get("/api/search", params={"q": "red", "k": 11}), 422, "k", "10")
    expect(tight.get("/api/search", params={"q": "red", "k": 0}), 422, "k")
    expect(tight.get("/api/search", params={"q": "red", "k": "many"}), 422, "k")
    expect(tight.get("/api/search", params={"q": "red", "k": 10, "offset": 25}), 422, "30")
    expect(tight.get("/api/search", params={"q": "red", "offset": -1}), 422, "offset")
    assert len(paths(tight.get("/api/search", params={"q": "red", "k": 10, "offset": 20}))) == 10


def test_label_and_crop_limits(tight, gallery):
    path = sorted(gallery.scenes)[0]
    expect(tight.post("/api/classify", data={"path": path, "labels": "a, b, c, d"}), 422, "3")
    expect(tight.post("/api/classify", data={"path": path, "labels": "red, a very long label"}),
           422, "12")
    expect(tight.post("/api/classify", data={"path": path, "labels": "red, , blue"}), 422,
           "empty")
    expect(tight.post("/api/classify", data={"path": path, "labels": "red"}), 422, "two labels")
    expect(tight.post("/api/saliency", data={"path": path, "q": "red", "method": "crops",
                                             "n_iters": "51"}), 422, "n_iters")


def test_bad_requests_say_what_is_wrong(client, gallery):
    path = sorted(gallery.scenes)[0]
    expect(client.post("/api/caption", data={}), 422, "exactly one image")
    expect(client.post("/api/caption", data={"path": path},
                       files={"file": open(path, "rb").read()}), 422, "exactly one image")
    expect(client.post("/api/caption", files={"file": b"GIF89a nonsense"}), 422,
           "cannot read image")
    expect(client.post("/api/search/image", files={"file": b""}), 422, "empty")
    expect(client.post("/api/saliency", data={"path": path, "q": "red", "method": "magic"}),
           422, "method")
    expect(client.get("/api/thumbnail", params={"path": path, "size": 300}), 422, "size")
    expect(client.get("/api/search"), 422, "q")
    expect(client.get("/api/thumbnail", params={"path": f"{gallery.root}/missing.png"}), 404,
           "no image")


@pytest.mark.filterwarnings("ignore::vislang.captioning.TextTruncatedWarning")
def test_a_long_question_within_the_limit_is_answered_with_a_note(client, gallery):
    # 250 characters: within the server's limit of 300, beyond the shipped BLIP's text window.
    question = ("how many circles are there " * 10)[:250]
    response = client.post("/api/ask", data={"path": sorted(gallery.scenes)[0],
                                             "question": question})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["answer"] and "read its first 48" in answer["note"]  # said, not silent
    short = client.post("/api/ask", data={"path": sorted(gallery.scenes)[0],
                                          "question": "how many circles are there?"})
    assert short.status_code == 200 and short.json()["note"] is None


def test_a_model_failure_shows_no_engine_internals(app, gallery, monkeypatch):
    client = TestClient(app, base_url=LOOPBACK, raise_server_exceptions=False)
    ask = {"path": sorted(gallery.scenes)[0], "question": "what is it?"}
    engine = "Exception from src/plugins/intel_cpu/src/node.cpp:794:\n[CPU] Add node failed"

    def broken(*_):
        raise RuntimeError(engine)

    monkeypatch.setattr(app.state.vislang.services, "ask", broken)
    response = client.post("/api/ask", data=ask)
    assert response.status_code == 500
    assert "intel_cpu" not in response.text and "RuntimeError" not in response.text
    assert "internal error" in response.json()["error"]

    def refused(*_):  # the model saying what is wrong with the input: the client's move
        raise errors.InputError("the question is too long for this model:\nask a shorter one")

    monkeypatch.setattr(app.state.vislang.services, "ask", refused)
    expect(client.post("/api/ask", data=ask), 422, "too long for this model: ask a shorter one")


# -- a burst gets 503 + Retry-After, not a backlog -----------------------------------------------
def test_a_full_queue_answers_503_with_retry_after(gallery, tmp_path):
    app = create_app(gallery.index, max_pending=1, thumbnails=tmp_path)
    client = TestClient(app, base_url=LOOPBACK)
    release, started = threading.Event(), threading.Event()

    def occupy():  # a slow job holding the one place in the model queue
        asyncio.run(app.state.vislang.model_queue.run(lambda: (started.set(), release.wait())))

    worker = threading.Thread(target=occupy)
    worker.start()
    try:
        assert started.wait(10)
        response = client.get("/api/search", params={"q": "two red circles"})
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
        assert "busy" in response.json()["error"]
        # Images from the roots do not queue behind the models.
        assert client.get("/api/thumbnail", params={"path": sorted(gallery.scenes)[0]}) \
            .status_code == 200
    finally:
        release.set()
        worker.join()
    assert client.get("/api/search", params={"q": "two red circles"}).status_code == 200
    app.state.vislang.close()


class FakeClock:
    """The queue's clock; a job "takes" the seconds it advances it by."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def busy_answer(queue: WorkQueue, clock: FakeClock, history: list[float]) -> Busy:
    """The Busy a request gets once ``history`` has run and the queue is full of jobs."""
    release = threading.Event()

    async def scenario() -> Busy:
        for seconds in history:
            await queue.run(clock.advance, seconds)
        held = [asyncio.ensure_future(queue.run(release.wait)) for _ in range(queue.max_pending)]
        await asyncio.sleep(0)  # each has taken its place
        try:
            with pytest.raises(Busy) as refused:
                await queue.run(clock.advance, 1)
            return refused.value
        finally:
            release.set()
            await asyncio.gather(*held)

    try:
        return asyncio.run(scenario())
    finally:
        queue.shutdown()


def test_retry_after_is_the_work_queued_not_a_constant():
    # Quick jobs and a slow one, as searches among captions: the jobs ahead add up to
    # their number x the mean (10 s), where the median (1 s) would promise far too soon.
    history = [1, 1, 1, 37]
    for workers, max_pending in ((1, 4), (1, 8), (2, 8)):
        clock = FakeClock()
        busy = busy_answer(WorkQueue("model", workers, max_pending, clock=clock), clock, history)
        expected = math.ceil(max_pending * sum(history) / len(history) / workers)
        assert busy.retry_after == expected > 1
        assert f"try again in {expected} s" in str(busy)
    clock = FakeClock()  # an hour-long job: the guess is capped, not an hour
    assert busy_answer(WorkQueue("model", 1, 2, clock=clock), clock, [3600]).retry_after \
        == RETRY_CAP


# -- who may ask ---------------------------------------------------------------------------------
def test_a_loopback_server_refuses_other_host_names(client):
    response = client.get("/api/status", headers={"host": "attacker.example:8000"})
    assert response.status_code == 421 and "loopback" in response.json()["error"]
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/api/status", headers={"host": host}).status_code == 200


TOKEN = "s3cret-token-of-24-chars"


def test_a_token_is_needed_on_every_api_request(gallery, tmp_path):
    app = create_app(gallery.index, token=TOKEN, hosts=None, thumbnails=tmp_path)
    client = TestClient(app, base_url="http://photos.example")
    path = sorted(gallery.scenes)[0]
    for response in (client.get("/api/status"),
                     client.get("/api/thumbnail", params={"path": path}),
                     client.post("/api/caption", data={"path": path}),
                     client.get("/api/status", headers={"authorization": "Bearer wrong"})):
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert "token" in response.json()["error"]
    bearer = {"authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/status", headers=bearer).json()["auth"] is True
    assert client.get("/").status_code == 200  # the page itself holds no data
    # Opening the page with ?token= trades it for a cookie that the page's requests carry.
    browser = TestClient(app, base_url="http://photos.example")
    opened = browser.get(f"/?token={TOKEN}", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    assert "httponly" in opened.headers["set-cookie"].lower()
    assert browser.get("/api/thumbnail", params={"path": path}).status_code == 200
    app.state.vislang.close()


def test_a_wrong_token_in_the_address_leaves_the_cookie_alone(gallery, tmp_path):
    app = create_app(gallery.index, token=TOKEN, hosts=None, thumbnails=tmp_path)
    browser = TestClient(app, base_url="http://photos.example")
    assert browser.get(f"/?token={TOKEN}", follow_redirects=False).status_code == 303
    # A link with another token (sent by someone else, or mistyped) is refused ...
    wrong = browser.get("/?token=nope", follow_redirects=False)
    assert wrong.status_code == 401 and "token" in wrong.json()["error"]
    assert "set-cookie" not in wrong.headers
    # ... and the good cookie still opens the API.
    assert browser.get("/api/status").status_code == 200
    app.state.vislang.close()


def test_a_guessable_token_is_refused(gallery, tmp_path):
    with pytest.raises(errors.InputError, match="16"):
        create_app(gallery.index, token="a", hosts=None, thumbnails=tmp_path)
    result = subprocess.run([str(VISLANG), "serve", "--index", str(gallery.index), "--host",
                             "0.0.0.0", "--port", "0", "--token", "a"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "too short" in result.stderr and "at least 16" in result.stderr
    assert "secrets.token_urlsafe()" in result.stderr  # how to make a good one


# -- the command ---------------------------------------------------------------------------------
def start(*args: str) -> tuple[subprocess.Popen, list[str]]:
    # stderr to a file: a pipe nobody reads would stall the server once it filled
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen([str(VISLANG), "serve", "--port", "0", *args], text=True,
                               stdout=subprocess.PIPE, stderr=log)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("open "):
            return process, lines
    process.wait()
    log.seek(0)
    raise AssertionError(f"vislang serve did not start: {log.read()}")


def test_the_command_serves_on_the_loopback(gallery):
    import httpx

    process, lines = start("--index", str(gallery.index))
    try:
        url = re.search(r"http://\S+", lines[-1]).group(0)
        assert url.startswith("http://127.0.0.1:") and "this machine only" in lines[-1]
        assert f"{len(gallery.scenes)} files" in "".join(lines)
        page = httpx.get(f"{url}/api/search", params={"q": "two red circles", "k": 2},
                          timeout=300)  # a first search may export the text tower
        assert page.status_code == 200 and len(page.json()["results"]) == 2
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_command_runs_the_blips_on_its_backend_and_precision(gallery):
    import httpx

    process, lines = start("--index", str(gallery.index), "--caption-model", CAPTION_MODEL,
                           "--backend", "torch", "--precision", "fp32")
    try:
        url = re.search(r"http://\S+", lines[-1]).group(0)
        path = sorted(gallery.scenes)[0]
        assert httpx.post(f"{url}/api/caption", data={"path": path},
                          timeout=300).status_code == 200
        engines = httpx.get(f"{url}/api/status").json()["engines"]
        assert engines["search"] == engines["caption"] == "torch/fp32"
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_command_beyond_the_loopback_makes_and_demands_a_token(gallery):
    import httpx

    process, lines = start("--index", str(gallery.index), "--host", "0.0.0.0")
    try:
        text = "".join(lines)
        assert "reachable from other machines" in text and "Authorization: Bearer" in text
        token = re.search(r"\?token=(\S+)", text).group(1)
        port = re.search(r":(\d+)/\?token", text).group(1)
        url = f"http://127.0.0.1:{port}/api/status"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"authorization": f"Bearer {token}"}).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_command_fails_in_one_line(tmp_path):
    result = subprocess.run([str(VISLANG), "serve", "--index", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: no index at") and \
        len(result.stderr.strip().splitlines()) == 1
