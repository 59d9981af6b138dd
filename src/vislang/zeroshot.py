"""Zero-shot classification: name the classes in words, no training.

    >>> clf = Classifier(model, ["cat", "dog"])
    >>> clf.predict(["pet.jpg"], top_k=1)
    [[Prediction(label='cat', prob=0.97)]]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from vislang.errors import InputError
from vislang.models.clip import ClipModel, ImageInput
from vislang.prompts import TEMPLATE_SETS


@dataclass(frozen=True)
class Prediction:
    label: str
    prob: float


def resolve_templates(templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """A template-set name (``"default"``, ``"imagenet"``, ...) or a list of ``{}`` strings."""
    if templates is None:
        templates = "default"
    if isinstance(templates, str):
        if templates not in TEMPLATE_SETS:
            names = ", ".join(TEMPLATE_SETS)
            raise InputError(f"unknown template set {templates!r}; choose one of: {names}")
        return TEMPLATE_SETS[templates]
    templates = tuple(templates)
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise InputError(f"each template needs exactly one '{{}}' for the label; got {bad or '[]'}")
    return templates


def check_labels(labels: Sequence[str]) -> list[str]:
    labels = [label.strip() for label in labels]
    if len(labels) < 2:
        raise InputError(f"zero-shot classification needs at least two labels, got {labels}")
    if any(not label for label in labels):
        raise InputError("a label is empty; give every class a name")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise InputError(f"labels repeat: {', '.join(duplicates)}")
    return labels


def class_embeddings(model: ClipModel, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """Prompt ensembling: mean of each label's normalised template embeddings, renormalised."""
    sentences = [t.format(label) for label in labels for t in templates]
    per_sentence = model.embed_texts(sentences).reshape(len(labels), len(templates), -1)
    mean = per_sentence.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


class Classifier:
    """Classify images among ``labels`` by similarity to their prompt embeddings."""

    def __init__(self, model: ClipModel, labels: Sequence[str],
                 templates: str | Sequence[str] | None = None):
        self.model = model
        self.labels = check_labels(labels)
        self.templates = resolve_templates(templates)
        self.weights = class_embeddings(model, self.labels, self.templates)  # [C, D]

    def probabilities(self, image_features: np.ndarray) -> np.ndarray:
        """Normalised image features ``[N, D]`` -> class probabilities ``[N, C]``."""
        logits = self.model.logit_scale * image_features @ self.weights.T
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, images: Iterable[ImageInput], top_k: int = 5,
                batch_size: int | None = None, progress: bool = False) -> list[list[Prediction]]:
        """Per image, the ``top_k`` most likely labels, best first."""
        features = self.model.embed_images(images, batch_size=batch_size, progress=progress)
        return top_predictions(self.probabilities(features), self.labels, top_k)


def top_predictions(probs: np.ndarray, labels: Sequence[str], top_k: int) -> list[list[Prediction]]:
    order = np.argsort(-probs, axis=1, kind="stable")[:, : max(1, top_k)]
    return [[Prediction(labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]
