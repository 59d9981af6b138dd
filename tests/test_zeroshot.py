"""Zero-shot classification: prompt ensembling and agreement with the CLIP API's logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vislang
from vislang.errors import InputError
from vislang.prompts import OPENAI_IMAGENET_TEMPLATES
from vislang.zeroshot import Classifier, class_embeddings


def _images() -> list[Image.Image]:
    colours = [(230, 30, 30), (30, 200, 60), (40, 60, 230), (240, 220, 40)]
    return [Image.new("RGB", (48, 40), c) for c in colours]


def test_class_embedding_is_renormalised_mean_of_template_embeddings(clip_model):
    templates = ["a photo of a {}.", "a drawing of a {}.", "{}"]
    weights = class_embeddings(clip_model, ["cat", "red circle"], templates)
    for row, label in zip(weights, ["cat", "red circle"]):
        with torch.no_grad():
            f = clip_model.encode_text(vislang.tokenize([t.format(label) for t in templates]))
        f = f / f.norm(dim=-1, keepdim=True)
        mean = f.mean(0)
        assert np.allclose(row, (mean / mean.norm()).numpy(), atol=1e-5)
        assert np.isclose(np.linalg.norm(row), 1, atol=1e-5)


def test_single_template_probabilities_equal_softmax_of_clip_logits(clip_model):
    labels = ["red", "green", "blue", "yellow"]
    clf = Classifier(clip_model, labels, templates=["{}"])
    images = _images()
    predictions = clf.predict(images, top_k=4)
    pixels = torch.stack([clip_model.preprocess(i) for i in images])
    with torch.no_grad():
        expected = clip_model(pixels, vislang.tokenize(labels))[0].softmax(dim=-1).numpy()
    for row, preds in zip(expected, predictions):
        assert [p.label for p in preds] == [labels[j] for j in np.argsort(-row, kind="stable")]
        assert np.allclose([p.prob for p in preds], np.sort(row)[::-1], atol=1e-5)


def test_predictions_are_sorted_and_top_k_is_capped(clip_model):
    clf = Classifier(clip_model, ["cat", "dog", "bird"])
    (preds,) = clf.predict(_images()[:1], top_k=10)
    assert len(preds) == 3
    probs = [p.prob for p in preds]
    assert probs == sorted(probs, reverse=True) and np.isclose(sum(probs), 1, atol=1e-5)
    assert len(clf.predict(_images()[:1], top_k=1)[0]) == 1


def test_template_sets_by_name(clip_model):
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert Classifier(clip_model, ["cat", "dog"], templates="imagenet").templates == \
        OPENAI_IMAGENET_TEMPLATES


@pytest.mark.parametrize("labels, templates, message", [
    (["cat"], None, "at least two labels"),
    (["cat", " "], None, "empty"),
    (["cat", "dog", "cat"], None, "repeat: cat"),
    (["cat", "dog"], ["a photo"], "exactly one '{}'"),
    (["cat", "dog"], "imagenette", "unknown template set"),
])
def test_bad_labels_and_templates_are_clear_errors(clip_model, labels, templates, message):
    with pytest.raises(InputError, match=message):
        Classifier(clip_model, labels, templates)
