"""The shipped shapes-clip model gives right answers (scenes from seeds never used in training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

import vislang
from conftest import run_cli
from vislang.datasets.shapes import CLASS_NAMES, generate_scenes
from vislang.metrics import text_to_image_recall
from vislang.zeroshot import Classifier


@pytest.fixture(scope="module")
def model():
    return vislang.load("shapes-clip")


def test_listed_and_on_disk_with_a_stable_key(model):
    info = {m.name: m for m in vislang.model_records()}["shapes-clip"]
    assert info.on_disk and info.source == "vislang package"
    assert model.model_key == vislang.load("shapes-clip").model_key
    assert model.model_key.startswith("shapes-clip@")


def test_zero_shot_names_colour_and_shape(model):
    scenes = generate_scenes(120, seed=424242, n_objects=1)
    classifier = Classifier(model, list(CLASS_NAMES))
    predictions = classifier.predict([s.image for s in scenes], top_k=1)
    truth = [f"{s.objects[0].colour} {s.objects[0].shape}" for s in scenes]
    accuracy = np.mean([p[0].label == t for p, t in zip(predictions, truth)])
    assert accuracy >= 0.9


def test_caption_finds_its_two_object_scene(model):
    scenes = generate_scenes(150, seed=434343, n_objects=2)
    captions = [s.caption for s in scenes]
    queries = list(dict.fromkeys(captions))
    images = model.embed_images([s.image for s in scenes])
    recall = text_to_image_recall(images, captions, model.embed_texts(queries), queries)
    assert recall["recall@1"] >= 0.7 and recall["recall@5"] >= 0.9


def test_a_plain_drawing_is_recognised(model):
    image = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(image).ellipse((90, 40, 210, 160), fill=(225, 30, 30))
    (best,) = Classifier(model, list(CLASS_NAMES)).predict([image], top_k=1)[0]
    assert best.label == "red circle"


def test_classify_command_with_shapes_clip(tmp_path):
    blue_square = tmp_path / "blue.png"
    image = Image.new("RGB", (64, 64), (235, 235, 230))
    ImageDraw.Draw(image).rectangle((16, 16, 44, 44), fill=(40, 80, 220))
    image.save(blue_square)
    result = run_cli("classify", blue_square, "--labels", "red circle,blue square,yellow triangle",
                     "--model", "shapes-clip", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["predictions"][0]["label"] == "blue square"
