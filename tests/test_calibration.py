import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from deepens.calibration import (
    Calibration,
    conformal_index,
    conformal_interval,
    conformal_quantile,
    conformal_scores,
    fit_conformal,
    fit_std_scale,
    fit_temperature,
    regression_scores,
    stretch,
    stretch_members,
    temper,
)

# --- conformal ---------------------------------------------------------------------------------


def test_quantile_index_hand_value():
    # n = 19, level 0.9: k = ceil(20 * 0.9) = 18, although 20 * 0.9 is 18.000000000000004 in floats.
    assert conformal_index(19, 0.9) == 18
    scores = np.arange(1.0, 20.0)[::-1].copy()  # 19, 18, ..., 1 in no sorted order
    assert conformal_quantile(scores, 0.9) == 18.0
    assert conformal_index(9, 0.9) == 9
    assert conformal_index(10, 0.9) == 10  # ceil(9.9)


def test_quantile_infinite_when_too_few_rows():
    assert conformal_quantile([0.3], 0.5) == 0.3  # n = 1: k = ceil(2 * 0.5) = 1
    assert conformal_quantile([0.3], 0.9) == math.inf  # k = 2 > 1
    assert conformal_quantile(np.ones(8), 0.9) == math.inf  # k = ceil(8.1) = 9 > 8


def test_quantile_with_ties():
    scores = np.array([1.0, 2.0, 2.0, 2.0, 3.0])
    assert conformal_quantile(scores, 0.5) == 2.0  # k = 3
    assert conformal_quantile(np.full(30, 0.7), 0.9) == 0.7
    # Ties cannot lower the coverage: every tied score is <= q.
    s = np.repeat([1.0, 2.0, 3.0], 10)
    q = conformal_quantile(s, 0.8)
    assert np.mean(s <= q) >= 0.8


def test_conformal_coverage_over_random_splits():
    rng = np.random.default_rng(0)
    level, n_cal, n_test, splits = 0.9, 50, 200, 200
    n = n_cal + n_test
    x = rng.uniform(-2, 2, size=n)
    true_std = 0.3 + 0.5 * np.abs(x)
    y = np.sin(x) + true_std * rng.standard_t(df=4, size=n)  # heavy tails: Gaussian intervals would fail
    mean = np.sin(x) + 0.1  # a biased model
    std = 0.5 * (0.3 + 0.5 * np.abs(x))  # overconfident by a factor 2
    coverages = []
    for _ in range(splits):
        perm = rng.permutation(n)
        cal, test = perm[:n_cal], perm[n_cal:]
        q = fit_conformal(y[cal], mean[cal], std[cal], level)
        lo, hi = conformal_interval(mean[test], std[test], q)
        coverages.append(np.mean((y[test] >= lo) & (y[test] <= hi)))
    cov = np.asarray(coverages)
    mc = cov.std(ddof=1) / math.sqrt(splits)
    # Marginal coverage lies in [level, level + 1/(n_cal + 1)] for exchangeable data.
    assert cov.mean() >= level - 3 * mc
    assert cov.mean() <= level + 1 / (n_cal + 1) + 3 * mc
    # The uncalibrated 90% Gaussian interval of this overconfident model covers far less.
    raw = np.mean(np.abs(y - mean) <= 1.6448536 * std)
    assert raw < 0.75


def test_conformal_interval_and_scores():
    lo, hi = conformal_interval(np.array([1.0, 2.0]), np.array([0.5, 2.0]), 2.0)
    np.testing.assert_allclose(lo, [0.0, -2.0])
    np.testing.assert_allclose(hi, [2.0, 6.0])
    y, m, s = np.arange(10.0), np.zeros(10), np.full(10, 2.0)
    np.testing.assert_allclose(conformal_scores(y, m, s), np.arange(10.0) / 2)


# --- temperature -------------------------------------------------------------------------------


def _overconfident(rng, n=600, k=4, sharpen=4.0):
    true_logits = rng.normal(size=(n, k)) * 1.5
    probs = np.exp(log_softmax(true_logits, axis=1))
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return log_softmax(true_logits * sharpen, axis=1), labels


