import math

import numpy as np
import pytest

from deepens.calibration import Calibration, conformal_quantile
from deepens.sklearn import DeepEnsembleClassifier, DeepEnsembleRegressor

FAST = dict(members=2, hidden_layer_sizes=(16,), epochs=15, batch_size=64, learning_rate=0.02, random_state=0)


def _heteroscedastic(rng, n):
    x = rng.uniform(-3, 3, size=(n, 1))
    y = np.sin(x[:, 0]) + (0.2 + 0.3 * np.abs(x[:, 0])) * rng.standard_t(df=3, size=n)
    return x, y


def test_conformal_intervals_cover_held_out_rows_and_survive_saving(tmp_path):
    rng = np.random.default_rng(0)
    x, y = _heteroscedastic(rng, 3000)
    train, test = slice(0, 1000), slice(1000, None)
    model = DeepEnsembleRegressor(**FAST).fit(x[train], y[train])
    cal = model.calibration_
    n_cal = len(model.calibration_scores_)
    assert cal.kind == "conformal" and cal.level == 0.9 and n_cal == 200
    for level in (0.5, 0.8, 0.9, 0.95):
        lower, upper = model.predict_interval(x[test], level)
        covered = (y[test] >= lower) & (y[test] <= upper)
        # Given one calibration set the coverage is Beta distributed around the level (std about
        # sqrt(level (1 - level) / (n_cal + 2))); the test rows add binomial noise on top.
        mc = math.sqrt(level * (1 - level) / (n_cal + 2) + level * (1 - level) / covered.size)
        assert covered.mean() >= level - 3 * mc, (level, covered.mean())
    d = model.describe(x[test], level=0.9)
    np.testing.assert_allclose(d["lower"], model.predict_interval(x[test], 0.9)[0])
    mean, std = model.predict(x[test], return_std=True)
    np.testing.assert_allclose(d["upper"], mean + cal.value * std, rtol=1e-6)
    model.save(tmp_path / "m")
    import deepens

    loaded = deepens.load(tmp_path / "m")
    assert loaded.calibration_ == cal
    np.testing.assert_array_equal(loaded.predict_interval(x[test], 0.8)[1], model.predict_interval(x[test], 0.8)[1])


def test_scale_calibration_and_off():
    rng = np.random.default_rng(1)
    x, y = _heteroscedastic(rng, 300)
    scaled = DeepEnsembleRegressor(calibration="scale", **FAST).fit(x, y)
    assert scaled.calibration_.kind == "scale" and scaled.calibration_.value > 0
    off = DeepEnsembleRegressor(calibration=None, **FAST).fit(x, y)
    assert off.calibration_ is None
    small = DeepEnsembleRegressor(**FAST).fit(x[:40], y[:40])  # "auto" with < 50 rows: skipped
    assert small.calibration_ is None
    with pytest.raises(ValueError, match="at least 10 held-out rows"):
        DeepEnsembleRegressor(calibration="conformal", **FAST).fit(x[:40], y[:40])
    with pytest.raises(ValueError, match="calibration must be"):
        DeepEnsembleRegressor(calibration="isotonic", **FAST).fit(x, y)
    with pytest.raises(ValueError, match="calibration_fraction"):
        DeepEnsembleRegressor(calibration_fraction=1.5, **FAST).fit(x, y)


def test_temperature_calibration_of_the_classifier_keeps_predictions():
    rng = np.random.default_rng(2)
    n = 400
    x = rng.normal(size=(n, 2))
    y = np.where(x[:, 0] + 0.7 * rng.normal(size=n) > 0, "a", "b")
    model = DeepEnsembleClassifier(**FAST).fit(x, y)
    assert model.calibration_.kind == "temperature"
    probs = model.predict_proba(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.exp(model.predict_log_proba(x)), probs, rtol=1e-5, atol=1e-7)
    raw = model.ensemble_.predict(((x - model.x_mean_) / model.x_scale_).astype(np.float32)).probs
    np.testing.assert_array_equal(np.argmax(probs, axis=1), np.argmax(np.asarray(raw), axis=1))
    np.testing.assert_allclose(model.describe(x)["probs"], probs)
    assert Calibration.from_config(model.calibration_.to_config()) == model.calibration_
    assert conformal_quantile([1.0], 0.5) == 1.0
