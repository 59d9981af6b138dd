"""--watch: files added, edited, renamed and deleted while watching reach the index in a few
committed batches; a killed watcher loses nothing and duplicates nothing when restarted."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import VISLANG
from vislang.datasets.shapes import generate_scenes
from vislang.search import Index

pytest.importorskip("watchdog", reason="watchdog is not installed")
from vislang.search.watch import Watcher  # noqa: E402

DEADLINE = 30.0  # seconds a change may take to show; never a timing assertion otherwise


def scenes(n: int, seed: int):
    return generate_scenes(n, seed=seed, n_objects=2, image_size=64)


def write(folder: Path, n: int, seed: int, prefix: str = "s") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for scene in scenes(n, seed):
        path = folder / f"{prefix}-{scene.index:04d}.png"
        scene.image.save(path)
        out.append(path)
    return out


def eventually(check, what: str, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {deadline:g} s: {what}")


def indexed(idx: Path) -> set[str]:
    with sqlite3.connect(f"file:{idx / 'index.db'}?mode=ro", uri=True, timeout=5) as con:
        return {p for (p,) in con.execute("SELECT path FROM files")}


def embedded(idx: Path) -> bool:
    """Every content of the files table has its vector: the files table is committed first."""
    with sqlite3.connect(f"file:{idx / 'index.db'}?mode=ro", uri=True, timeout=5) as con:
        return con.execute("SELECT count(*) FROM vectors").fetchone()[0] == \
            con.execute("SELECT count(DISTINCT hash) FROM files").fetchone()[0]


def found_by_image(reader: Index, path: Path) -> bool:
    results = reader.search(image=str(path), k=1)
    return bool(results) and results[0].path == str(path) and results[0].score > 0.999


@pytest.fixture()
def watched(tmp_path):
    root, idx = tmp_path / "photos", tmp_path / "idx"
    write(root, 4, seed=1)
    index = Index.open(idx, "shapes-clip")
    index.update([root])
    calls = []
    refresh = index.refresh

    def counted(paths, *args, **kwargs):
        calls.append(len(list(paths)) if not isinstance(paths, list) else len(paths))
        return refresh(paths, *args, **kwargs)

    index.refresh = counted
    watcher = Watcher(index, [str(root)], debounce=0.3, max_delay=3.0).start()
    reader = Index.open(idx, create=False)
    yield root, idx, watcher, calls, reader
    watcher.stop()
    reader.close()
    index.close()


def test_added_edited_renamed_and_deleted_files_follow_the_folder(watched):
    root, idx, watcher, calls, reader = watched
    new = write(root / "sub", 3, seed=2, prefix="new")
    eventually(lambda: all(found_by_image(reader, p) for p in new), "new files searchable")

    edited = root / "s-0000.png"
    before = reader.store.file(str(edited)).hash
    scenes(1, seed=99)[0].image.save(edited)
    eventually(lambda: (reader.store.file(str(edited)).hash != before
                        and found_by_image(reader, edited)), "the edit indexed")

    renamed = root / "renamed.png"
    (root / "s-0001.png").rename(renamed)
    eventually(lambda: str(renamed) in indexed(idx) and str(root / "s-0001.png")
               not in indexed(idx), "the rename followed")
    assert found_by_image(reader, renamed)

    (root / "s-0002.png").unlink()
    shutil.rmtree(root / "sub")
    eventually(lambda: indexed(idx) == {str(p) for p in root.rglob("*.png")},
               "deleted files forgotten")
    assert all(r.path in indexed(idx) for r in reader.search(text="a red circle", k=20))
    assert watcher.status()["batches"] >= 4 and watcher.status()["pending"] == 0


def test_a_burst_of_200_files_is_a_few_batches(watched):
    root, idx, watcher, calls, reader = watched
    write(root, 200, seed=3, prefix="b")  # 200 file events, not one folder's
    eventually(lambda: len(indexed(idx)) == 204 and embedded(idx), "all 200 indexed",
               deadline=120)
    assert 1 <= len(calls) <= 10, calls
    assert sum(calls) >= 200  # every file named to a batch, in a few batches


def test_polling_finds_changes_where_no_events_come(tmp_path):
    root, idx = tmp_path / "photos", tmp_path / "idx"
    write(root, 2, seed=4)
    with Index.open(idx, "shapes-clip") as index:
        index.update([root])
        watcher = Watcher(index, [str(root)], poll=True, poll_interval=0.3,
                          debounce=0.2).start()
        try:
            assert watcher.status()["polling"]
            new = write(root, 3, seed=5, prefix="p")
            eventually(lambda: {str(p) for p in new} <= indexed(idx), "polled files indexed")
        finally:
            watcher.stop()


def test_a_watched_folder_that_vanishes_is_one_status_line(tmp_path):
    roots = [tmp_path / "a", tmp_path / "b"]
    write(roots[0], 2, seed=6)
    write(roots[1], 2, seed=7)
    lines = []
    with Index.open(tmp_path / "idx", "shapes-clip") as index:
        index.update(roots)
        watcher = Watcher(index, [str(r) for r in roots], debounce=0.2,
                          on_problem=lines.append).start()
        try:
            shutil.rmtree(roots[0])
            eventually(lambda: watcher.status()["gone"] == [str(roots[0])], "gone noted")
            new = write(roots[1], 2, seed=8, prefix="n")
            eventually(lambda: {str(p) for p in new} <= indexed(tmp_path / "idx"),
                       "the other folder still watched")
        finally:
            watcher.stop()
    gone = [line for line in lines if "is gone" in line]
    assert len(gone) == 1 and str(roots[0]) in gone[0]


def test_serve_watch_shows_new_files_and_what_is_pending(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vislang.serve import create_app

    root, idx = tmp_path / "photos", tmp_path / "idx"
    write(root, 3, seed=9)
    with Index.open(idx, "shapes-clip") as index:
        index.update([root])
    app = create_app(idx, watch=True, thumbnails=tmp_path / "thumbs")
    try:
        client = TestClient(app, base_url="http://127.0.0.1")
        watch = client.get("/api/status").json()["watch"]
        assert watch["folders"] == [str(root)] and "pending" in watch
        (new,) = write(root, 1, seed=10, prefix="new")

        def searchable():
            page = client.get("/api/search", params={"add": str(new), "k": 1})
            return page.status_code == 200 and page.json()["results"][0]["path"] == str(new)

        eventually(searchable, "a new file searchable through the server")
        watch = client.get("/api/status").json()["watch"]
        assert watch["batches"] >= 1 and watch["last_batch"]
    finally:
        app.state.vislang.close()


def _lines(process: subprocess.Popen, out: list[str]) -> None:
    for line in process.stdout:
        out.append(line)


def test_a_killed_watcher_restarted_loses_and_duplicates_nothing(tmp_path):
    root, idx = tmp_path / "photos", tmp_path / "idx"
    write(root, 3, seed=11)
    args = [str(VISLANG), "index", str(root), "--index", str(idx), "-m", "shapes-clip",
            "--backend", "torch", "--watch"]

    def start() -> tuple[subprocess.Popen, list[str]]:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True)
        out: list[str] = []
        threading.Thread(target=_lines, args=(process, out), daemon=True).start()
        eventually(lambda: any(line.startswith("watching") for line in out),
                   "the watcher started", deadline=300)
        return process, out

    first, _ = start()
    writer = threading.Thread(target=write, args=(root / "burst", 200, 12, "b"))
    writer.start()
    eventually(lambda: len(indexed(idx)) > 3, "a first batch committed", deadline=120)
    first.send_signal(signal.SIGKILL)
    first.wait()
    writer.join()
    with sqlite3.connect(idx / "index.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    second, _ = start()
    try:
        wanted = {str(p) for p in root.rglob("*.png")}
        assert len(wanted) == 203
        eventually(lambda: indexed(idx) == wanted and embedded(idx), "the restart caught up",
                   deadline=120)
        with sqlite3.connect(idx / "index.db") as con:
            assert con.execute("SELECT count(*) FROM files").fetchone()[0] == 203
            assert con.execute("SELECT count(*) FROM vectors").fetchone()[0] == \
                con.execute("SELECT count(DISTINCT hash) FROM files").fetchone()[0]
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.wait(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()