def _nll(lp, labels):
    return -np.mean(lp[np.arange(len(labels)), labels])


def test_temperature_lowers_nll_and_keeps_argmax():
    rng = np.random.default_rng(1)
    lp, labels = _overconfident(rng)
    cal, test = slice(0, 300), slice(300, None)
    t = fit_temperature(lp[cal], labels[cal])
    assert 2.0 < t < 8.0  # the model was sharpened by 4
    before, after = _nll(lp[test], labels[test]), _nll(temper(lp[test], t), labels[test])
    assert after < before - 0.1
    np.testing.assert_array_equal(np.argmax(temper(lp, t), axis=1), np.argmax(lp, axis=1))
    np.testing.assert_allclose(np.exp(temper(lp, t)).sum(axis=1), 1.0, rtol=1e-12)


def test_temperature_matches_brute_force_and_underconfident():
    rng = np.random.default_rng(2)
    lp, labels = _overconfident(rng, sharpen=0.3)  # underconfident: T < 1
    t = fit_temperature(lp, labels)
    assert t < 1.0
    grid = np.exp(np.linspace(np.log(0.05), np.log(5), 4001))
    best = grid[np.argmin([_nll(temper(lp, g), labels) for g in grid])]
    assert abs(math.log(t) - math.log(best)) < 2e-3


def test_temperature_one_is_identity():
    rng = np.random.default_rng(3)
    lp = log_softmax(rng.normal(size=(20, 5)), axis=1)
    np.testing.assert_allclose(temper(lp, 1.0), lp, atol=1e-12)


# --- variance scaling --------------------------------------------------------------------------


def test_std_scale_closed_form_matches_scipy():
    rng = np.random.default_rng(4)
    n = 200
    mean = rng.normal(size=n)
    std = rng.uniform(0.5, 2.0, size=n)
    y = mean + 2.5 * std * rng.normal(size=n)
    s = fit_std_scale(y, mean, std)

    def nll(scale):
        sd = scale * std
        return np.mean(np.log(sd) + 0.5 * ((y - mean) / sd) ** 2)

    res = minimize_scalar(nll, bounds=(0.01, 100), method="bounded", options={"xatol": 1e-10})
    assert abs(s - res.x) < 1e-6
    assert 2.0 < s < 3.0


# --- state -------------------------------------------------------------------------------------


def test_calibration_round_trips_json():
    for cal in (
        Calibration("temperature", 1.7),
        Calibration("scale", 0.8),
        Calibration("conformal", 1.9, level=0.9),
        Calibration("conformal", math.inf, level=0.95),
    ):
        text = json.dumps(cal.to_config(), allow_nan=False)
        assert Calibration.from_config(json.loads(text)) == cal


def test_calibration_rejects_bad_state():
    with pytest.raises(ValueError, match="kind"):
        Calibration("isotonic", 1.0)
    with pytest.raises(ValueError, match="level"):
        Calibration("conformal", 1.0)
    with pytest.raises(ValueError, match="temperature"):
        Calibration("temperature", 0.0)


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_errors():
    y, m, s = np.arange(20.0), np.zeros(20), np.ones(20)
    with pytest.raises(ValueError, match="NaN"):
        fit_std_scale(np.where(np.arange(20) == 3, np.nan, y), m, s)
    with pytest.raises(ValueError, match="at least 10 rows"):
        fit_conformal(y[:9], m[:9], s[:9], 0.9)
    with pytest.raises(ValueError, match="at least 10 rows"):
        fit_temperature(np.log(np.full((5, 2), 0.5)), np.zeros(5, dtype=int))
    for level in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="level"):
            fit_conformal(y, m, s, level)
    with pytest.raises(ValueError, match="std must be positive"):
        fit_conformal(y, m, np.where(np.arange(20) == 5, 0.0, s), 0.9)
    with pytest.raises(ValueError, match="std must be positive"):
        fit_std_scale(y, m, -s)
    with pytest.raises(ValueError, match="labels must lie"):
        fit_temperature(np.log(np.full((12, 2), 0.5)), np.full(12, 2))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.full((12, 2), np.nan), np.zeros(12, dtype=int))
    with pytest.raises(ValueError, match="temperature"):
        temper(np.zeros((2, 2)), -1.0)


