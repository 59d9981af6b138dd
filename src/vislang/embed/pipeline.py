"""``embed(sources, out, model)``: embed many images into Parquet shards, resumably.

In-process by default: ``ClipModel.embed_batches``, the same code ``vislang index`` embeds
with. ``ray=`` runs the same model on a Ray cluster (see ``vislang.embed.distributed``); both
feed one ``ShardWriter``, so the output does not depend on how it was made.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vislang.embed import shards
from vislang.embed.shards import Row
from vislang.embed.sources import Item, collect, content_hash, read_bytes
from vislang.errors import InputError

ROWS_PER_SHARD = 50_000
# Images a Ray task decodes and an encoder actor embeds at a time, at least: each block costs
# Ray tens of milliseconds (scheduling, pixels through the object store), a third of a small
# model's throughput at 32 images a block and a few percent at 128 (docs/benchmarks.md).
RAY_BLOCK = 128


@dataclass
class EmbedSummary:
    out: str
    model: str
    model_key: str
    dim: int
    found: int = 0  # images the sources name
    embedded: int = 0  # rows written by this run
    resumed: int = 0  # already in finished shards, skipped
    failures: list[dict] = field(default_factory=list)  # {"id", "path", "reason"}
    shards: list[str] = field(default_factory=list)  # this run's new shard files
    seconds: float = 0.0
    runner: str = "in-process"

    def as_dict(self) -> dict:
        return {"out": self.out, "model": self.model, "model_key": self.model_key,
                "dim": self.dim, "runner": self.runner, "found": self.found,
                "embedded": self.embedded, "resumed": self.resumed,
                "failed": len(self.failures), "failures": self.failures,
                "shards": self.shards, "seconds": round(self.seconds, 3),
                "images_per_second": round(self.embedded / self.seconds, 2)
                if self.seconds else None}


def describe(item: Item | dict, data: bytes) -> Row:
    """What a shard keeps about an image besides its vector (size as stored, before any EXIF
    rotation; 0 x 0 when the header cannot be read, which decoding then reports)."""
    from PIL import Image

    get = item.get if isinstance(item, dict) else lambda k: getattr(item, k)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 -- any unreadable header: decoding will say why
        width = height = 0
    return Row(get("id"), get("path"), content_hash(data), len(data), width, height,
               get("caption"))


def embed(sources: Sequence[str | os.PathLike], out: str | os.PathLike, model,
          *, resume: bool = False, batch_size: int | None = None,
          rows_per_shard: int = ROWS_PER_SHARD, ray: str | None = None, workers: int = 1,
          cpus_per_worker: int = 1,
          model_name: str | None = None, progress: bool = False) -> EmbedSummary:
    """Embed every image in ``sources`` into ``out`` (Parquet shards + _manifest.json).

    ``model``: a loaded ``ClipModel``. ``resume``: keep ``out``'s finished shards and embed
    only what they lack (refused when they hold another model's vectors). ``ray``: None for
    in-process, ``"local"`` for a Ray cluster on this machine, or an address (``auto``,
    ``ray://host:10001``) to join one, with ``workers`` encoder actors (one GPU each when
    ``model`` runs on CUDA, else ``cpus_per_worker`` cores each). ``batch_size``: images
    a model call (default: the model's ``default_batch``, and at least ``RAY_BLOCK`` on Ray).
    """
    started = time.perf_counter()
    if ray:  # a silent cluster or too few CPUs fails before anything is written
        from vislang.embed.distributed import check_resources, connect

        connect(ray)
        check_resources(workers, cpus_per_worker, model.device)
    out = Path(out).expanduser().absolute()
    name = model_name or model.checkpoint.name
    items = collect(list(sources))
    done = _prepare_out(out, model.model_key, resume)
    previous = shards.read_manifest(out) if resume else None
    todo = [item for item in items if item.id not in done]
    summary = EmbedSummary(str(out), name, model.model_key, model.embed_dim, found=len(items),
                           resumed=len(items) - len(todo),
                           runner="ray" if ray else "in-process")
    writer = shards.ShardWriter(out, model.embed_dim, rows_per_shard,
                                next_number=shards.next_shard_number(out))
    manifest = _manifest(name, model, summary, previous)
    shards.write_manifest(out, manifest)  # the model_key is on disk before any shard
    if ray:
        from vislang.embed.distributed import run_ray

        failures = run_ray(todo, writer, name, model, ray, workers,
                           batch_size or max(model.default_batch, RAY_BLOCK), cpus_per_worker)
    else:
        failures = _run_local(todo, writer, model, batch_size or model.default_batch, progress)
    writer.close()
    summary.embedded = sum(s["rows"] for s in writer.written)
    summary.shards = [s["file"] for s in writer.written]
    summary.failures = failures
    summary.seconds = time.perf_counter() - started
    manifest = _manifest(name, model, summary, previous)
    manifest["complete"] = True
    shards.write_manifest(out, manifest)
    return summary


def _run_local(items: list[Item], writer: shards.ShardWriter, model, batch_size: int,
               progress: bool) -> list[dict]:
    rows: dict[str, Row] = {}
    unreadable: dict[str, str] = {}

    def source(item: Item) -> bytes:  # runs in embed_batches' worker threads
        try:
            data = read_bytes(item)
        except OSError as error:
            unreadable[item.id] = error.strerror or str(error)
            return b""  # load_image turns it into a failure
        rows[item.id] = describe(item, data)
        return data

    failures = []
    for batch in model.embed_batches(items, batch_size, source=source, progress=progress):
        writer.add([rows.pop(item.id) for item in batch.items], batch.vectors)
        for item, error in batch.failed:
            rows.pop(item.id, None)
            failures.append({"id": item.id, "path": item.path,
                             "reason": unreadable.pop(item.id, None) or error.reason})
    return failures


def _prepare_out(out: Path, model_key: str, resume: bool) -> set[str]:
    """Make ``out`` ready; the ids its finished shards hold when resuming."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(".*.tmp"):  # a shard a killed run was writing: never finished
        leftover.unlink(missing_ok=True)
    existing = shards.shard_names(out)
    manifest = shards.read_manifest(out)
    if not resume:
        if existing or manifest:
            raise InputError(f"{out} already holds embeddings; pass --resume to add what they "
                             "lack, or choose another --out")
        return set()
    if manifest and manifest.get("model_key") != model_key:
        raise InputError(f"{out} holds embeddings by {manifest.get('model_key')}, not "
                         f"{model_key}; resume with --model {manifest.get('model')} or choose "
                         "another --out")
    if existing and not manifest:
        raise InputError(f"{out} has shards but no {shards.MANIFEST}; its model is unknown, so "
                         "it cannot be resumed: choose another --out")
    return shards.finished_ids(out)


def _manifest(name: str, model, summary: EmbedSummary, previous: dict | None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        vislang_version = version("vislang")
    except PackageNotFoundError:
        vislang_version = "unknown"
    listed = shards.shard_list(Path(summary.out))
    return {
        "format": shards.FORMAT,
        "model": name, "model_key": model.model_key, "dim": model.embed_dim,
        "dtype": "float16", "normalized": True, "hash": "blake2b-128",
        "columns": [f.name for f in shards.schema(model.embed_dim)],
        "counts": {"rows": sum(s["rows"] for s in listed), "shards": len(listed),
                   "failures": len(summary.failures), "found": summary.found,
                   "embedded_this_run": summary.embedded, "resumed": summary.resumed},
        "failures": summary.failures,  # this run's: a resumed run retries earlier ones
        "shards": listed,
        "vislang": vislang_version,
        "complete": False,
        "created": (previous or {}).get("created", time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                 time.gmtime())),
    }
