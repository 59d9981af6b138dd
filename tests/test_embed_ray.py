"""vislang embed on Ray Data: the same ids and vectors as in-process, a transient fault retried.

One local Ray cluster (2 CPUs) serves every test here; it starts once per session.
"""

from __future__ import annotations

import os
import tarfile
import time

import numpy as np
import pytest

pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'vislang[scale]'")
pq = pytest.importorskip("pyarrow.parquet", reason="pip install 'vislang[scale]'")

import vislang  # noqa: E402
from conftest import run_cli  # noqa: E402
from test_embed import by_id, write_folder  # noqa: E402
from vislang.embed import embed  # noqa: E402


def fault_once_hook(marker: str):
    """A Ray worker setup hook: while ``marker`` exists, reading an item whose path contains
    the marker's text removes the marker and raises once, a transient fault in a decode task
    that Ray must retry. Installed into each worker process, so none of it is vislang's code."""
    def install() -> None:
        import vislang.embed.sources as sources

        read = sources.read_bytes

        def read_bytes(item):
            try:
                needle = open(marker).read().strip()
            except OSError:
                needle = ""
            if needle and needle in item["path"]:
                try:
                    os.remove(marker)  # only one task wins the removal: the fault happens once
                except OSError:
                    return read(item)
                raise RuntimeError(f"injected transient fault reading {item['path']}")
            return read(item)

        sources.read_bytes = read_bytes  # decode() looks it up at call time
    return install


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    import ray

    marker = tmp_path_factory.mktemp("fault") / "fault-once"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": fault_once_hook(str(marker))})
    yield marker
    ray.shutdown()


@pytest.fixture(scope="module")
def model():
    return vislang.load("shapes-clip")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-gallery")
    paths = write_folder(root / "photos", 24, seed=99)
    (root / "photos" / "broken.png").write_bytes(b"not an image")
    shard = root / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for i, path in enumerate(write_folder(root / "more", 8, seed=100)):
            tar.add(path, arcname=f"key{i:03d}.png")
    return [root / "photos", shard]


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        cosine = float(a[key] @ b[key] / np.linalg.norm(a[key]) / np.linalg.norm(b[key]))
        assert cosine >= 0.9999, key


def test_ray_matches_in_process(ray_cluster, model, sources, tmp_path):
    local = embed(sources, tmp_path / "local", model, rows_per_shard=10)
    on_ray = embed(sources, tmp_path / "ray", model, rows_per_shard=10, ray="local",
                   workers=1, batch_size=8)
    assert on_ray.runner == "ray" and on_ray.embedded == local.embedded == 32
    assert [f["id"] for f in on_ray.failures] == [f["id"] for f in local.failures]
    a, b = pq.read_table(tmp_path / "local"), pq.read_table(tmp_path / "ray")
    _same(by_id(a), by_id(b))
    key = lambda t: sorted(zip(*(t.column(c).to_pylist() for c in ("id", "path", "hash"))))  # noqa: E731
    assert key(a) == key(b)


def test_a_transient_fault_is_retried_without_loss_or_duplicates(ray_cluster, model, sources,
                                                                 tmp_path):
    ray_cluster.write_text("scene-005.png")  # the first decode of this image raises once
    summary = embed(sources, tmp_path / "ray", model, rows_per_shard=7, ray="local",
                    batch_size=4)
    assert not ray_cluster.exists()  # the fault happened
    ids = pq.read_table(tmp_path / "ray").column("id").to_pylist()
    assert summary.embedded == len(ids) == len(set(ids)) == 32


def test_a_silent_cluster_address_fails_fast(tmp_path):
    started = time.monotonic()
    result = run_cli("embed", tmp_path, "--out", tmp_path / "out", "--ray-address",
                     "ray://127.0.0.1:9", timeout=60)
    assert result.returncode == 2 and "no Ray cluster answers" in result.stderr
    assert time.monotonic() - started < 30


def test_actors_that_would_take_every_core_are_refused_before_any_work(ray_cluster, model,
                                                                       sources, tmp_path):
    """On the 2-CPU cluster two 1-core encoders would leave decoding no CPU: Ray would wait
    for ever; vislang says so at once, and writes nothing."""
    from vislang.errors import InputError

    with pytest.raises(InputError, match=r"--workers 2 x --cpus-per-worker 1 takes all 2 CPUs"):
        embed(sources, tmp_path / "out", model, ray="local", workers=2)
    with pytest.raises(InputError, match=r"--workers 1 x --cpus-per-worker 2 takes all 2 CPUs"):
        embed(sources, tmp_path / "out2", model, ray="local", cpus_per_worker=2)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()