def test_uninformative_held_out_predictions_keep_the_temperature_at_one():
    # Found by the property suite: with every held-out row uniform the NLL is flat in T and the search
    # returned 0.0101 (a 100-fold sharpening of every later prediction) or 100, depending on a row shift.
    from deepens.calibration import fit_temperature

    log_probs = np.full((12, 3), -np.log(3.0))
    labels = np.arange(12) % 3
    assert fit_temperature(log_probs, labels) == 1.0
    assert fit_temperature(log_probs + 1.0, labels) == 1.0


# --- the calibrated distribution and the low-level API (deepens.calibrated) -------------------


class _FixedEnsemble:
    """Stands in for a trained Ensemble: members whose outputs are fixed functions of x (no training)."""

    def __init__(self, head, outputs):
        self.head, self.outputs = head, outputs
        self.is_classifier = head.is_classifier

    def predict(self, x):
        from deepens.prediction import ClassificationPrediction, RegressionPrediction

        out = jnp.asarray(self.outputs(np.asarray(x, np.float32)))
        return ClassificationPrediction(out) if self.is_classifier else RegressionPrediction(self.head, out, True)


def _gaussian_members(x, m=1):
    """M Gaussian members with mean 2x + m and raw scale 0.3 (std softplus(0.3) + eps): (M, N, 2)."""
    rows = [np.stack([2 * x[:, 0] + k, np.full(len(x), 0.3)], axis=-1) for k in range(m)]
    return np.stack(rows)


