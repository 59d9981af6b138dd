"""Ray vs in-process throughput of ``vislang embed``; or, with --vectors, a large index.

    python bench/scale.py [--images 2000] [--model shapes-clip|vit-b-32] [--workers 1]
                          [--cpus-per-worker 1] [--size 224]
    python bench/scale.py --vectors 1000000 [--max-memory 2GB] [--index-type auto]

**Large index** (--vectors N): N embedding-like 512-d vectors (bench/search.py's generator,
drawn 100k at a time) are written into an index's SQLite store through its public methods
(``ensure_model``, ``put_vectors``: what ``Index.import_embeddings`` does with a shard's rows
once it has checked their files; the bench writes no Parquet and no image files). A child
process then builds the vector index as ``vislang index --max-memory`` does
(``Index.build_ann``: trained on a sample, filled from the store in batches); its peak RSS
is the child's own (``os.wait4``). Queries are fresh draws from the same mixture: ours is
``Index.nearest`` (one query a call, re-ranked from the stored vectors), the baseline exact
search over every stored vector (streamed from the store, batched over the queries: its
per-query cost is the batch's time over the queries), which is also the ground truth for
recall@10. The vectors are stored under a stand-in model (a tiny CLIP written to the temp
folder): the bench never embeds a query, so the model's own dimension does not matter.

**Ray overhead** (default): writes generated shapes scenes (JPEG, --size pixels), loads the
model once (``--model vit-b-32`` writes a real-size CLIP with random weights), starts a local
Ray (its start-up is printed apart, not counted), and times ``vislang embed`` in-process and
on that Ray (decode tasks + encoder actors) on ``--images`` images and on a small set of two
batches. The difference between the two runs is each runner's steady-state throughput; what
remains of the whole run is its fixed cost (for Ray: starting the encoder actors, which load
their own copies of the model). It prints both, the steady-state ratio, and the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import subprocess
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/search.py, bench/encode.py

FILL_CHUNK = 100_000  # vectors generated and stored at a time
SMALL = 2  # batches in the small run that separates fixed cost from steady state


def cpu() -> str:
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu unavailable"
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16",
                          "amx_int8") if f in flags]
    return (f"{fields.get('Model name', '?').strip()}, {os.cpu_count()} CPUs, "
            f"flags: {' '.join(wanted) or 'none of avx2/avx512/amx'}")


def large_index(args) -> None:
    """The --vectors benchmark (module docstring)."""
    import numpy as np

    from search import embeddings

    from vislang.models.tiny import tiny_clip
    from vislang.search import Index

    tmp = Path(tempfile.mkdtemp(prefix="vislang-bench-large-", dir=args.tmp))
    model = tiny_clip(tmp / "stand-in")
    started = time.perf_counter()
    with Index.open(tmp / "index", model) as index:
        row = index.store.ensure_model(index.model().model_key, str(model), args.dim)
        index.store.set_meta("model", str(model))
        for start in range(0, args.vectors, FILL_CHUNK):
            count = min(FILL_CHUNK, args.vectors - start)
            vectors = embeddings(count, args.dim, seed=1_000 + start // FILL_CHUNK)
            index.store.put_vectors(row.id, [f"v{i}" for i in range(start, start + count)],
                                    vectors)
    print(f"stored {args.vectors:,} x {args.dim}-d vectors in {time.perf_counter() - started:.0f}"
          f" s ({(tmp / 'index' / 'index.db').stat().st_size / 2**30:.2f} GB)", flush=True)
    child = subprocess.Popen([sys.executable, __file__, "--build-child", str(tmp / "index"),
                              "--index-type", args.index_type, "--max-memory", args.max_memory],
                             stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"the build failed: {out}")
    build = json.loads(out)
    print(f"built {build['plan']} in {build['seconds']:.0f} s, peak RSS of the build "
          f"{usage.ru_maxrss / 2**20:.2f} GB (budget {args.max_memory})", flush=True)
    queries = embeddings(args.queries, args.dim, seed=999)
    with Index.open(tmp / "index", model) as index:
        started = time.perf_counter()
        true = exact_top(index, queries, 10)
        exact_ms = (time.perf_counter() - started) / len(queries) * 1e3
        index.nearest(queries[0], 10, rerank=args.rerank)  # loads the index file
        seconds, found = [], []
        for q in queries:
            t = time.perf_counter()
            found.append([i for i, _ in index.nearest(q, 10, rerank=args.rerank)])
            seconds.append(time.perf_counter() - t)
    recall = np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, true)])
    p50 = float(np.percentile(seconds, 50)) * 1e3
    print(f"recall@10 {recall:.3f} (rerank {args.rerank}); query p50 {p50:.1f} ms, p99 "
          f"{np.percentile(seconds, 99) * 1e3:.1f} ms; exact search (batched) {exact_ms:.1f} ms "
          f"a query: {exact_ms / p50:.1f}x slower than ours")
    print(f"cpu: {cpu()}")
    shutil.rmtree(tmp)


def exact_top(index, queries, k: int):
    """The exact top ``k`` ids for each query, streaming every stored vector once."""
    import numpy as np

    row = index.store.model(index.model().model_key)
    best_ids = np.full((len(queries), 0), -1, np.int64)
    best = np.full((len(queries), 0), -np.inf, np.float32)
    for ids, vectors in index.store.iter_vectors(row):
        scores = np.concatenate([best, queries @ vectors.T], axis=1)
        every = np.concatenate([best_ids, np.broadcast_to(ids, (len(queries), len(ids)))], 1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best, best_ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(every, keep, 1)
    return best_ids


def build_child(folder: str, index_type: str, max_memory: str) -> None:
    """Build the index in this (child) process, so its peak RSS is the build's alone."""
    from vislang.search import Index

    started = time.perf_counter()
    with Index.open(folder, create=False) as index:
        plan = index.build_ann(index_type, max_memory)
    print(json.dumps({"seconds": time.perf_counter() - started, "plan": plan.describe()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", default="shapes-clip",
                        help="a model name or folder, or vit-b-32 / vit-b-16 (random weights)")
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images a model call (default: vislang embed's own choice)")
    parser.add_argument("--vectors", type=int, help="benchmark a large index of this many")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--max-memory", default="2GB")
    parser.add_argument("--index-type", default="auto")
    parser.add_argument("--rerank", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--tmp", default=None, help="where the index is written")
    parser.add_argument("--build-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_child:
        return build_child(args.build_child, args.index_type, args.max_memory)
    if args.vectors:
        return large_index(args)

    ray_overhead(args)


def ray_overhead(args) -> None:
    """The Ray benchmark (module docstring): each runner embeds ``--images`` and, apart, a
    small set (``SMALL`` batches); the difference is the steady state, the rest its fixed
    cost (for Ray: starting the encoder actors and loading their model)."""
    import vislang
    from vislang.datasets.shapes import generate_scenes
    from vislang.embed import embed
    from vislang.embed.distributed import connect
    from vislang.embed.pipeline import RAY_BLOCK
    from vislang.runtime import EngineSpec

    small = SMALL * (args.batch_size or RAY_BLOCK)  # two Ray blocks
    if args.images < 4 * small:  # else the difference of two runs is mostly noise
        raise SystemExit(f"--images {args.images} is too few to tell steady state from fixed "
                         f"cost: give at least {4 * small}")
    with tempfile.TemporaryDirectory(prefix="vislang-bench-scale-") as tmp:
        name = args.model
        if name in ("vit-b-32", "vit-b-16"):  # real-size towers, random weights (offline)
            from encode import write_checkpoint

            name = str(write_checkpoint(Path(tmp, name), name))
        model = vislang.load(name, engine=EngineSpec("torch", "fp32"))
        model.prepare()
        folders = {}
        for count in (args.images, small):
            folders[count] = root = Path(tmp, f"images-{count}")
            root.mkdir()
            for scene in generate_scenes(count, 7, image_size=args.size):
                scene.image.save(root / f"scene-{scene.index:05d}.jpg", quality=90)
        started = time.perf_counter()
        connect("local")
        print(f"ray start-up: {time.perf_counter() - started:.1f} s (not counted below)")

        def timed(runner: str, count: int) -> float:
            started = time.perf_counter()
            summary = embed([folders[count]], Path(tmp, f"{runner}-{count}-{started}"), model,
                            batch_size=args.batch_size, ray="local" if runner == "ray" else None,
                            workers=args.workers, cpus_per_worker=args.cpus_per_worker)
            assert summary.embedded == count, summary.as_dict()
            return time.perf_counter() - started

        timed("ray", small)  # Ray's worker processes and imports warm, as on a used cluster
        runners = ("in-process", "ray")
        # alternated, so that a slow minute of a shared machine falls on both runners
        whole = {runner: timed(runner, args.images) for runner in runners}
        few = {runner: timed(runner, small) for runner in runners}
        steady = {}
        for runner in runners:
            steady[runner] = (args.images - small) / (whole[runner] - few[runner])
            fixed = whole[runner] - args.images / steady[runner]
            print(f"{runner:>10}: {args.images} images in {whole[runner]:6.2f} s = "
                  f"{args.images / whole[runner]:6.1f} images/s end to end; steady state "
                  f"{steady[runner]:6.1f} images/s + a fixed {fixed:.1f} s", flush=True)
    print(f"ray / in-process, steady-state throughput: "
          f"{steady['ray'] / steady['in-process']:.2f}x (model {model.model_key}, "
          f"{args.size}px JPEGs, {args.workers} encoder actor(s) x {args.cpus_per_worker} CPU)")
    print(f"cpu: {cpu()}")


if __name__ == "__main__":
    main()
