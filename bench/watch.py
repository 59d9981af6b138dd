"""A burst of 1,000 new files under `vislang index --watch`, and searches while it indexes.

The watcher (``vislang.search.watch.Watcher``, shapes-clip, the automatic engine) watches an
empty folder; 1,000 generated 224 px PNG scenes are then written into it as fast as the disk
takes them. Reported:

- how many ``Index.refresh`` batches the burst became (the issue: batches, not file by file),
  and the time from the last file written until every file is searchable;
- the whole burst's files/s (first write to all searchable) against a one-shot
  ``Index.update`` of the same 1,000 files in a fresh index after the burst (the baseline: what
  `vislang index` would do if run afterwards; it runs with no searches beside it);
- text-search latency from a second ``Index`` (a reader, as the server's searches are) while
  the watcher writes, against the same searches on the finished index: no reader waits on
  the writer, so the difference is CPU sharing, not locking.

    .venv/bin/python bench/watch.py            # ~2-4 min on 2 cores
    .venv/bin/python bench/watch.py --files 200
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

from scale import cpu  # the CPU line every bench prints (lscpu's model and flags)
from vislang.datasets.shapes import generate_scenes
from vislang.search import Index
from vislang.search.watch import Watcher

QUERIES = ("a red circle", "two blue squares", "a green triangle", "a yellow square")


def counts(idx: Path) -> tuple[int, int]:
    """(files, files whose content has a vector) as a reader sees them."""
    with sqlite3.connect(f"file:{idx / 'index.db'}?mode=ro", uri=True, timeout=5) as con:
        files = con.execute("SELECT count(*) FROM files").fetchone()[0]
        done = con.execute("SELECT count(*) FROM files f JOIN vectors v "
                           "ON v.hash = f.hash").fetchone()[0]
    return files, done


def searches(idx: Path, stop: threading.Event) -> list[float]:
    """Seconds per text search from a reader, until ``stop``."""
    took = []
    with Index.open(idx, create=False) as reader:
        reader.search(text=QUERIES[0], k=10)  # the model loads outside the timing
        while not stop.is_set():
            for query in QUERIES:
                start = time.perf_counter()
                reader.search(text=query, k=10)
                took.append(time.perf_counter() - start)
            time.sleep(0.05)
    return took


def run(files: int, work: Path) -> dict:
    scenes = list(generate_scenes(files, seed=4321, image_size=224))
    folder, idx = work / "photos", work / "idx"
    folder.mkdir()
    calls: list[int] = []
    with Index.open(idx, "shapes-clip") as index:
        index.update([folder])
        index.model().prepare()
        watcher = Watcher(index, [str(folder)],
                          on_batch=lambda summary, paths: calls.append(paths)).start()
        stop, latencies = threading.Event(), []
        reader = threading.Thread(target=lambda: latencies.extend(searches(idx, stop)))
        reader.start()
        started = time.perf_counter()
        for scene in scenes:
            scene.image.save(folder / f"burst-{scene.index:04d}.png")
        written = time.perf_counter()
        while counts(idx) != (files, files):
            time.sleep(0.05)
        searchable = time.perf_counter()
        stop.set()
        reader.join()
        watcher.stop()
    stop = threading.Event()
    timer = threading.Timer(3.0, stop.set)
    timer.start()
    idle = searches(idx, stop)
    fresh = work / "fresh"
    with Index.open(fresh, "shapes-clip") as index:
        index.model().prepare()
        start = time.perf_counter()
        index.update([folder])
        one_shot = time.perf_counter() - start
    burst = searchable - started
    return {"files": files, "batches": len(calls), "batch_sizes": calls,
            "write_seconds": round(written - started, 2),
            "after_last_write_seconds": round(searchable - written, 2),
            "burst_files_per_s": round(files / burst, 1),
            "one_shot_update_files_per_s": round(files / one_shot, 1),
            "one_shot_update_seconds": round(one_shot, 2),
            "search_ms_during": ms(latencies), "search_ms_idle": ms(idle)}


def ms(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    ordered = sorted(seconds)
    return {"n": len(ordered), "p50": round(1000 * statistics.median(ordered), 1),
            "p99": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vislang-bench-watch-"))
    try:
        report = run(args.files, work) | {"cpu": cpu()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"# {report['cpu']}")
    print(f"{report['files']} files written in {report['write_seconds']} s became "
          f"{report['batches']} batches {report['batch_sizes']}; all searchable "
          f"{report['after_last_write_seconds']} s after the last write")
    print(f"burst {report['burst_files_per_s']} files/s from first write to all searchable; "
          f"a one-shot update of the same files after the burst: "
          f"{report['one_shot_update_seconds']} s ({report['one_shot_update_files_per_s']} "
          "files/s, no searches running)")
    print(f"search while indexing {report['search_ms_during']}; idle {report['search_ms_idle']}")


if __name__ == "__main__":
    main()