def test_stretched_single_gaussian_is_the_gaussian_with_the_scaled_std():
    from deepens.calibrated import CalibratedRegression
    from deepens.heads import Gaussian

    x = np.linspace(-1, 1, 15)[:, None].astype(np.float32)
    prediction = _FixedEnsemble(Gaussian(), _gaussian_members).predict(x)
    mu, sigma = np.asarray(prediction.mean, np.float64), np.asarray(prediction.std, np.float64)
    y = mu + np.linspace(-3, 3, 15) * sigma
    for cal in (Calibration("scale", 1.7), Calibration("conformal", 2.5, 0.9)):
        s = stretch(cal)
        calibrated = CalibratedRegression(prediction, cal)
        np.testing.assert_allclose(calibrated.std, s * sigma, rtol=1e-6)
        np.testing.assert_allclose(calibrated.nll(y), -stats.norm.logpdf(y, mu, s * sigma), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(calibrated.gaussian_nll(y), -stats.norm.logpdf(y, mu, s * sigma), rtol=1e-6)
        np.testing.assert_allclose(calibrated.cdf(y), stats.norm.cdf(y, mu, s * sigma), atol=1e-5)
    assert stretch(Calibration("conformal", 2.5, 0.9)) == pytest.approx(2.5 / stats.norm.ppf(0.95))
    assert stretch(None) == 1.0 and stretch(Calibration("temperature", 3.0)) == 1.0
    # The stretched mixture's scores equal the Gaussian's: regression_scores on one member.
    scores = regression_scores(prediction, y, Calibration("scale", 1.7), levels=(0.9,))
    assert scores["nll"] == pytest.approx(np.mean(-stats.norm.logpdf(y, mu, 1.7 * sigma)), rel=1e-6)
    inside = np.abs(y - mu) <= stats.norm.ppf(0.95) * 1.7 * sigma
    assert scores["coverage_0.9"] == pytest.approx(inside.mean())


def test_stretch_members_keeps_the_mean_and_scales_the_spread():
    rng = np.random.default_rng(0)
    locs, scales = rng.normal(size=(4, 7)), rng.uniform(0.5, 1.5, size=(4, 7))
    new_locs, new_scales = stretch_members(locs, scales, 1.8)
    np.testing.assert_allclose(new_locs.mean(0), locs.mean(0))
    np.testing.assert_allclose(new_locs.var(0), 1.8**2 * locs.var(0))
    np.testing.assert_allclose(new_scales, 1.8 * scales)


def test_calibrate_a_regression_ensemble_covers_and_serves_every_level():
    from deepens.calibrated import calibrate
    from deepens.heads import Gaussian

    rng = np.random.default_rng(1)
    # The members claim std ~0.85, the noise has std 2: overconfident, so the calibration must widen.
    ensemble = _FixedEnsemble(Gaussian(), lambda x: _gaussian_members(x, 3))
    x = rng.uniform(-1, 1, size=(4000, 1))
    y = 2 * x[:, 0] + 1 + 2.0 * rng.normal(size=4000)
    calibrated = calibrate(ensemble, x[:500], y[:500])
    assert calibrated.calibration.kind == "conformal" and calibrated.calibration.level == 0.9
    assert calibrated.scores.shape == (500,) and np.all(np.diff(calibrated.scores) >= 0)
    prediction = calibrated.predict(x[500:])
    for level in (0.5, 0.8, 0.9, 0.95):
        lower, upper = prediction.interval(level)
        covered = np.mean((y[500:] >= lower) & (y[500:] <= upper))
        assert abs(covered - level) < 0.05, (level, covered)
    raw_lower, _ = ensemble.predict(x[500:]).interval(0.9)
    assert np.all(lower < np.asarray(raw_lower))  # wider than the overconfident mixture's
    scaled = calibrate(ensemble, x[:500], y[:500], "scale")
    assert scaled.calibration.value > 1.5
    assert np.mean(scaled.predict(x[500:]).nll(y[500:])) < np.mean(np.asarray(ensemble.predict(x[500:]).nll(y[500:])))


def test_calibrate_a_classifier_tempers_the_mixture():
    from deepens.calibrated import calibrate
    from deepens.heads import Categorical

    rng = np.random.default_rng(2)
    n, k = 3000, 3
    truth = rng.normal(size=(n, k))
    labels = np.array([rng.choice(k, p=np.exp(r) / np.exp(r).sum()) for r in truth])
    logits = np.stack([4.0 * truth, 4.0 * truth + 0.3])  # two overconfident members
    ensemble = _FixedEnsemble(Categorical(), lambda x: logits[:, x[:, 0].astype(int)])
    index = np.arange(n, dtype=np.float32)[:, None]
    calibrated = calibrate(ensemble, index[:1000], labels[:1000])
    assert calibrated.calibration.kind == "temperature" and calibrated.calibration.value > 2.0
    after, before = calibrated.predict(index[1000:]), ensemble.predict(index[1000:])
    np.testing.assert_array_equal(after.label, np.asarray(before.label))
    assert np.mean(after.nll(labels[1000:])) < np.mean(np.asarray(before.nll(labels[1000:])))
    np.testing.assert_allclose(after.probs.sum(1), 1.0, rtol=1e-12)


def test_calibrate_refuses_bad_input():
    from deepens.calibrated import calibrate
    from deepens.heads import Categorical, Gaussian

    regression = _FixedEnsemble(Gaussian(), _gaussian_members)
    x, y = np.linspace(-1, 1, 30)[:, None], np.linspace(-2, 2, 30)
    with pytest.raises(ValueError, match="NaN or inf in row"):
        calibrate(regression, np.where(np.arange(30)[:, None] == 4, np.nan, x), y)
    with pytest.raises(ValueError, match="NaN or inf in row"):
        calibrate(regression, x, np.where(np.arange(30) == 7, np.inf, y))
    with pytest.raises(ValueError, match="at least 10 rows"):
        calibrate(regression, x[:9], y[:9])
    for level in (0.0, 1.0, 1.2):
        with pytest.raises(ValueError, match="level"):
            calibrate(regression, x, y, level=level)
    with pytest.raises(ValueError, match="'auto' or one of"):
        calibrate(regression, x, y, "temperature")
    classifier = _FixedEnsemble(Categorical(), lambda x: np.zeros((2, len(x), 3)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        calibrate(classifier, x, np.full(30, 3))
    with pytest.raises(ValueError, match="'auto' or one of"):
        calibrate(classifier, x, np.zeros(30, int), "conformal")
