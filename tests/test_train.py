"""Contrastive training: the loss falls, runs resume exactly, feedback moves rankings."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import vislang
from conftest import VISLANG, run_cli
from vislang.errors import InputError
from vislang.train import TrainConfig, train


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    from vislang.datasets.shapes import write_dataset

    return write_dataset(tmp_path_factory.mktemp("pairs"), 96, seed=11) / "pairs.jsonl"


def _quick(**overrides) -> TrainConfig:
    settings = dict(steps=24, batch_size=16, lr=2e-3, warmup=2, checkpoint_every=8,
                    eval_fraction=0.25, precision="fp32")
    return TrainConfig(**{**settings, **overrides})


def test_loss_decreases_and_output_loads(pairs_file, tmp_path):
    report = train(pairs_file, tmp_path / "out", _quick(), arch="tiny", progress=False,
                   log=lambda _: None)
    losses = report["losses"]
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.2
    assert {"recall@1", "recall@5"} <= set(report) and 0 <= report["recall@1"] <= 1
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert saved["losses"] == losses
    model = vislang.load(str(tmp_path / "out"))
    assert model.kind == "clip" and model.embed_images([pairs_file.parent / "images" /
                                                       "00000.png"]).shape == (1, 16)
    assert not (tmp_path / "out" / "checkpoint").exists()  # cleaned up after a finished run


def test_killed_run_resumes_from_its_checkpoint(pairs_file, tmp_path):
    args = ["train", "--data", pairs_file, "--config", "tiny", "--steps", "24",
            "--batch-size", "16", "--lr", "2e-3", "--warmup", "2", "--checkpoint-every", "8",
            "--eval-fraction", "0.25", "--precision", "fp32"]
    reference = run_cli(*args, "--out", tmp_path / "whole", "--json")
    assert reference.returncode == 0, reference.stderr
    whole = json.loads(reference.stdout)["losses"]

    out = tmp_path / "killed"
    process = subprocess.Popen([str(VISLANG), *map(str, args), "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoint" / "trainer_state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state.exists(), "the run ended before writing a checkpoint"

    resumed = run_cli(*args, "--out", out, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert "steps 8..24" in resumed.stderr or "steps 16..24" in resumed.stderr
    losses = json.loads(resumed.stdout)["losses"]
    assert len(losses) == 24
    # Same batches, same weights, same optimiser moments: the same losses as an unbroken run.
    assert np.allclose(losses, whole, atol=1e-3)


def test_feedback_lifts_clicked_image_above_skipped(pairs_file, tmp_path):
    images = sorted((pairs_file.parent / "images").glob("*.png"))
    clicked, skipped = images[0], images[1:4]
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(json.dumps({"query": "my favourite holiday picture",
                                    "clicked": [str(clicked)],
                                    "shown": [str(p) for p in [*skipped, clicked]]}) + "\n")
    train(pairs_file, tmp_path / "out", _quick(steps=16), arch="tiny", feedback=feedback,
          progress=False, log=lambda _: None)
    model = vislang.load(str(tmp_path / "out"))
    scores = model.embed_images([clicked, *skipped]) @ model.embed_texts(
        ["my favourite holiday picture"])[0]
    assert scores[0] > scores[1:].max()


def test_feedback_alone_with_frozen_towers_lifts_the_clicked_image(pairs_file, tmp_path):
    # No pairs, towers frozen: the trainer keeps each image's and query's tower output and
    # trains the projections on them; the saved model must rank as the training saw it.
    images = sorted((pairs_file.parent / "images").glob("*.png"))
    clicked, skipped = images[5], images[6:12]
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(json.dumps({"query": "the one from the lake",
                                    "clicked": [str(clicked)],
                                    "shown": [str(p) for p in [*skipped, clicked]]}) + "\n")
    report = train(None, tmp_path / "out", _quick(steps=30, lr=2e-2, freeze="towers"),
                   arch="tiny", feedback=feedback, progress=False, log=lambda _: None)
    assert report["pairs"] == 0 and report["searches"] == 1
    model = vislang.load(str(tmp_path / "out"))
    scores = model.embed_images([clicked, *skipped]) @ model.embed_texts(
        ["the one from the lake"])[0]
    assert scores[0] > scores[1:].max()
    with pytest.raises(InputError, match="nothing to train on"):
        train(None, tmp_path / "none", _quick(), arch="tiny", progress=False)


def test_bad_records_are_skipped_with_line_numbers(pairs_file, tmp_path):
    lines = pairs_file.read_text().splitlines()[:40]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([
        *lines[:10],
        "{not json",
        json.dumps({"image": "missing.png", "caption": "a red circle"}),
        json.dumps({"image": str(pairs_file.parent / "images" / "00000.png"), "caption": " "}),
        *lines[10:],
    ]))
    # Relative image paths resolve against the pairs file's own folder.
    (tmp_path / "images").symlink_to(pairs_file.parent / "images")
    logged = []
    report = train(broken, tmp_path / "out", _quick(steps=2), arch="tiny", progress=False,
                   log=logged.append)
    assert report["skipped_records"] == 3 and report["pairs"] + report["held_out"] == 40
    text = "\n".join(logged)
    assert "broken.jsonl:11: not valid JSON" in text
    assert "broken.jsonl:12: image not found" in text
    assert "broken.jsonl:13: empty or missing caption" in text


def test_nothing_usable_is_a_clear_error(tmp_path):
    empty = tmp_path / "pairs.jsonl"
    empty.write_text(json.dumps({"image": "nope.png", "caption": "x"}) + "\n")
    with pytest.raises(InputError, match="no usable.*image not found"):
        train(empty, tmp_path / "out", _quick(), arch="tiny", progress=False, log=lambda _: None)


def test_freeze_vision_trains_only_text_and_image_folder_reports_zeroshot(shapes_dir, tmp_path):
    report = train(shapes_dir / "classes", tmp_path / "out", _quick(steps=4, freeze="vision"),
                   arch="tiny", progress=False, log=lambda _: None)
    assert 0 <= report["zeroshot_top1"] <= 1
    from vislang.models.tiny import tiny_clip

    # The run started from the same seeded initialisation as this fresh copy.
    start = load_file(tiny_clip(tmp_path / "fresh", config="tiny") / "model.safetensors")
    after = load_file(tmp_path / "out" / "model.safetensors")
    vision = [k for k in after if k.startswith("vision_model.")]
    text = [k for k in after if k.startswith("text_model.")]
    assert all(np.array_equal(after[k], start[k]) for k in vision)
    assert any(not np.array_equal(after[k], start[k]) for k in text)


def test_csv_pairs_and_cli_errors(pairs_file, tmp_path):
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()[:30]]
    csv_file = pairs_file.parent / "pairs.csv"
    csv_file.write_text("image,caption\n" + "".join(f'{r["image"]},"{r["caption"]}"\n'
                                                    for r in rows))
    report = train(csv_file, tmp_path / "out", _quick(steps=2), arch="tiny", progress=False,
                   log=lambda _: None)
    assert report["pairs"] + report["held_out"] == 30
    result = run_cli("train", "--data", csv_file, "--out", tmp_path / "x")
    assert result.returncode == 2 and "exactly one of --init" in result.stderr
    result = run_cli("train", "--data", csv_file, "--out", tmp_path / "y", "--resume")
    assert result.returncode == 2 and "no checkpoint" in result.stderr


@pytest.mark.parametrize("device, message", [
    ("CPU", "training runs on torch: --device cpu, cuda or cuda:N, not the OpenVINO device CPU"),
    pytest.param("cuda", "no CUDA device: torch sees none",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")),
])
def test_train_device_errors_are_one_line_before_any_work(pairs_file, tmp_path, device, message):
    result = run_cli("train", "--data", pairs_file, "--out", tmp_path / "x", "--config", "tiny",
                     "--device", device)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_lowers_the_loss_and_saves_a_cpu_loadable_model(pairs_file, tmp_path):
    report = train(pairs_file, tmp_path / "out", _quick(device="cuda", precision="auto"),
                   arch="tiny", progress=False, log=lambda _: None)
    assert np.mean(report["losses"][-4:]) < np.mean(report["losses"][:4]) - 0.2
    assert vislang.load(str(tmp_path / "out"), device="cpu").embed_texts(["a"]).shape == (1, 16)
