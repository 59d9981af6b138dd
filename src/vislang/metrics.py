"""Evaluation metrics shared by the CLI, training and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy_report(probs: np.ndarray, targets: np.ndarray, classes: Sequence[str]) -> dict:
    """Top-1 / top-5 accuracy and per-class top-1 from class probabilities ``[N, C]``."""
    ranked = np.argsort(-probs, axis=1, kind="stable")
    top1 = ranked[:, 0] == targets
    top5 = (ranked[:, :5] == targets[:, None]).any(axis=1)
    per_class = [{"class": name, "images": int((targets == i).sum()),
                  "top1": float(top1[targets == i].mean()) if (targets == i).any() else None}
                 for i, name in enumerate(classes)]
    return {"top1": float(top1.mean()), "top5": float(top5.mean()), "per_class": per_class}


def text_to_image_recall(image_vectors: np.ndarray, captions: Sequence[str],
                         text_vectors: np.ndarray, queries: Sequence[str],
                         ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Recall@k of text -> image retrieval, one query per distinct caption.

    A query hits at k when one of the top k images carries that exact caption: generated and
    templated data repeat captions, and any image a caption describes is a right answer.
    """
    order = np.argsort(-(text_vectors @ image_vectors.T), axis=1, kind="stable")
    captions = np.asarray(captions, dtype=object)
    hits = {k: 0 for k in ks}
    for query, ranked in zip(queries, order):
        matches = captions[ranked] == query
        for k in ks:
            hits[k] += bool(matches[:k].any())
    return {f"recall@{k}": hits[k] / max(len(queries), 1) for k in ks}
