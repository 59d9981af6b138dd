"""``vislang embed --ray``: the same job on a Ray cluster (Ray Data).

Reading, decoding and preprocessing run as Ray tasks; the image tower runs in a pool of
encoder actors (``map_batches`` with a callable class), so each actor loads the weights once.
The actors call the very model object ``vislang index`` uses (``ClipModel``), loaded by name;
the driver writes the shards, with the same writer as the in-process run.
"""

from __future__ import annotations

import os
import socket
import warnings
from urllib.parse import urlparse

import numpy as np

from vislang.embed.shards import Row, ShardWriter
from vislang.embed.sources import Item
from vislang.errors import ImageLoadError, InputError

INSTALL = "pip install 'vislang[scale]'"
CONNECT_SECONDS = 10


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError(f"--ray needs Ray Data; install it with {INSTALL}") from None
    return ray


def _is_local(address: str) -> bool:
    """Whether ``address`` asks for a Ray started here, on this machine alone."""
    return address in ("", "local")


def connect(address: str) -> None:
    """Start a local Ray (``"local"``) or join a cluster (``auto``, ``host:port``,
    ``ray://host:10001``); a cluster that does not answer is an InputError within seconds."""
    ray = require_ray()
    if ray.is_initialized():
        return
    if _is_local(address):
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        return
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False)
    except Exception as error:  # noqa: BLE001 -- ConnectionError, RuntimeError, grpc's own
        raise InputError(f"cannot join the Ray cluster at {address!r}: "
                         f"{str(error).splitlines()[0] if str(error) else type(error).__name__}"
                         "; start one with `ray start --head`, or leave out the address to "
                         "run on this machine") from None


def check_resources(workers: int, cpus_per_worker: int, device: str) -> None:
    """Refuse encoder actors that would take every core of the cluster: decoding runs in Ray
    tasks beside them and would never be scheduled (the run would hang, not fail)."""
    import ray

    resources = ray.cluster_resources()
    if device.startswith("cuda"):
        if resources.get("GPU", 0) < 1:
            raise InputError("the model runs on CUDA but the Ray cluster has no GPU; use "
                             "--device cpu, or join a cluster with GPUs")
        return
    cores = int(resources.get("CPU", 0))
    if cores < 2:
        raise InputError(f"the Ray cluster has {cores} CPU: an encoder actor and decoding need "
                         "two at least; run without --ray")
    if workers * cpus_per_worker >= cores:
        raise InputError(f"--workers {workers} x --cpus-per-worker {cpus_per_worker} takes all "
                         f"{cores} CPUs of the Ray cluster and leaves none for decoding; use "
                         f"at most {max(1, cores - 1)} in all")


