"""Hostile input to the estimators, as a new user would try it (issue 14): huge magnitudes, wrong ranks,
zero widths. Each either trains to finite predictions or fails with a ValueError naming the problem."""

import numpy as np
import pytest

from deepens.sklearn import DeepEnsembleClassifier, DeepEnsembleRegressor

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 2))
Y = 2.0 * X[:, 0] + 0.1 * RNG.normal(size=40)
SMALL = dict(members=2, hidden_layer_sizes=(8,), epochs=3, calibration=None, random_state=0)


@pytest.mark.parametrize("x_scale, y_scale", [(1e30, 1.0), (1.0, 1e30), (1e30, 1e30)])
def test_the_regressor_standardises_huge_values_to_finite_predictions(x_scale, y_scale):
    # 1e30 is finite in float32 but its square is not; the estimator standardises in float64 first.
    model = DeepEnsembleRegressor(**SMALL).fit(X * x_scale, Y * y_scale)
    mean, std = model.predict(X * x_scale, return_std=True)
    lower, upper = model.predict_interval(X * x_scale)
    for a in (mean, std, lower, upper, model.nll(X * x_scale, Y * y_scale)):
        assert np.all(np.isfinite(a))
    # The fit is in the user's units: mean and std scale with y.
    reference = DeepEnsembleRegressor(**SMALL).fit(X, Y)
    np.testing.assert_allclose(mean / y_scale, reference.predict(X), rtol=1e-3, atol=1e-3)


def test_the_classifier_standardises_huge_inputs():
    labels = (X[:, 0] > 0).astype(int)
    probs = DeepEnsembleClassifier(**SMALL).fit(X * 1e30, labels).predict_proba(X * 1e30)
    assert np.all(np.isfinite(probs))


def test_values_beyond_float32_are_named_as_such():
    x = X.copy()
    x[7, 1] = 1e39
    with pytest.raises(ValueError, match=r"X has values too large for float32 .* row 7, column 1"):
        DeepEnsembleRegressor(**SMALL).fit(x, Y)
    y = Y.copy()
    y[3] = -1e300
    with pytest.raises(ValueError, match=r"y has values too large for float32 .* row 3"):
        DeepEnsembleRegressor(**SMALL).fit(X, y)


def test_prediction_inputs_too_far_from_the_training_data_are_refused():
    model = DeepEnsembleRegressor(**SMALL).fit(X, Y)
    far = X.copy()
    far[2, 0] = 1e30  # 1e30 training standard deviations out: the members' variances overflow float32
    with pytest.raises(ValueError, match=r"X has values more than .* training standard deviations .* row 2, column 0"):
        model.predict(far)
    with pytest.raises(ValueError, match=r"training standard deviations"):
        model.describe(far)


@pytest.mark.parametrize("estimator", [DeepEnsembleRegressor, DeepEnsembleClassifier])
@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(hidden_layer_sizes=(0,)), r"hidden_layer_sizes must be positive integers"),
        (dict(learning_rate=True), r"learning_rate must be a real number, got True"),
        (dict(learning_rate=float("nan")), r"learning_rate must be a finite number > 0"),
        (dict(learning_rate=-1.0), r"learning_rate must be a finite number > 0"),
        (dict(weight_decay=float("nan")), r"weight_decay must be a finite number >= 0"),
    ],
)
def test_bad_estimator_settings_name_the_parameter(estimator, settings, message):
    labels = (X[:, 0] > 0).astype(int)
    with pytest.raises(ValueError, match=message):
        estimator(**{**SMALL, **settings}).fit(X, labels if estimator is DeepEnsembleClassifier else Y)
