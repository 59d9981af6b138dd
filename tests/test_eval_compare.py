"""`vislang eval zeroshot` / `eval retrieval` with several --model: one comparison table.

The two models differ in a way a user would see: shapes-clip was trained on the shapes world
the data comes from, the tiny CLIP is random, so the comparison must rank shapes-clip first,
and their embedding sizes (64 and 16) must be reported as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli


def _compare(*args) -> dict:
    result = run_cli("eval", *args, "--backend", "torch", "--json")
    assert result.returncode == 0, result.stderr
    # keyed by the name's last part: a directory's row by its folder name
    return {Path(r["name"]).name: r for r in json.loads(result.stdout)["models"]}


def test_zeroshot_compares_two_models(shapes_dir, tiny_clip_dir):
    rows = _compare("zeroshot", shapes_dir / "classes", "-m", "shapes-clip", "-m", tiny_clip_dir)
    trained, random = rows["shapes-clip"], rows[tiny_clip_dir.name]
    assert trained["top1"] > random["top1"] + 0.3  # the trained model wins, clearly
    assert (trained["embed_dim"], random["embed_dim"]) == (64, 16)
    assert trained["images"] == random["images"] == 120
    assert trained["images_per_s"] > 0 and random["images_per_s"] > 0
    assert trained["backend"] == random["backend"] == "torch/fp32"


def test_retrieval_table_and_one_model_output(shapes_dir, tiny_clip_dir):
    pairs = shapes_dir / "pairs.jsonl"
    result = run_cli("eval", "retrieval", pairs, "-m", "shapes-clip", "-m", tiny_clip_dir,
                     "--backend", "torch")
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "recall@1" in line)
    for column in ("model", "recall@5", "dim", "engine", "images/s"):
        assert column in header
    lines = result.stdout.splitlines()
    shapes_row = next(line for line in lines if "shapes-clip" in line)
    assert " 64 " in shapes_row and "torch/fp32" in shapes_row
    # One model (named twice, run once): the report it always printed, no comparison columns.
    single = run_cli("eval", "retrieval", pairs, "-m", "shapes-clip", "-m", "shapes-clip",
                     "--backend", "torch", "--json")
    assert single.returncode == 0, single.stderr
    report = json.loads(single.stdout)
    assert set(report) == {"recall@1", "recall@5", "model", "images", "queries",
                           "skipped_records"}
    assert report["model"].startswith("shapes-clip@") and report["images"] == 120

