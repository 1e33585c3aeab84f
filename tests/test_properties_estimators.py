"""Property-based tests of the estimators' predict paths on drawn inputs (rows near and far from the
training data, ties, one row, float32 and float64): finite output; intervals ordered, nested in the level
and holding the members' means; the CDF monotone in y and in [0, 1]; total = aleatoric + epistemic
(regression) and total = data + knowledge with knowledge >= 0 (classification); calibrated and
uncalibrated estimators alike; a ValueError, never another exception, for invalid input.

One tiny estimator of each kind is trained per module (a few epochs: the properties hold for any weights).
Row counts and levels come from small sets, since each (rows, level) pair compiles an interval program."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deepens.calibration import conformal_index
from deepens.sklearn import DeepEnsembleClassifier, DeepEnsembleRegressor

LEVELS = (0.5, 0.9, 0.99)
ROWS = st.sampled_from([1, 5])
SETTINGS = dict(members=3, hidden_layer_sizes=(8,), epochs=5, batch_size=None, random_state=0)
# Each property runs once per fitted estimator (five of them): a third of the profile's examples each.
few = settings(max_examples=max(5, settings.default.max_examples // 3))


@pytest.fixture(scope="module")
def training_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    return x, x[:, 0] ** 2 + 0.1 * rng.normal(size=60), (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)


_FITTED = {}


def _fitted(kind, calibration, training_data):
    """One estimator per (kind, calibration) for the whole module."""
    if (kind, calibration) not in _FITTED:
        x, y, labels = training_data
        if kind == "regressor":
            _FITTED[kind, calibration] = DeepEnsembleRegressor(calibration=calibration, **SETTINGS).fit(x, y)
        else:
            _FITTED[kind, calibration] = DeepEnsembleClassifier(calibration=calibration, **SETTINGS).fit(x, labels)
    return _FITTED[kind, calibration]


@pytest.fixture(scope="module", params=[None, "conformal", "scale"])
def regressor(request, training_data):
    return _fitted("regressor", request.param, training_data)


@pytest.fixture(scope="module", params=[None, "temperature"])
def classifier(request, training_data):
    return _fitted("classifier", request.param, training_data)


@st.composite
def inputs(draw):
    """``(N, 2)`` rows at scales from 0 to 1e4 standard deviations of the training data."""
    n = draw(ROWS)
    scale = draw(st.sampled_from([0.0, 1e-3, 1.0, 30.0, 1e4]))
    x = draw(hnp.arrays(np.float64, (n, 2), elements=st.sampled_from([-1.0, -0.5, 0.0, 0.25, 1.0])))
    return (x * scale).astype(draw(st.sampled_from([np.float32, np.float64])))


# --- regression ------------------------------------------------------------------------------------------


@few
@given(x=inputs())
def test_regressor_predictions_are_finite_and_their_variances_add_up(regressor, x):
    mean, std = regressor.predict(x, return_std=True)
    assert mean.shape == std.shape == (len(x),)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)
    np.testing.assert_array_equal(regressor.predict(x), mean)
    u = regressor.predict_uncertainty(x)
    assert all(np.all(np.isfinite(v)) for v in u)
    assert np.all(u.aleatoric > 0) and np.all(u.epistemic >= 0)
    np.testing.assert_allclose(u.total, u.aleatoric + u.epistemic, rtol=1e-6)
    # predict's std is the (calibrated) distribution's, whose variance predict_uncertainty splits.
    np.testing.assert_allclose(std, np.sqrt(u.total), rtol=1e-5)


@few
@given(x=inputs())
def test_regressor_intervals_are_ordered_nested_and_hold_the_members(regressor, x):
    bounds = [regressor.predict_interval(x, level=level) for level in LEVELS]
    cal = regressor.calibration_
    for level, (lower, upper) in zip(LEVELS, bounds):
        assert np.all(lower <= upper) and not np.any(np.isnan(lower)) and not np.any(np.isnan(upper))
        n = 0 if cal is None or cal.kind != "conformal" else len(regressor.calibration_scores_)
        if n and conformal_index(n, level) > n:  # documented: too few held-out rows for a finite interval
            assert np.all(lower == -np.inf) and np.all(upper == np.inf)
        else:
            assert np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))
    for (lo_a, up_a), (lo_b, up_b) in zip(bounds, bounds[1:]):
        assert np.all(lo_b <= lo_a) and np.all(up_a <= up_b), "a higher level gave a narrower interval"
    mean = regressor.predict(x)
    scale = 1e-5 * (np.abs(mean) + 1e-3)
    if cal is not None and cal.kind == "scale":
        return  # the mixture's interval stretched about the mean: it need not hold the mean at low levels
    if cal is not None:  # conformal, mean -/+ q std: symmetric about the mean
        for lower, upper in bounds:
            assert np.all(lower <= mean + scale) and np.all(mean - scale <= upper)
    else:
        # 0.99 >= 1 - 1/M for M = 3: the interval holds every member's mean, hence the mixture mean.
        member_means = regressor.ensemble_.predict(regressor._standardised_x(x)).member_means
        means = regressor._to_user(np.asarray(member_means))
        lower, upper = bounds[-1]
        assert np.all(lower <= means.min(0) + scale) and np.all(means.max(0) - scale <= upper)
    describe = regressor.describe(x, level=0.9)
    np.testing.assert_allclose(describe["lower"], bounds[1][0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(describe["upper"], bounds[1][1], rtol=1e-6, atol=1e-9)


@few
@given(
    x=inputs(),
    offsets=st.lists(st.sampled_from([-1e3, -3.0, -0.5, 0.0, 0.5, 3.0, 1e3]), min_size=2, max_size=5, unique=True),
)
def test_regressor_cdf_is_monotone_in_y_and_in_the_unit_interval(regressor, x, offsets):
    mean, std = regressor.predict(x, return_std=True)
    cdfs = np.stack([regressor.predict_cdf(x, mean + d * std) for d in sorted(offsets)])
    assert np.all(np.isfinite(cdfs)) and np.all((cdfs >= 0) & (cdfs <= 1))
    assert np.all(np.diff(cdfs, axis=0) >= 0)
    nll = regressor.nll(x, mean)
    assert nll.shape == (len(x),) and np.all(np.isfinite(nll))


BAD_X = ("nan", "inf", "wide", "narrow", "one_d", "three_d", "empty", "strings")


def _bad_x(x, how):
    x = np.array(x, np.float64)
    return {
        "nan": np.where(np.arange(x.size).reshape(x.shape) == 0, np.nan, x),
        "inf": np.full_like(x, np.inf),
        "wide": np.concatenate([x, x[:, :1]], axis=1),
        "narrow": x[:, :1],
        "one_d": x[:, 0],
        "three_d": x[:, :, None],
        "empty": x[:0],
        "strings": np.full(x.shape, "abc"),
    }[how]


@few
@given(
    x=inputs(),
    how=st.sampled_from(BAD_X),
    method=st.sampled_from(
        ["predict", "predict_std", "predict_interval", "predict_uncertainty", "describe", "predict_cdf", "nll"]
    ),
)
def test_regressor_refuses_invalid_inputs_with_a_value_error(regressor, x, how, method):
    bad = _bad_x(x, how)
    y = np.zeros(len(x))
    call = {
        "predict": lambda: regressor.predict(bad),
        "predict_std": lambda: regressor.predict(bad, return_std=True),
        "predict_interval": lambda: regressor.predict_interval(bad, level=0.9),
        "predict_uncertainty": lambda: regressor.predict_uncertainty(bad),
        "describe": lambda: regressor.describe(bad),
        "predict_cdf": lambda: regressor.predict_cdf(bad, y),
        "nll": lambda: regressor.nll(bad, y),
    }[method]
    with pytest.raises(ValueError):
        call()


@few
@given(x=inputs(), level=st.sampled_from([0.0, 1.0, -0.1, 1.5, float("nan"), float("inf")]))
def test_regressor_refuses_interval_levels_outside_the_open_unit_interval(regressor, x, level):
    with pytest.raises(ValueError, match="level"):
        regressor.predict_interval(x, level=level)
    with pytest.raises(ValueError, match="level"):
        regressor.describe(x, level=level)


def test_regressor_refuses_a_missing_level(training_data):
    model = _fitted("regressor", None, training_data)
    with pytest.raises(ValueError, match="level"):
        model.predict_interval(training_data[0][:2], level=None)


@few
@given(x=inputs(), how=st.sampled_from(["short", "long", "strings"]))
def test_regressor_refuses_invalid_targets_when_scoring(regressor, x, how):
    y = np.zeros(len(x))
    bad = {"short": y[:-1], "long": np.zeros(len(x) + 1), "strings": np.full(len(x), "abc")}[how]
    for method in (regressor.nll, regressor.predict_cdf):
        with pytest.raises(ValueError):
            method(x, bad)


@pytest.mark.parametrize("how", ["nan", "inf", "huge", "wide", "three_d"])
def test_regressor_refuses_non_finite_or_misshapen_targets(training_data, how):
    x = training_data[0][:3]
    model = _fitted("regressor", None, training_data)
    bad = {
        "nan": np.full(3, np.nan),
        "inf": np.full(3, np.inf),
        "huge": np.full(3, 1e39),
        "wide": np.zeros((3, 2)),
        "three_d": np.zeros((3, 1, 1)),
    }[how]
    with pytest.raises(ValueError):
        model.nll(x, bad)
    with pytest.raises(ValueError):
        model.predict_cdf(x, bad)


# --- classification --------------------------------------------------------------------------------------


@few
@given(x=inputs())
def test_classifier_probabilities_are_a_distribution_and_the_uncertainty_adds_up(classifier, x):
    probs = classifier.predict_proba(x)
    k = len(classifier.classes_)
    assert probs.shape == (len(x), k) and np.all(np.isfinite(probs)) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(classifier.predict(x), classifier.classes_[np.argmax(probs, axis=1)])
    log_probs = classifier.predict_log_proba(x)
    assert np.all(log_probs <= 1e-9)
    visible = probs > 1e-12
    np.testing.assert_allclose(np.exp(log_probs[visible]), probs[visible], rtol=1e-5)
    u = classifier.predict_uncertainty(x)
    assert all(np.all(np.isfinite(v)) for v in u)
    assert np.all(u.knowledge >= 0) and np.all(u.data >= -1e-6) and np.all(u.total <= math.log(k) + 1e-5)
    np.testing.assert_allclose(u.total, u.data + u.knowledge, atol=1e-5)
    nll = classifier.nll(x, classifier.predict(x))
    assert np.all(np.isfinite(nll)) and np.all(nll >= -1e-9)
    if classifier.calibration_ is not None:  # a temperature never changes the predicted class
        raw = np.asarray(classifier._distribution(x).probs)
        np.testing.assert_array_equal(np.argmax(probs, 1), np.argmax(raw, 1))


@few
@given(
    x=inputs(),
    how=st.sampled_from(BAD_X),
    method=st.sampled_from(["predict", "predict_proba", "predict_log_proba", "predict_uncertainty", "describe", "nll"]),
)
def test_classifier_refuses_invalid_inputs_with_a_value_error(classifier, x, how, method):
    bad = _bad_x(x, how)
    call = {
        "predict": lambda: classifier.predict(bad),
        "predict_proba": lambda: classifier.predict_proba(bad),
        "predict_log_proba": lambda: classifier.predict_log_proba(bad),
        "predict_uncertainty": lambda: classifier.predict_uncertainty(bad),
        "describe": lambda: classifier.describe(bad),
        "nll": lambda: classifier.nll(bad, np.zeros(len(bad), int)),
    }[method]
    with pytest.raises(ValueError):
        call()


@few
@given(x=inputs(), how=st.sampled_from(["unseen", "negative", "two_d", "fraction"]))
def test_classifier_refuses_invalid_labels_when_scoring(classifier, x, how):
    labels = np.zeros(len(x), int)
    bad = {"unseen": labels + 7, "negative": labels - 1, "two_d": labels[:, None, None], "fraction": labels + 0.5}[how]
    with pytest.raises(ValueError):
        classifier.nll(x, bad)


@pytest.mark.parametrize("calibration", [None, "temperature"])
@pytest.mark.parametrize("length", [2, 4])
def test_classifier_refuses_labels_of_another_length(training_data, calibration, length):
    model = _fitted("classifier", calibration, training_data)
    with pytest.raises(ValueError):
        model.nll(training_data[0][:3], np.zeros(length, int))