def encoder_threads(cpus_per_worker: int, workers: int) -> int:
    """Threads for each encoder actor's model on the local Ray ``--ray`` starts: this
    machine's cores shared among the actors (never fewer than each reserved). Ray's
    accounting still reserves ``cpus_per_worker``, so decode tasks run beside the actors and
    share the cores with them, as decode threads share them with the model in-process; an
    actor held to the one core it reserves ran ViT-B/32 at half the in-process speed on two
    cores (docs/benchmarks.md). On a joined cluster an actor runs on what it reserved."""
    return max(cpus_per_worker, (os.cpu_count() or 1) // max(1, workers))


def _check_reachable(address: str) -> None:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port or (10001 if parsed.scheme == "ray" else 6379)
    except ValueError:
        raise InputError(f"--ray {address!r} is not an address (auto, host:port or "
                         "ray://host:10001)") from None
    if not host:
        raise InputError(f"--ray {address!r} is not an address (auto, host:port or "
                         "ray://host:10001)")
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise InputError(f"no Ray cluster answers at {address!r} ({error.strerror or error}); "
                         "start one with `ray start --head`, or leave out the address to run "
                         "on this machine") from None


def decode(batch: dict, transform) -> dict:
    """A Ray task: read, hash, decode and preprocess a batch of items. It gets the model's
    ``transform`` (a small picklable config), not the model: decoding never loads weights."""
    from vislang.embed import sources
    from vislang.embed.pipeline import describe
    from vislang.images import load_image

    n = len(batch["id"])
    columns: dict[str, list] = {k: [] for k in ("id", "path", "hash", "size", "width",
                                                 "height", "caption", "error", "pixels")}
    blank = None
    for i in range(n):
        item = {k: _plain(batch[k][i]) for k in ("id", "path", "file", "offset", "size",
                                                   "caption")}
        row, pixels, error = None, None, ""
        try:
            data = sources.read_bytes(item)
            row = describe(item, data)
            pixels = transform(load_image(data, min_side=transform.min_side)).numpy()
        except OSError as exc:
            error = exc.strerror or str(exc)
        except ImageLoadError as exc:
            error = exc.reason
        if pixels is None:
            blank = blank if blank is not None else _blank(transform)
            pixels = blank
        row = row or Row(item["id"], item["path"], "", 0, 0, 0, item["caption"])
        for key in ("id", "path", "hash", "size", "width", "height", "caption"):
            columns[key].append(getattr(row, key))
        columns["error"].append(error)
        columns["pixels"].append(pixels)
    columns["caption"] = [c if c is not None else "" for c in columns["caption"]]
    out = {k: np.array(v) for k, v in columns.items() if k != "pixels"}
    out["pixels"] = np.stack(columns["pixels"]).astype(np.float32)
    return out


def _blank(transform) -> np.ndarray:
    """What a failed image's row carries, so the batch stacks; the encoder skips it."""
    from PIL import Image

    return np.zeros_like(transform(Image.new("RGB", (8, 8))).numpy())


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


class Encoder:
    """A Ray actor: the image tower, loaded once, run on batches of preprocessed pixels, on
    its GPU or on the ``threads`` cores it reserved."""

    def __init__(self, name: str, backend: str, precision: str, device: str, threads: int):
        import torch

        from vislang.models.clip import load
        from vislang.runtime import EngineSpec

        torch.set_num_threads(threads)  # what the actor reserved, whatever Ray's default
        self.model = load(name, engine=EngineSpec(backend, precision, "throughput", device))

    def __call__(self, batch: dict) -> dict:
        import torch

        good = [i for i, e in enumerate(batch["error"]) if not e]
        vectors = np.zeros((len(batch["id"]), self.model.embed_dim), np.float32)
        if good:
            pixels = [torch.from_numpy(np.ascontiguousarray(batch["pixels"][i])) for i in good]
            vectors[good] = self.model.embed_pixels(pixels)  # the index's own model math
        out = {k: v for k, v in batch.items() if k != "pixels"}
        out["embedding"] = vectors
        return out


def run_ray(items: list[Item], writer: ShardWriter, name: str, model, address: str,
            workers: int, batch_size: int, cpus_per_worker: int = 1) -> list[dict]:
    """Embed ``items`` on Ray into ``writer``; the failures, as the in-process run lists them.
    ``workers`` encoder actors, each on one GPU when ``model`` runs on CUDA, else on
    ``cpus_per_worker`` cores of its own."""
    connect(address)
    if not items:
        return []
    threads = cpus_per_worker
    if _is_local(address):  # this machine, all the run's: see encoder_threads
        threads = encoder_threads(cpus_per_worker, workers)
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the command's output, not Ray's, on the terminal
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    spec = model.engine_choice
    args = (name, spec.backend, spec.precision)
    ds = ray.data.from_items([item.as_dict() for item in items],
                             override_num_blocks=max(1, min(len(items) // batch_size, 200)))
    with warnings.catch_warnings():  # Ray 2.60 names no other way to retry a task's errors
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map_batches(decode, fn_kwargs={"transform": model.transform},
                            batch_size=batch_size, max_retries=3, retry_exceptions=True)
    gpu = model.device.startswith("cuda")
    ds = ds.map_batches(Encoder, fn_constructor_args=(*args, "cuda" if gpu else "cpu", threads),
                        batch_size=batch_size, concurrency=max(1, workers),
                        num_cpus=1 if gpu else cpus_per_worker, num_gpus=1 if gpu else 0)
    failures = []
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        ok = [i for i, e in enumerate(batch["error"]) if not e]
        rows = [Row(str(batch["id"][i]), str(batch["path"][i]), str(batch["hash"][i]),
                    int(batch["size"][i]), int(batch["width"][i]), int(batch["height"][i]),
                    str(batch["caption"][i]) or None) for i in ok]
        writer.add(rows, np.asarray(batch["embedding"])[ok])
        failures += [{"id": str(batch["id"][i]), "path": str(batch["path"][i]),
                      "reason": str(batch["error"][i])}
                     for i, e in enumerate(batch["error"]) if e]
    return failures
