"""Linear probe: logistic regression on frozen image features (the CLIP paper's evaluation).

C (inverse regularisation) matters a lot and differs per dataset, so it is swept on a
validation split of the training set, then the model is refit on all training data.
A saved probe is a plain ``.npz`` of arrays and JSON -- no pickle, safe to load from anywhere.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vislang.errors import InputError

C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-2, 3, 11))


@dataclass
class LinearProbe:
    labels: list[str]
    coef: np.ndarray  # [C, D]
    intercept: np.ndarray  # [C]
    C: float
    model_name: str  # what vislang.load takes to rebuild the feature extractor
    model_key: str  # the exact weights the features came from
    sweep: dict[float, float] = field(default_factory=dict)  # C -> validation accuracy

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = features @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.probabilities(features).argmax(axis=1)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        meta = {"labels": self.labels, "C": self.C, "model_name": self.model_name,
                "model_key": self.model_key, "sweep": {str(c): a for c, a in self.sweep.items()}}
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz"
            np.savez(f, coef=self.coef, intercept=self.intercept, meta=json.dumps(meta))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LinearProbe":
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                coef, intercept = data["coef"], data["intercept"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise InputError(f"{path} is not a probe saved by `vislang probe --save` ({e})") from e
        sweep = {float(c): a for c, a in meta.pop("sweep").items()}
        return cls(coef=coef, intercept=intercept, sweep=sweep, **meta)


def fit_probe(features: np.ndarray, targets: np.ndarray, labels: list[str], *, model_name: str,
              model_key: str, grid: tuple[float, ...] = C_GRID, val_fraction: float = 0.2,
              seed: int = 0) -> LinearProbe:
    """Sweep C on a held-out split of (features, targets), then refit on all of it."""
    from sklearn.model_selection import train_test_split

    targets = np.asarray(targets)
    counts = np.bincount(targets, minlength=len(labels))
    if (counts < 2).any():
        thin = [labels[i] for i in np.flatnonzero(counts < 2)]
        raise InputError(f"every class needs at least 2 training images; too few for: {thin}")
    x_fit, x_val, y_fit, y_val = train_test_split(
        features, targets, test_size=max(val_fraction, len(labels) / len(targets)),
        random_state=seed, stratify=targets)
    sweep = {c: float((_fit(x_fit, y_fit, c).predict(x_val) == y_val).mean()) for c in grid}
    best = max(sweep, key=lambda c: (sweep[c], -abs(np.log10(c))))  # ties: the milder C
    final = _fit(features, targets, best)
    coef, intercept = final.coef_, final.intercept_
    if coef.shape[0] == 1:  # sklearn's binary model: sigmoid(w.x + b) == softmax([0, w.x + b])
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    return LinearProbe(labels, coef.astype(np.float32), intercept.astype(np.float32), best,
                       model_name, model_key, sweep)


def _fit(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=1000, random_state=0).fit(x, y)
