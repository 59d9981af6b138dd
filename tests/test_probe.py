"""Linear probe: C sweep, accuracy on separable data, safe save/load."""

from __future__ import annotations

import numpy as np
import pytest

from vislang.errors import InputError
from vislang.probe import C_GRID, LinearProbe, fit_probe


def _blobs(n_per_class: int, n_classes: int, dim: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 2
    x = np.concatenate([c + rng.normal(size=(n_per_class, dim)) for c in centres])
    y = np.repeat(np.arange(n_classes), n_per_class)
    return x.astype(np.float32), y


def _fit(x, y, labels):
    return fit_probe(x, y, labels, model_name="m", model_key="m@1")


def test_probe_learns_separable_classes_and_reports_the_sweep():
    x, y = _blobs(40, 3)
    probe = _fit(x, y, ["a", "b", "c"])
    x_test, y_test = _blobs(30, 3, seed=0)[0][::2], _blobs(30, 3, seed=0)[1][::2]
    assert (probe.predict(x_test) == y_test).mean() >= 0.95
    assert probe.C in C_GRID and set(probe.sweep) == set(C_GRID)
    assert max(probe.sweep.values()) == probe.sweep[probe.C]


def test_binary_probe_matches_sklearn_probabilities():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(30, 2, seed=1)
    probe = _fit(x, y, ["no", "yes"])
    reference = LogisticRegression(C=probe.C, max_iter=1000, random_state=0).fit(x, y)
    assert probe.coef.shape == (2, x.shape[1])
    assert np.allclose(probe.probabilities(x), reference.predict_proba(x), atol=1e-4)


def test_save_and_load_round_trip(tmp_path):
    x, y = _blobs(20, 3)
    probe = _fit(x, y, ["a", "b", "c"])
    loaded = LinearProbe.load(probe.save(tmp_path / "probe.npz"))
    assert loaded.labels == ["a", "b", "c"] and loaded.model_key == "m@1"
    assert loaded.C == probe.C and loaded.sweep == probe.sweep
    assert np.allclose(loaded.probabilities(x), probe.probabilities(x))


def test_a_file_that_is_not_a_probe_is_a_clear_error(tmp_path):
    bogus = tmp_path / "probe.npz"
    bogus.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="not a probe saved by"):
        LinearProbe.load(bogus)


def test_class_with_a_single_image_is_refused():
    x, y = _blobs(10, 2)
    x, y = np.vstack([x, x[:1]]), np.append(y, 2)
    with pytest.raises(InputError, match="at least 2 training images.*'c'"):
        _fit(x, y, ["a", "b", "c"])
