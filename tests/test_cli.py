"""The installed ``vislang`` command, run in a subprocess as a user would."""

from __future__ import annotations

import json
import re

from conftest import run_cli


def _one_line_error(result, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_classify_json_shape(tiny_clip_dir, shapes_dir):
    images = sorted((shapes_dir / "images").glob("*.png"))[:3]
    result = run_cli("classify", *images, "--labels", "red circle,blue square,green triangle",
                     "--top", "2", "--model", tiny_clip_dir, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [row["path"] for row in data] == [str(p) for p in images]
    for row in data:
        probs = [p["prob"] for p in row["predictions"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert {p["label"] for p in row["predictions"]} <= {"red circle", "blue square",
                                                             "green triangle"}


def test_classify_human_output_and_labels_file(tiny_clip_dir, shapes_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("red circle\n\nblue square\n")
    image = sorted((shapes_dir / "images").glob("*.png"))[0]
    result = run_cli("classify", image, "--labels-file", labels, "--model", tiny_clip_dir)
    assert result.returncode == 0, result.stderr
    assert image.name in result.stdout and "red circle" in result.stdout
    assert "%" in result.stdout


def test_missing_image_is_a_one_line_error(tiny_clip_dir, tmp_path):
    result = run_cli("classify", tmp_path / "nope.jpg", "--labels", "a,b", "-m", tiny_clip_dir)
    _one_line_error(result, 2, "no such file", "nope.jpg")


def test_unreadable_image_is_a_one_line_error(tiny_clip_dir, tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("not really a jpeg")
    result = run_cli("classify", fake, "--labels", "a,b", "-m", tiny_clip_dir)
    _one_line_error(result, 4, "holiday.jpg", "not an image")


def test_unknown_model_is_a_one_line_error(tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    result = run_cli("classify", image, "--labels", "a,b", "-m", "someone/no-such-clip",
                     env={"HF_HOME": str(tmp_path / "hf")})
    _one_line_error(result, 3, "someone/no-such-clip", "not on disk")


def test_labels_are_required_once(tiny_clip_dir, shapes_dir):
    image = next((shapes_dir / "images").glob("*.png"))
    _one_line_error(run_cli("classify", image, "-m", tiny_clip_dir), 2, "--labels")
    _one_line_error(run_cli("classify", image, "--labels", "cat", "-m", tiny_clip_dir), 2,
                    "at least two labels")


def test_eval_zeroshot_json(tiny_clip_dir, shapes_dir):
    result = run_cli("eval", "zeroshot", shapes_dir / "classes", "-m", tiny_clip_dir, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 0 <= report["top1"] <= report["top5"] <= 1
    assert report["images"] == 120
    assert sum(row["images"] for row in report["per_class"]) == 120


def test_probe_then_classify_with_it(tiny_clip_dir, shapes_dir, tmp_path):
    saved = tmp_path / "probe.npz"
    classes = shapes_dir / "classes"
    result = run_cli("probe", "--train", classes, "--test", classes, "--save", saved,
                     "-m", tiny_clip_dir, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["saved"] == str(saved) and report["C"] > 0 and 0 <= report["top1"] <= 1
    image = next(classes.glob("*/*.png"))
    result = run_cli("classify", "--probe", saved, image, "-m", tiny_clip_dir, "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["predictions"][0]["label"] in {p.name.replace("_", " ") for p in classes.iterdir()}


def test_models_json_lists_aliases():
    result = run_cli("models", "--json")
    assert result.returncode == 0, result.stderr
    names = {m["name"]: m for m in json.loads(result.stdout)}
    assert names["ViT-B/32"]["source"] == "openai/clip-vit-base-patch32"
    assert {"ViT-B/16", "ViT-L/14", "ViT-L/14@336px"} <= set(names)


def test_shapes_writes_a_dataset(tmp_path):
    result = run_cli("shapes", tmp_path / "set", "-n", "6", "--seed", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    lines = (tmp_path / "set" / "pairs.jsonl").read_text().splitlines()
    assert summary["scenes"] == 6 and len(lines) == 6
    assert all(json.loads(line)["caption"] for line in lines)


def test_demo_runs_offline_and_gets_answers_right(tmp_path):
    result = run_cli("demo", "--workdir", tmp_path, env={"HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    hits, total = map(int, re.search(r"accuracy (\d+)/(\d+)", result.stdout).groups())
    assert total == 12 and hits >= 10
    assert result.stdout.count("query: ") == 3
    assert "added 200" in result.stdout and "embedded 200" in result.stdout  # indexed
    more_like = re.search(r"more like images/(\d+\.png).*?│ 1 +│ images/(\d+\.png)", result.stdout,
                          re.S)
    assert more_like and more_like.group(1) == more_like.group(2)  # image search finds itself
    assert re.search(r"│ dense +│ \(\d+, \d+\) +│ yes", result.stdout)  # saliency finds it
    assert all((tmp_path / "saliency" / f"{m}.png").is_file() for m in ("crops", "dense",
                                                                      "relevance"))
    captions, answers = re.search(r"captions right (\d+)/4, answers right (\d+)/(\d+)",
                                  result.stdout).group(1, 2)
    assert int(captions) >= 3 and int(answers) >= 6  # the shipped BLIPs describe new scenes
    assert "engine: " in result.stdout  # the engine auto chose, and why
    cosine = float(re.search(r"features agree: min cosine ([0-9.]+)", result.stdout).group(1))
    assert cosine >= 0.999  # the fast engine's speed-up is about the same numbers
    assert "--model ViT-B/32" in result.stdout  # how to run the same on a real checkpoint
