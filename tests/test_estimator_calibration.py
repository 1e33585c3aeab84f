import math

import numpy as np
import pytest
from scipy.special import ndtri

from deepens import calibration as calib
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
    # The returned std is the calibrated one: the Gaussian with it has the conformal 90% interval.
    np.testing.assert_allclose(d["upper"], mean + ndtri(0.95) * std, rtol=1e-6)
    raw_std = model._to_user(model._distribution(x[test]).std, shift=False)
    np.testing.assert_allclose(d["upper"], mean + cal.value * raw_std, rtol=1e-5)
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


@pytest.mark.parametrize("kind", ["conformal", "scale"])
def test_nll_cdf_std_and_uncertainty_describe_one_calibrated_distribution(kind):
    rng = np.random.default_rng(4)
    x, y = _heteroscedastic(rng, 900)
    fit, test = slice(0, 500), slice(500, None)
    model = DeepEnsembleRegressor(calibration=kind, **FAST).fit(x[fit], y[fit])
    factor = calib.stretch(model.calibration_)
    assert factor > 0 and math.isfinite(factor)
    if kind == "scale":
        assert factor == model.calibration_.value
    else:
        assert factor == pytest.approx(model.calibration_.value / ndtri(0.95))
    prediction = model._distribution(x[test])
    scale = model.y_scale_[0]
    mean, std = model.predict(x[test], return_std=True)
    np.testing.assert_allclose(std, factor * scale * np.asarray(prediction.std), rtol=1e-5)
    u = model.predict_uncertainty(x[test])
    np.testing.assert_allclose(u.total, std**2, rtol=1e-4)
    np.testing.assert_allclose(
        u.epistemic, factor**2 * scale**2 * np.asarray(prediction.uncertainty.epistemic), rtol=1e-4
    )
    # The stretched mixture's CDF: the mixture's at the point mapped back, so its median stays the mean
    # and a point 2 stds out sits where 2 / factor raw stds out sits in the mixture.
    np.testing.assert_allclose(model.predict_cdf(x[test], mean), np.asarray(prediction.cdf(prediction.mean)), atol=1e-5)
    far = mean + 2 * std
    raw_far = np.asarray(prediction.mean) + 2 * np.asarray(prediction.std)
    np.testing.assert_allclose(model.predict_cdf(x[test], far), np.asarray(prediction.cdf(raw_far)), atol=1e-4)
    # nll: the density of the stretched mixture, log s (times the unit change) above the mixture's there.
    expected = np.asarray(prediction.nll(raw_far), np.float64) + math.log(factor) + math.log(scale)
    np.testing.assert_allclose(model.nll(x[test], far), expected, rtol=1e-5, atol=1e-5)
    scores = model.evaluate(x[test], y[test])
    assert scores["nll_mixture"] == pytest.approx(np.mean(model.nll(x[test], y[test])), rel=1e-4)
    assert scores["rmse"] == scores["rmse_uncalibrated"]
    for level in (0.5, 0.8, 0.9, 0.95):
        lower, upper = model.predict_interval(x[test], level)
        inside = (y[test] >= lower) & (y[test] <= upper)
        assert scores[f"coverage_{level:g}"] == pytest.approx(inside.mean())
        assert f"coverage_{level:g}_uncalibrated" in scores
    off = DeepEnsembleRegressor(calibration=None, **FAST).fit(x[fit], y[fit]).evaluate(x[test], y[test])
    assert not any(k.endswith("_uncalibrated") for k in off)


def test_classifier_evaluate_reports_before_and_after_the_temperature():
    rng = np.random.default_rng(5)
    n = 600
    x = rng.normal(size=(n, 2))
    y = (x[:, 0] + 0.8 * rng.normal(size=n) > 0).astype(int)
    # Long training on noisy labels: an overconfident ensemble, which the temperature should soften.
    model = DeepEnsembleClassifier(**{**FAST, "epochs": 60, "hidden_layer_sizes": (64,)}).fit(x[:400], y[:400])
    assert model.calibration_.value > 1.0
    scores = model.evaluate(x[400:], y[400:])
    assert scores["accuracy"] == scores["accuracy_uncalibrated"]
    assert scores["nll"] == pytest.approx(np.mean(model.nll(x[400:], y[400:])), rel=1e-6)
    assert "ece_uncalibrated" in scores and "ece" in scores
    d = model.describe(x[400:])
    np.testing.assert_array_equal(np.argmax(d["probs"], 1), np.argmax(d["probs_uncalibrated"], 1))


def test_early_stopping_on_the_calibration_rows():
    rng = np.random.default_rng(6)
    x, y = _heteroscedastic(rng, 400)
    settings = {**FAST, "epochs": 40, "batch_size": None}
    stopped = DeepEnsembleRegressor(early_stopping=True, patience=4, **settings).fit(x, y)
    plain = DeepEnsembleRegressor(**settings).fit(x, y)
    assert stopped.ensemble_.history.shape[0] <= 40 and stopped.calibration_.kind == "conformal"
    # Same split and the same first epochs: early stopping changes only when training ends and which
    # epoch's networks are kept (deepens.early_stopping's own tests check that they are the best).
    np.testing.assert_array_equal(stopped.ensemble_.history[:5], plain.ensemble_.history[:5])
    assert len(stopped.calibration_scores_) == len(plain.calibration_scores_)
    with pytest.raises(ValueError, match="early_stopping needs the calibration rows"):
        DeepEnsembleRegressor(early_stopping=True, calibration=None, **settings).fit(x, y)
    with pytest.raises(ValueError, match="patience"):
        DeepEnsembleClassifier(early_stopping=True, patience=0, **settings).fit(x, y > 0)
    classifier = DeepEnsembleClassifier(early_stopping=True, patience=3, **settings).fit(x, y > 0)
    assert classifier.calibration_.kind == "temperature" and classifier.ensemble_.history.shape[0] <= 40


@pytest.mark.parametrize("estimator", [DeepEnsembleRegressor, DeepEnsembleClassifier])
def test_fitting_a_dataframe_with_calibration_warns_nothing(estimator):
    # The held-out rows are scored as the arrays fit already checked; checked again as new data they made
    # scikit-learn warn "X does not have valid feature names" on every `deepens train`.
    import warnings

    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    y = frame["a"].to_numpy() if estimator is DeepEnsembleRegressor else (frame["a"] > 0).astype(int).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = estimator(**{**FAST, "epochs": 2}).fit(frame, y)
        model.predict(frame)
    assert model.calibration_ is not None
