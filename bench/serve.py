"""A bounded load test of ``vislang serve`` on the loopback: concurrent text searches.

**Ours**: a real ``vislang serve`` process (started here, on a free port) over an index of
generated scenes; ``--clients`` threads (default 8), each with its own keep-alive HTTP
connection, send ``GET /api/search?q=...&k=30`` (the web page's page size) back to back for
``--seconds`` (default 30), cycling through different queries. Measured: requests, errors
(anything but 200), requests/s, latency p50/p99 as a client sees it (queueing included).

**Baseline**, in the same run: the same queries through ``Index.search`` in one process, one
after another -- no HTTP, no queue, no concurrency: what one search costs by itself. The ratio
ours p50 / baseline p50 is what HTTP plus sharing the model among 8 clients adds.

The server runs the model in one worker thread (torch spreads a call over the cores), so 8
clients mostly wait in its queue: throughput is bounded by one search at a time, and p50 is
about clients x one search. The queue holds 16, so 8 clients never see 503.

    .venv/bin/python bench/serve.py                       # ViT-B/32 (random weights), 30 s
    .venv/bin/python bench/serve.py --seconds 5 --arch shapes   # a quick check of the script
    .venv/bin/python bench/serve.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

VISLANG = str(Path(sys.executable).with_name("vislang"))
QUERIES = [f"{n} {colour} {shape}" for n in ("a", "two", "three")
           for colour in ("red", "green", "blue", "yellow")
           for shape in ("circles", "squares", "triangles")]


def build_index(work: Path, arch: str, images: int, log) -> Path:
    from vislang.datasets.shapes import write_dataset
    from vislang.search import Index

    if arch == "shapes":
        model = "shapes-clip"
    else:
        from embed import write_checkpoint  # the random-weight ViT-B/32 of bench/embed.py

        model = str(write_checkpoint(work / "model", arch))
    gallery = write_dataset(work / "gallery", images, seed=7)
    log(f"indexing {images} images with {arch}")
    with Index.open(work / "index", model) as index:
        index.update([gallery / "images"])
    return work / "index"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(seconds: list[float], wall: float) -> dict:
    return {"requests": len(seconds), "per_s": len(seconds) / wall,
            "p50_ms": 1000 * percentile(seconds, 50), "p99_ms": 1000 * percentile(seconds, 99),
            "mean_ms": 1000 * statistics.fmean(seconds)}


def baseline(index_dir: Path, rounds: int) -> dict:
    """The same searches in-process, one at a time: no HTTP, no queue."""
    from vislang.search import Index

    with Index.open(index_dir) as index:
        index.search(text="warm up", k=30)  # the model and the FAISS cache load once
        seconds = []
        started = time.perf_counter()
        for i in range(rounds):
            t = time.perf_counter()
            index.search(text=QUERIES[i % len(QUERIES)], k=30)
            seconds.append(time.perf_counter() - t)
        return {**summary(seconds, time.perf_counter() - started),
                "engine": index.model("latency").backend}


def start_server(index_dir: Path, log_file: Path) -> tuple[subprocess.Popen, str]:
    # stderr to a file: a pipe nobody reads would stall the server once it filled
    with open(log_file, "w") as log:
        process = subprocess.Popen([VISLANG, "serve", "--index", str(index_dir), "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=log, text=True)
    for line in process.stdout:
        if line.startswith("open "):
            return process, re.search(r"http://\S+", line).group(0)
    process.wait()
    raise RuntimeError(f"vislang serve did not start: {log_file.read_text()}")


def load(url: str, clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    failures: dict[str, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            i = n
            while time.monotonic() < stop:
                q = QUERIES[i % len(QUERIES)]
                i += clients
                t = time.perf_counter()
                try:
                    response = http.get("/api/search", params={"q": q, "k": 30})
                    ok = response.status_code == 200 and len(response.json()["results"]) == 30
                    what = str(response.status_code)
                except httpx.HTTPError as error:
                    ok, what = False, type(error).__name__
                elapsed = time.perf_counter() - t
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        failures[what] = failures.get(what, 0) + 1

    with httpx.Client(base_url=url, timeout=60) as http:  # first request loads the FAISS cache
        http.get("/api/search", params={"q": "warm up", "k": 30}).raise_for_status()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {**summary(latencies, wall), "clients": clients, "seconds": round(wall, 1),
            "errors": sum(failures.values()), "error_kinds": failures}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    versions = {}
    for name in ("vislang", "torch", "fastapi", "uvicorn", "openvino"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg": list(os.getloadavg()),
            "python": platform.python_version(), **versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=["vit-b-32", "shapes"], default="vit-b-32")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--baseline-rounds", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with tempfile.TemporaryDirectory(prefix="vislang-bench-serve-") as tmp:
        os.environ.setdefault("VISLANG_CACHE", str(Path(tmp) / "cache"))
        index_dir = build_index(Path(tmp), args.arch, args.images, log)
        log(f"baseline: {args.baseline_rounds} in-process searches")
        base = baseline(index_dir, args.baseline_rounds)
        process, url = start_server(index_dir, Path(tmp) / "serve.log")
        try:
            log(f"ours: {args.clients} clients x {args.seconds:.0f} s against {url}")
            ours = load(url, args.clients, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
    result = {"machine": machine(), "arch": args.arch, "images": args.images,
              "baseline": base, "ours": ours,
              "p50_ratio": ours["p50_ms"] / base["p50_ms"]}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    m = result["machine"]
    print(f"\n{m['cpu']}, {m['cores']} cores, load {m['load_avg'][0]:.2f}; vislang "
          f"{m['vislang']}, torch {m['torch']}, fastapi {m['fastapi']}, uvicorn {m['uvicorn']}")
    print(f"{args.arch}, engine {base['engine']}, {args.images} images, k=30\n")
    print(f"{'':44}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    print(f"{'baseline: Index.search, 1 at a time':44}{base['requests']:>9}{base['per_s']:>8.1f}"
          f"{base['p50_ms']:>9.1f}{base['p99_ms']:>9.1f}{'-':>8}")
    label = f"ours: HTTP, {ours['clients']} clients, {ours['seconds']} s"
    print(f"{label:44}"
          f"{ours['requests']:>9}{ours['per_s']:>8.1f}{ours['p50_ms']:>9.1f}"
          f"{ours['p99_ms']:>9.1f}{ours['errors']:>8}")
    print(f"\np50 ours / baseline: {result['p50_ratio']:.1f}x (8 clients share one model "
          f"worker); throughput ours / baseline: {ours['per_s'] / base['per_s']:.2f}x")
    if ours["errors"]:
        print(f"errors: {ours['error_kinds']}")


if __name__ == "__main__":
    main()
