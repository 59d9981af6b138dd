"""Semantic search end to end with the shipped shapes-clip: right results, kept current, safe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vislang
from conftest import VISLANG, run_cli
from vislang.datasets.shapes import generate_scenes
from vislang.search import Filters, Index


@pytest.fixture(scope="module")
def model():
    return vislang.load("shapes-clip")


def write_gallery(folder: Path, n: int, seed: int, size: int = 64) -> dict[str, str]:
    """n two-object scenes as PNGs; returns path -> caption."""
    folder.mkdir(parents=True, exist_ok=True)
    captions = {}
    for scene in generate_scenes(n, seed=seed, n_objects=2, image_size=size):
        path = folder / f"scene-{scene.index:04d}.png"
        scene.image.save(path)
        captions[str(path)] = scene.caption
    return captions


def unique_captions(captions: dict[str, str]) -> dict[str, str]:
    counts: dict[str, int] = {}
    for caption in captions.values():
        counts[caption] = counts.get(caption, 0) + 1
    return {p: c for p, c in captions.items() if counts[c] == 1}


@pytest.fixture()
def gallery(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "photos"
    return root, write_gallery(root, 60, seed=515151)


def test_text_search_ranks_the_described_scene_first(tmp_path, gallery, model):
    root, captions = gallery
    with Index.open(tmp_path / "idx", model) as index:
        summary = index.update([root])
        assert summary.added == 60 and summary.embedded == 60 and not summary.skipped
        wanted = list(unique_captions(captions).items())[:8]
        hits = 0
        for path, caption in wanted:
            results = index.search(text=caption, k=5)
            assert len(results) == 5
            assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
            # The top hit must show what was asked for, even when it is another scene.
            hits += captions[results[0].path] == caption
        assert hits >= 7


def test_image_search_returns_the_image_then_its_near_duplicates(tmp_path, gallery, model):
    root, captions = gallery
    original = root / "scene-0007.png"
    Image.open(original).convert("RGB").save(root / "again.jpg", quality=85)
    Image.open(original).resize((80, 80)).save(root / "bigger.png")
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
        results = index.search(image=original, k=3)
    assert results[0].path == str(original) and results[0].score > 0.999
    assert {r.path for r in results[1:]} == {str(root / "again.jpg"), str(root / "bigger.png")}


def test_second_update_reflects_every_change_and_embeds_only_new_content(tmp_path, gallery,
                                                                         model):
    root, captions = gallery
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
        moved_from, moved_to = root / "scene-0001.png", root / "sub" / "renamed.png"
        moved_to.parent.mkdir()
        shutil.move(moved_from, moved_to)
        (root / "scene-0002.png").unlink()
        shutil.copy(root / "scene-0003.png", root / "copy-of-3.png")
        changed = root / "scene-0004.png"
        other = generate_scenes(1, seed=999, n_objects=1)[0]
        other.image.save(changed)
        os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
        new = generate_scenes(1, seed=998, n_objects=1)[0]
        new.image.save(root / "new.png")

        summary = index.update()
        assert (summary.added, summary.updated, summary.moved, summary.removed) == (2, 1, 1, 1)
        assert summary.unchanged == 60 - 3
        assert summary.embedded == 2  # the new file and the changed one; copy and move reuse
        assert index.search(text=other.caption, k=1)[0].path == str(changed)
        found = [r.path for r in index.search(image=moved_to, k=3)]
        assert str(moved_to) in found and str(moved_from) not in found
        assert str(root / "scene-0002.png") not in {r.path for r in
                                                    index.search(text=captions[str(root / "scene-0002.png")], k=60)}
        assert index.stats()["files"] == 61

        again = index.update()
        assert (again.added, again.updated, again.moved, again.removed, again.embedded) == \
            (0, 0, 0, 0, 0)


def test_unchanged_update_never_loads_the_model(tmp_path, gallery, model):
    root, _ = gallery
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
    with Index.open(tmp_path / "idx") as index:  # model by name, from the index itself
        assert index.model_name == "shapes-clip"
        summary = index.update()
        assert summary.unchanged == 60 and summary.embedded == 0
        assert index._clip is None


def test_bad_files_are_skipped_with_reasons_and_the_rest_indexed(tmp_path, gallery, model):
    root, _ = gallery
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("this is not a picture")
    good = (root / "scene-0005.png").read_bytes()
    (root / "cut.png").write_bytes(good[: len(good) // 2])
    huge = Image.new("1", (20000, 20000))  # 400 MP declared, tiny on disk
    huge.save(root / "huge.png")
    with Index.open(tmp_path / "idx", model) as index:
        summary = index.update([root])
        reasons = dict(summary.skipped)
        assert summary.embedded == 60
        assert "empty" in reasons[str(root / "empty.jpg")]
        assert "not an image" in reasons[str(root / "notes.jpg")]
        assert "truncated" in reasons[str(root / "cut.png")]
        assert "over the limit" in reasons[str(root / "huge.png")]
        # Known-bad files are listed again, not retried at the model's expense.
        assert len(index.update().skipped) == 4


def test_walk_follows_links_without_looping_and_skips_hidden_and_excluded(tmp_path, model):
    root = tmp_path / "photos"
    write_gallery(root / "a", 3, seed=1)
    outside = tmp_path / "elsewhere"
    write_gallery(outside, 2, seed=2)
    (root / "a" / "loop").symlink_to(root)  # a link back up: must not loop
    (root / "linked").symlink_to(outside)  # a link out: followed
    write_gallery(root / ".thumbnails", 2, seed=3)
    write_gallery(root / "raw", 2, seed=4)
    with Index.open(tmp_path / "idx", model) as index:
        summary = index.update([root], exclude=["raw"])
        paths = {p for p in index.store.files_under([str(root)])}
    assert summary.added == 5
    assert {os.path.basename(os.path.dirname(p)) for p in paths} == {"a", "linked"}


def test_filters_by_folder_extension_and_date(tmp_path, gallery, model):
    root, _ = gallery
    (root / "old").mkdir()
    old = root / "old" / "scene-old.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2001:02:03 04:05:06"  # DateTimeOriginal
    Image.open(root / "scene-0009.png").convert("RGB").save(old, exif=exif, quality=95)
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
        query = dict(image=root / "scene-0009.png", k=5)
        assert [r.path for r in index.search(**query, filters=Filters(under=str(root / "old")))] \
            == [str(old)]
        assert {Path(r.path).suffix for r in index.search(**query, filters=Filters(
            extensions=("jpg",)))} == {".jpg"}
        from vislang.search.query import parse_date

        early = index.search(**query, filters=Filters(until=parse_date("2001", end=True)))
        assert [r.path for r in early] == [str(old)]
        late = index.search(**query, filters=Filters(since=parse_date("2002")))
        assert str(old) not in {r.path for r in late} and len(late) == 5
        assert index.search(**query, threshold=0.999)[0].path == str(root / "scene-0009.png")


def test_added_and_subtracted_terms_steer_the_results(tmp_path, model):
    root = tmp_path / "photos"
    captions = write_gallery(root, 120, seed=626262)
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
        plain = index.search(text="a red circle", k=10)
        steered = index.search(text="a red circle", sub=["a blue square"], k=10)
        with_blue = lambda results: sum("blue square" in captions[r.path] for r in results)  # noqa: E731
        assert with_blue(steered) < with_blue(plain) or with_blue(plain) == 0
        assert all("red circle" in captions[r.path] for r in steered[:3])
        added = index.search(add=["a green triangle", "0.5:a yellow circle"], k=3)
        assert all("green triangle" in captions[r.path] for r in added)


def test_models_keep_separate_vector_sets(tmp_path, gallery, model, tiny_clip_dir):
    root, captions = gallery
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
    with Index.open(tmp_path / "idx", tiny_clip_dir, backend="torch") as index:  # a Path
        assert index.update().embedded == 60  # a new model embeds everything itself
        vectors = {m["name"]: m["vectors"] for m in index.stats()["models"]}
        assert vectors == {"shapes-clip": 60, str(tiny_clip_dir.resolve()): 60}
    with Index.open(tmp_path / "idx", "shapes-clip") as index:
        path, caption = next(iter(unique_captions(captions).items()))
        assert index.search(text=caption, k=1)[0].path == path  # still shapes-clip's vectors


def test_approximate_index_and_a_lost_cache_give_the_same_answers(tmp_path, gallery, model):
    root, captions = gallery
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
        exact = [r.path for r in index.search(image=root / "scene-0011.png", k=5)]
    for cache in (tmp_path / "idx").glob("ann-*.faiss"):
        cache.unlink()
    with Index.open(tmp_path / "idx", exact_limit=10) as index:
        approximate = index.search(image=root / "scene-0011.png", k=5)
        assert approximate[0].path == exact[0] == str(root / "scene-0011.png")
    assert list((tmp_path / "idx").glob("ann-*.faiss"))  # rebuilt and kept


def test_duplicates_are_grouped(tmp_path, gallery, model):
    root, _ = gallery
    original = root / "scene-0020.png"
    shutil.copy(original, root / "exact-copy.png")
    Image.open(original).convert("RGB").save(root / "reencoded.jpg", quality=80)
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
        groups = index.duplicates(threshold=0.97)
    ours = [g for g in groups if str(original) in {r.path for r in g}]
    assert len(ours) == 1
    assert {str(original), str(root / "exact-copy.png"), str(root / "reencoded.jpg")} <= \
        {r.path for r in ours[0]}


def test_duplicates_on_a_pq_index_match_exact_ones_and_never_read_every_vector(
        tmp_path, gallery, model):
    root, _ = gallery
    for n in (3, 8, 13):  # each a re-encoded near copy, and one byte-identical copy alone
        Image.open(root / f"scene-{n:04d}.png").convert("RGB").save(root / f"near-{n}.jpg",
                                                                    quality=85)
    shutil.copy(root / "scene-0030.png", root / "same.png")
    with Index.open(tmp_path / "idx", model) as index:
        index.update([root])
        exact = index.duplicates(threshold=0.97)
        index.build_ann("ivf-pq")
        reads = []
        read = index.store.vectors
        index.store.vectors = lambda row, ids=None: reads.append(ids) or read(row, ids)
        compressed = index.duplicates(threshold=0.97)
    as_paths = lambda groups: sorted(sorted(r.path for r in g) for g in groups)  # noqa: E731
    assert as_paths(compressed) == as_paths(exact)
    assert [str(root / "same.png"), str(root / "scene-0030.png")] in as_paths(exact)
    for n in (3, 8, 13):
        assert any(str(root / f"near-{n}.jpg") in g for g in as_paths(exact))
    assert None not in reads  # by id (a batch's partners) if at all, never the whole set
    # the cosines are the stored vectors' own, not PQ's approximations
    scores = lambda groups: sorted(r.score for g in groups for r in g)  # noqa: E731
    assert scores(compressed) == pytest.approx(scores(exact), abs=1e-5)


def test_remove_forgets_files_and_python_add_takes_single_files(tmp_path, gallery, model):
    root, _ = gallery
    with Index.open(tmp_path / "idx", model) as index:
        single = tmp_path / "single.png"
        generate_scenes(1, seed=5, n_objects=1)[0].image.save(single)
        summary = index.add([single])
        assert summary.added == 1 and summary.embedded == 1
        index.add([root])
        assert index.stats()["files"] == 61
        assert index.remove([root]) == 60
        stats = index.stats()
        assert stats["files"] == 1 and stats["roots"] == []
        assert stats["models"][0]["vectors"] == 1
        assert index.search(image=single, k=5)[0].path == str(single)


# -- the command line ----------------------------------------------------------------------------

def test_cli_index_search_json_paths_and_status(tmp_path, gallery):
    root, captions = gallery
    idx = tmp_path / "idx"
    result = run_cli("index", root, "--index", idx, "--model", "shapes-clip", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == 60
    path, caption = next(iter(unique_captions(captions).items()))
    found = run_cli("search", caption, "--index", idx, "--json", "-k", "3")
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert rows[0]["path"] == path and len(rows) == 3
    assert rows[0].keys() == {"path", "score", "caption"} and rows[0]["caption"] is None
    listed = run_cli("search", "--image", path, "--index", idx, "--paths", "-k", "2")
    assert listed.stdout.splitlines()[0] == path and len(listed.stdout.splitlines()) == 2
    status = json.loads(run_cli("index", "--status", "--index", idx, "--json").stdout)
    assert status["roots"] == [str(root)] and status["files"] == 60
    human = run_cli("search", caption, "--index", idx)
    assert "score" in human.stdout and os.path.basename(path) in human.stdout

    shutil.copy(path, root / "the-same.png")
    again = json.loads(run_cli("index", "--index", idx, "--json").stdout)
    assert again["added"] == 1 and again["embedded"] == 0 and again["unchanged"] == 60
    groups = json.loads(run_cli("dups", "--index", idx, "--json").stdout)
    ours = [{r["path"] for r in g} for g in groups if path in {r["path"] for r in g}]
    assert len(ours) == 1 and str(root / "the-same.png") in ours[0]

    # Modify, move and delete through the file system; the CLI re-index reports each change.
    paths = sorted(captions)
    os.rename(paths[1], root / "moved.png")
    os.unlink(paths[2])
    generate_scenes(1, seed=4242, n_objects=1)[0].image.save(paths[3])
    os.utime(paths[3], ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = json.loads(run_cli("index", "--index", idx, "--json").stdout)
    assert (changed["added"], changed["updated"], changed["moved"], changed["removed"],
            changed["embedded"]) == (0, 1, 1, 1, 1)
    moved = run_cli("search", "--image", root / "moved.png", "--index", idx, "--paths", "-k", "1")
    assert moved.stdout.strip() == str(root / "moved.png")


def test_cli_errors_are_one_line(tmp_path, gallery):
    root, _ = gallery
    missing = run_cli("index", tmp_path / "nope", "--index", tmp_path / "idx", "-m", "shapes-clip")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no such folder")
    empty = run_cli("search", "a red circle", "--index", tmp_path / "idx")
    assert empty.returncode == 2 and "vislang index" in empty.stderr
    run_cli("index", root, "--index", tmp_path / "idx", "-m", "shapes-clip")
    bad_date = run_cli("search", "x", "--since", "last tuesday", "--index", tmp_path / "idx")
    assert bad_date.returncode == 2 and "YYYY" in bad_date.stderr


def _vector_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as con:
            return con.execute("SELECT count(*) FROM vectors").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_index_keeps_its_work_and_a_second_writer_is_refused(tmp_path):
    root = tmp_path / "many"
    write_gallery(root, 1500, seed=717171, size=96)
    idx = tmp_path / "idx"
    args = [str(VISLANG), "index", str(root), "--index", str(idx), "-m", "shapes-clip",
            "--backend", "torch"]
    writer = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _vector_count(idx / "index.db") == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    writer.send_signal(signal.SIGSTOP)  # frozen mid-run, still holding the write lock
    second = run_cli("index", root, "--index", idx, "-m", "shapes-clip")
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert second.returncode == 5 and "being updated" in second.stderr, second.stderr

    with sqlite3.connect(idx / "index.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = _vector_count(idx / "index.db")
    assert 0 < kept < 1500, "the kill must land mid-run for this test to mean anything"

    finish = run_cli("index", "--index", idx, "--json", timeout=300)
    assert finish.returncode == 0, finish.stderr
    summary = json.loads(finish.stdout)
    assert summary["embedded"] == 1500 - kept  # every committed vector kept, the rest done
    assert _vector_count(idx / "index.db") == 1500


def test_draft_decoding_keeps_enough_pixels_for_the_model(tmp_path, model):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), np.uint8)
                    ).save(photo, quality=90)
    image = vislang.load_image(photo, min_side=model.transform.min_side)
    assert min(image.size) >= model.transform.min_side and image.size[0] < 2000
    full = model.embed_images([Image.open(photo)])[0]
    fast = model.embed_images([photo])[0]
    assert float(full @ fast) > 0.99


def test_a_model_named_by_a_relative_folder_is_kept_by_its_absolute_path(tiny_clip_dir,
                                                                          tmp_path, monkeypatch):
    """vislang index --model ./tuned, then search from another folder: the index finds it."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(tiny_clip_dir, work / "tuned")
    write_gallery(work / "photos", 3, seed=5)
    monkeypatch.chdir(work)
    with Index.open(tmp_path / "idx", model="./tuned") as index:
        index.update(["photos"])
    monkeypatch.chdir(tmp_path)
    with Index.open(tmp_path / "idx", create=False) as index:
        assert index.model_name == str(work / "tuned")
        assert len(index.search(text="a red circle", k=3)) == 3
    with Index.open(tmp_path / "idx", model="shapes-clip") as index:
        assert index.model_name == "shapes-clip"  # a name, not a folder: kept as given


