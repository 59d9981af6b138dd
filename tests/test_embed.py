"""vislang embed: image sources -> Parquet shards + _manifest.json, resumable, in-process."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

pq = pytest.importorskip("pyarrow.parquet", reason="vislang embed writes Parquet: pip install pyarrow")

import vislang  # noqa: E402
from conftest import run_cli  # noqa: E402
from vislang.datasets.shapes import generate_scenes  # noqa: E402
from vislang.embed import embed  # noqa: E402
from vislang.embed.shards import MANIFEST  # noqa: E402
from vislang.embed.sources import stable_id  # noqa: E402
from vislang.errors import InputError  # noqa: E402

N = 30
COLUMNS = ["id", "path", "hash", "size", "width", "height", "embedding", "caption"]


@pytest.fixture(scope="module")
def model():
    return vislang.load("shapes-clip")


def write_folder(root: Path, n: int = N, seed: int = 17) -> list[Path]:
    paths = []
    for scene in generate_scenes(n, seed):
        path = root / ("odd" if scene.index % 2 else "") / f"scene-{scene.index:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        scene.image.save(path)
        paths.append(path)
    return sorted(paths)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("gallery")
    paths = write_folder(root)
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    return root, paths


def read(out: Path):
    return pq.read_table(out)  # the folder as is: _manifest.json is skipped


def by_id(table) -> dict[str, np.ndarray]:
    ids = table.column("id").to_pylist()
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    return dict(zip(ids, vectors))


def test_folder_to_shards_and_manifest(model, gallery, tmp_path):
    root, paths = gallery
    out = tmp_path / "out"
    summary = embed([root], out, model, rows_per_shard=8)
    assert summary.embedded == N and summary.found == N + 1 and summary.resumed == 0
    assert sorted(p.name for p in out.glob("part-*.parquet")) == [
        f"part-{i:05d}.parquet" for i in range(4)]
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))

    table = read(out)
    assert table.column_names == COLUMNS and table.num_rows == N
    kind = table.schema.field("embedding").type
    assert kind.list_size == 64 and str(kind.value_type) == "halffloat"
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(stable_id(str(p)) for p in paths)
    rows = table.to_pylist()
    assert all(r["width"] == r["height"] == 64 and r["size"] > 0 and len(r["hash"]) == 32
               for r in rows)
    # The same vectors as the model's own bulk path (stored as float16).
    expected = model.embed_images(paths)
    got = by_id(table)
    for path, vector in zip(paths, expected):
        np.testing.assert_allclose(got[stable_id(str(path))], vector, atol=2e-3)

    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["model"] == "shapes-clip" and manifest["model_key"] == model.model_key
    assert manifest["dim"] == 64 and manifest["dtype"] == "float16" and manifest["complete"]
    assert manifest["counts"]["rows"] == N and manifest["counts"]["shards"] == 4
    assert [s["rows"] for s in manifest["shards"]] == [8, 8, 8, 6]
    assert [(f["path"], bool(f["reason"])) for f in manifest["failures"]] == [
        (str(root / "broken.png"), True)]
    assert manifest["vislang"]


def test_resume_after_losing_a_shard_gives_the_same_set(model, gallery, tmp_path):
    root, _ = gallery
    out = tmp_path / "out"
    embed([root], out, model, rows_per_shard=8)
    before = by_id(read(out))
    (out / "part-00001.parquet").unlink()
    (out / ".part-00009.parquet.tmp").write_bytes(b"half a shard")  # a killed run's leftover
    with pytest.raises(InputError, match="--resume"):
        embed([root], out, model, rows_per_shard=8)
    summary = embed([root], out, model, rows_per_shard=8, resume=True)
    assert summary.embedded == 8 and summary.resumed == N - 8 + 0
    assert not list(out.glob(".*.tmp"))
    table = read(out)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == N
    after = by_id(table)
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k], before[k]) for k in before)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["counts"]["rows"] == N and len(manifest["failures"]) == 1
    # A second resume has nothing left to do but retry the broken file.
    again = embed([root], out, model, rows_per_shard=8, resume=True)
    assert again.embedded == 0 and again.resumed == N and len(again.failures) == 1


def test_a_killed_embed_process_resumes_to_the_same_set(tmp_path):
    """kill -9 of the whole command mid-run, then --resume: every id once, the same vectors
    as a run never killed."""
    import signal
    import subprocess
    import time

    from conftest import VISLANG

    root = tmp_path / "photos"
    write_folder(root, 300, seed=23)
    args = ["embed", root, "--model", "shapes-clip", "--shard-rows", "4", "--batch-size", "1"]
    clean = run_cli(*args, "--out", tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    out = tmp_path / "out"
    run = subprocess.Popen([str(VISLANG), *map(str, args), "--out", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(out.glob("part-*.parquet")) and run.poll() is None:
        assert time.monotonic() < deadline, "no shard was written in 300 s"
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not json.loads((out / MANIFEST).read_text())["complete"]  # killed mid-run
    resumed = run_cli(*args, "--out", out, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert 0 < json.loads(resumed.stdout)["resumed"] < 300
    ids = read(out).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 300
    want, got = by_id(read(tmp_path / "clean")), by_id(read(out))
    assert got.keys() == want.keys()
    for key, vector in want.items():
        assert float(vector @ got[key]) / float(vector @ vector) > 0.9999, key


def test_resume_with_another_model_is_refused(model, clip_model, gallery, tmp_path):
    root, _ = gallery
    out = tmp_path / "out"
    embed([root / "odd"], out, model)
    with pytest.raises(InputError, match=r"holds embeddings by shapes-clip"):
        embed([root / "odd"], out, clip_model, resume=True)


def test_csv_list_gives_ids_and_captions(model, gallery, tmp_path):
    root, paths = gallery
    listing = tmp_path / "list.csv"
    listing.write_text("path,id,caption\n" + "".join(
        f"{os.path.relpath(p, tmp_path)},img{i},scene {i}\n" for i, p in enumerate(paths[:5])))
    out = tmp_path / "out"
    embed([listing], out, model)
    rows = sorted(read(out).to_pylist(), key=lambda r: r["id"])
    assert [(r["id"], r["caption"], r["path"]) for r in rows] == [
        (f"img{i}", f"scene {i}", str(p)) for i, p in enumerate(paths[:5])]


def test_cli_txt_list_and_tar_shard(model, gallery, tmp_path):
    root, paths = gallery
    listing = tmp_path / "list.txt"
    listing.write_text("# a comment\n" + "\n".join(str(p) for p in paths[:4]) + "\n")
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for i, path in enumerate(paths[4:10]):
            tar.add(path, arcname=f"sample{i:04d}.png")
            caption = tmp_path / f"sample{i:04d}.txt"
            caption.write_text(f"caption {i}")
            tar.add(caption, arcname=caption.name)
        tar.add(root / "broken.png", arcname="sample9999.png")
    out = tmp_path / "out"
    result = run_cli("embed", listing, shard, "--out", out, "-m", "shapes-clip", "--json",
                     "--backend", "torch", "--precision", "fp32")  # the fixture model's engine
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["embedded"] == 10 and summary["found"] == 11 and summary["failed"] == 1
    assert summary["failures"][0]["path"] == f"{shard}#sample9999"
    assert summary["model_key"] == model.model_key and summary["shards"] == ["part-00000.parquet"]
    table = read(out)
    got = by_id(table)
    tar_rows = {r["path"]: r for r in table.to_pylist() if "#" in r["path"]}
    assert sorted(tar_rows) == [f"{shard}#sample{i:04d}" for i in range(6)]
    assert all(r["caption"] == f"caption {int(p[-4:])}" and r["id"] == stable_id(p)
               for p, r in tar_rows.items())
    expected = model.embed_images(paths[:10])
    keys = [stable_id(str(p)) for p in paths[:4]] + [stable_id(f"{shard}#sample{i:04d}")
                                                     for i in range(6)]
    for key, vector in zip(keys, expected):
        np.testing.assert_allclose(got[key], vector, atol=2e-3)
    # Human output, and an existing --out refused without --resume.
    again = run_cli("embed", listing, "--out", out, "-m", "shapes-clip")
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_cli("embed", listing, shard, "--out", out, "-m", "shapes-clip", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "embedded 0 images" in resumed.stdout and "10 already embedded" in resumed.stdout


def test_missing_source_is_an_input_error(model, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        embed([tmp_path / "nope"], tmp_path / "out", model)


def test_index_imports_shards_without_embedding_again(model, gallery, tmp_path):
    from vislang.search import Index

    root, paths = gallery
    out = tmp_path / "out"
    embed([root], out, model, rows_per_shard=8)
    with Index.open(tmp_path / "idx", model) as index:
        summary = index.import_embeddings(out)
        assert summary.added == N and not summary.skipped
        hits = index.search(image=str(paths[3]), k=1)
        assert hits[0].path == str(paths[3]) and hits[0].score > 0.999
        # The folder indexed afterwards: every file is known, nothing is embedded again.
        update = index.update([root])
        assert update.embedded == 0 and update.unchanged == N + 1 - update.added
    with pytest.raises(InputError, match="not vislang embed output"):
        Index.open(tmp_path / "idx2", model).import_embeddings(tmp_path)


def test_ray_absent_names_the_extra(monkeypatch):
    import sys

    from vislang.embed.distributed import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(InputError, match=r"pip install 'vislang\[scale\]'"):
        require_ray()


def test_cli_index_from_embeddings_then_search(model, gallery, tmp_path):
    """vislang embed, then vislang index --from-embeddings: a searchable index, no model run."""
    root, paths = gallery
    out, idx = tmp_path / "out", tmp_path / "idx"
    embed([root], out, model)
    imported = run_cli("index", "--from-embeddings", out, "-i", idx, "--json")
    assert imported.returncode == 0, imported.stderr
    summary = json.loads(imported.stdout)
    assert summary["added"] == N and summary["embedded"] == 0
    found = run_cli("search", "--image", paths[5], "-i", idx, "-k", "1", "--json")
    assert json.loads(found.stdout)[0]["path"] == str(paths[5]), found.stderr
    mixed = run_cli("index", root, "--from-embeddings", out, "-i", tmp_path / "idx2")
    assert mixed.returncode == 2 and "on its own" in mixed.stderr
    assert not (tmp_path / "idx2").exists()