def test_drop_model_removes_an_old_vector_set_and_refuses_the_current_one(tiny_clip_dir,
                                                                          tmp_path):
    """After vislang index --model NEW, the old model's vectors go with --drop-model."""
    write_gallery(tmp_path / "photos", 4, seed=6)
    idx = tmp_path / "idx"
    for model in ("shapes-clip", str(tiny_clip_dir)):
        result = run_cli("index", tmp_path / "photos", "--index", idx, "--model", model)
        assert result.returncode == 0, result.stderr
    with Index.open(idx, "shapes-clip", create=False) as index:
        index.search(text="a red circle", k=1)  # builds shapes-clip's vector index file
    assert list(idx.glob("ann-1-*.faiss"))
    refused = run_cli("index", "--index", idx, "--drop-model", str(tiny_clip_dir))
    assert refused.returncode == 2 and "is the index's current model" in refused.stderr
    missing = run_cli("index", "--index", idx, "--drop-model", "no-such-model")
    assert missing.returncode == 2 and "holds no vectors of 'no-such-model'" in missing.stderr
    dropped = run_cli("index", "--index", idx, "--drop-model", "shapes-clip", "--json")
    assert dropped.returncode == 0, dropped.stderr
    assert json.loads(dropped.stdout) == {"dropped": "shapes-clip", "vectors": 4}
    with Index.open(idx, create=False) as index:
        assert [m.name for m in index.store.models()] == [str(tiny_clip_dir)]
        assert len(index.search(text="a red circle", k=4)) == 4  # the current model still works
    assert not list(idx.glob("ann-1-*.faiss"))
