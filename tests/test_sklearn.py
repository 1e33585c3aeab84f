"""The scikit-learn estimators: sklearn's own estimator checks, units, uncertainty and the sklearn tools.

Estimator checks not run, and why:

- ``check_array_api_input(array_namespace=numpy)`` (both estimators) is skipped by scikit-learn itself
  unless the environment variable ``SCIPY_ARRAY_API=1`` is set before scipy is imported; the estimators
  do not claim Array API support (their ``array_api_support`` tag is False) and convert inputs to numpy.

Every other check of ``parametrize_with_checks`` (53 per estimator, legacy ones included) runs and must
pass: ``EXPECTED_FAILURES`` is empty, and checks run in strict mode, so a check that starts failing
fails the suite. They run with small settings (2 members, 8 hidden units, 20 full-batch epochs) so the
~100 fits take about a minute; ``check_regressors_train`` and ``check_classifiers_train`` still demand
real accuracy (R^2 > 0.5, accuracy > 0.83), so these settings must actually learn.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

import deepens
from deepens import DeepEnsembleClassifier, DeepEnsembleRegressor

# The checks below test the uncalibrated mixture's identities; calibration has tests/test_estimator_calibration.py.
CHECKS = dict(
    members=2, hidden_layer_sizes=(8,), epochs=20, learning_rate=0.03, batch_size=None, random_state=0, calibration=None
)
EXPECTED_FAILURES: dict[str, str] = {}


@parametrize_with_checks(
    [DeepEnsembleRegressor(**CHECKS), DeepEnsembleClassifier(**CHECKS)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILURES,
    xfail_strict=True,
)
# check_supervised_y_no_nan feeds labels with inf; scikit-learn's own type check casts them, and warns.
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


SMALL = dict(
    members=3, hidden_layer_sizes=(16,), epochs=30, batch_size=32, learning_rate=0.02, random_state=0, calibration=None
)


@pytest.fixture(scope="module")
def linear_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=96)
    return x, y


@pytest.fixture(scope="module")
def regressor(linear_data):
    return DeepEnsembleRegressor(**SMALL).fit(*linear_data)


def test_deepens_exports_the_estimators():
    assert deepens.DeepEnsembleRegressor is DeepEnsembleRegressor
    assert deepens.DeepEnsembleClassifier is DeepEnsembleClassifier


def test_predictions_are_in_the_users_units(linear_data, regressor):
    """Standardisation is internal: a target in other units (y * 1000 + 5) gives the same fit, rescaled;
    so does rescaling the inputs."""
    x, y = linear_data
    mean, std = regressor.predict(x, return_std=True)
    scaled = DeepEnsembleRegressor(**SMALL).fit(x * 100.0 - 3.0, y * 1000.0 + 5.0)
    mean_scaled, std_scaled = scaled.predict(x * 100.0 - 3.0, return_std=True)
    np.testing.assert_allclose(mean_scaled, mean * 1000.0 + 5.0, rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(std_scaled, std * 1000.0, rtol=1e-3)
    lower, upper = scaled.predict_interval(x * 100.0 - 3.0, level=0.9)
    lower0, upper0 = regressor.predict_interval(x, level=0.9)
    np.testing.assert_allclose(lower, lower0 * 1000.0 + 5.0, rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(upper, upper0 * 1000.0 + 5.0, rtol=1e-3, atol=1e-2)
    # NLL in user units gains log(1000) per row.
    np.testing.assert_allclose(
        scaled.nll(x * 100.0 - 3.0, y * 1000.0 + 5.0), regressor.nll(x, y) + np.log(1000.0), rtol=1e-4, atol=1e-3
    )


def test_regression_learns_and_its_uncertainty_adds_up(linear_data, regressor):
    x, y = linear_data
    assert regressor.score(x, y) > 0.9
    mean, std = regressor.predict(x, return_std=True)
    assert mean.dtype == np.float64 and mean.shape == std.shape == (96,)
    u = regressor.predict_uncertainty(x)
    np.testing.assert_allclose(u.total, u.aleatoric + u.epistemic, rtol=1e-6)
    np.testing.assert_allclose(u.total, std**2, rtol=1e-5)
    assert np.all(u.aleatoric > 0) and np.all(u.epistemic >= 0)
    # The noise std is 0.3; the aleatoric part should have found about that.
    assert 0.15 < np.sqrt(np.median(u.aleatoric)) < 0.6
    lower, upper = regressor.predict_interval(x, level=0.9)
    wide_lower, wide_upper = regressor.predict_interval(x, level=0.99)
    assert np.all(lower < mean) and np.all(mean < upper)
    assert np.all(wide_lower < lower) and np.all(upper < wide_upper)
    # Intervals hold about 90% of the (training) targets.
    assert 0.75 < np.mean((lower <= y) & (y <= upper)) <= 1.0
    with pytest.raises(ValueError, match="level"):
        regressor.predict_interval(x, level=1.5)


def test_evaluate_scores_in_the_users_units(linear_data, regressor):
    x, y = linear_data
    scores = regressor.evaluate(x, y, levels=(0.5, 0.9))
    mean, std = regressor.predict(x, return_std=True)
    np.testing.assert_allclose(scores["rmse"], np.sqrt(np.mean((mean - y) ** 2)), rtol=1e-6)
    gaussian = 0.5 * np.log(2 * np.pi * std**2) + (y - mean) ** 2 / (2 * std**2)
    np.testing.assert_allclose(scores["nll"], np.mean(gaussian), rtol=1e-4)
    np.testing.assert_allclose(scores["nll_mixture"], np.mean(regressor.nll(x, y)), rtol=1e-4)
    lower, upper = regressor.predict_interval(x, level=0.9)
    np.testing.assert_allclose(scores["coverage_0.9"], np.mean((lower <= y) & (y <= upper)), atol=1.5 / len(y))
    pit = regressor.predict_cdf(x, y)
    assert np.all((pit >= 0) & (pit <= 1)) and 0.3 < np.mean(pit) < 0.7


def test_regression_with_two_targets(linear_data):
    x, y = linear_data
    y2 = np.stack([y, -3.0 * y + 10.0], axis=1)
    model = DeepEnsembleRegressor(**SMALL).fit(x, y2)
    mean, std = model.predict(x, return_std=True)
    assert mean.shape == std.shape == (96, 2)
    assert model.predict_interval(x)[0].shape == (96, 2)
    assert model.nll(x, y2).shape == (96,)
    assert np.corrcoef(mean[:, 1], y2[:, 1])[0, 1] > 0.9


def test_laplace_head_and_adversarial_training_run(linear_data):
    x, y = linear_data
    model = DeepEnsembleRegressor(**dict(SMALL, head="laplace", adversarial="fgsm", eps=0.02)).fit(x, y)
    assert model.ensemble_.head.name == "laplace"
    assert model.score(x, y) > 0.8


def test_bad_input_raises_value_errors_naming_the_problem(linear_data, regressor):
    x, y = linear_data
    bad = x.copy()
    bad[[4, 7], 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in rows 4, 7"):
        DeepEnsembleRegressor(**SMALL).fit(bad, y)
    with pytest.raises(ValueError, match=r"NaN or inf in rows 4, 7"):
        regressor.predict(bad)
    with pytest.raises(ValueError, match="3 features"):
        regressor.predict(x[:, :2])
    with pytest.raises(ValueError, match="adversarial"):
        DeepEnsembleRegressor(adversarial="pgd").fit(x, y)
    with pytest.raises(ValueError, match="head"):
        DeepEnsembleRegressor(head="cauchy").fit(x, y)


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    labels = np.array(["cat", "dog", "emu"])
    k = rng.integers(0, 3, size=150)
    return centres[k] + rng.normal(size=(150, 2)), labels[k]


def test_classifier_with_string_labels(blobs):
    x, y = blobs
    model = DeepEnsembleClassifier(**SMALL).fit(x, y)
    assert list(model.classes_) == ["cat", "dog", "emu"]
    probs = model.predict_proba(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(model.predict_log_proba(x)), probs, rtol=1e-5, atol=1e-7)
    assert set(model.predict(x)) <= set(model.classes_)
    assert model.score(x, y) > 0.9
    index = model.encode_labels(y)
    np.testing.assert_allclose(model.nll(x, y), -np.log(probs[np.arange(len(y)), index]), rtol=1e-4, atol=1e-6)
    u = model.predict_uncertainty(x)
    np.testing.assert_allclose(u.total, u.data + u.knowledge, atol=1e-6)
    np.testing.assert_allclose(u.total, -np.sum(probs * np.log(probs), axis=1), rtol=1e-4, atol=1e-6)
    assert np.all(u.knowledge >= 0) and np.all(u.data >= 0)
    scores = model.evaluate(x, y)
    np.testing.assert_allclose(scores["accuracy"], model.score(x, y))
    np.testing.assert_allclose(scores["nll"], np.mean(model.nll(x, y)), rtol=1e-5)  # both float32 underneath
    onehot = (model.classes_[None, :] == y[:, None]).astype(float)
    # (predict_proba renormalises the float32 average in float64; the metrics take it as it is)
    np.testing.assert_allclose(scores["brier_summed"], np.mean(np.sum((probs - onehot) ** 2, axis=1)), rtol=1e-5)
    with pytest.raises(ValueError, match="never saw in training: 'fox'"):
        model.nll(x[:3], np.array(["cat", "fox", "dog"]))


def test_describe_is_the_other_predictions_from_one_pass(linear_data, regressor, blobs):
    x, _ = linear_data
    d = regressor.describe(x, level=0.8)
    mean, std = regressor.predict(x, return_std=True)
    lower, upper = regressor.predict_interval(x, level=0.8)
    u = regressor.predict_uncertainty(x)
    for key, expected in (
        ("mean", mean),
        ("std", std),
        ("lower", lower),
        ("upper", upper),
        ("aleatoric_std", np.sqrt(u.aleatoric)),
        ("epistemic_std", np.sqrt(u.epistemic)),
    ):
        np.testing.assert_allclose(d[key], expected, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="level"):
        regressor.describe(x, level=1.0)
    xb, yb = blobs
    classifier = DeepEnsembleClassifier(**SMALL).fit(xb, yb)
    d = classifier.describe(xb)
    u = classifier.predict_uncertainty(xb)
    np.testing.assert_array_equal(d["probs"], classifier.predict_proba(xb))
    np.testing.assert_array_equal(d["predicted"], classifier.predict(xb))
    np.testing.assert_array_equal(d["knowledge"], u.knowledge)
    np.testing.assert_array_equal(d["entropy"], u.total)


def test_sklearn_tools_work_with_pandas_frames(blobs):
    x, y = blobs
    frame = pd.DataFrame(x, columns=["u", "v"])
    quick = dict(SMALL, epochs=10, members=2)
    model = DeepEnsembleClassifier(**quick).fit(frame, y)
    assert list(model.feature_names_in_) == ["u", "v"]
    pipeline = make_pipeline(FunctionTransformer(lambda a: a * 2.0), DeepEnsembleClassifier(**quick))
    scores = cross_val_score(pipeline, frame, y, cv=2)
    assert scores.shape == (2,) and np.all(scores > 0.8)
    search = GridSearchCV(DeepEnsembleClassifier(**quick), {"members": [1, 2]}, cv=2).fit(frame, y)
    assert search.best_params_["members"] in (1, 2)
    assert clone(model).get_params() == model.get_params()
    assert not hasattr(clone(model), "ensemble_")


def test_unseeded_estimators_draw_and_record_a_seed(linear_data):
    x, y = linear_data
    quick = dict(SMALL, epochs=2, random_state=None)
    a, b = DeepEnsembleRegressor(**quick).fit(x, y), DeepEnsembleRegressor(**quick).fit(x, y)
    assert a.seed_ != b.seed_
    again = DeepEnsembleRegressor(**dict(quick, random_state=a.seed_)).fit(x, y)
    np.testing.assert_array_equal(again.predict(x), a.predict(x))


def test_readme_estimator_example_runs(tmp_path, monkeypatch, capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "DeepEnsembleRegressor(" in b)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.replace("members=5,", "members=2, epochs=5,"), "README.md", "exec"), namespace)
    assert namespace["mean"].shape == namespace["std"].shape == (442,)
    assert (tmp_path / "diabetes_model" / "manifest.json").exists()
    crps, r2 = map(float, capsys.readouterr().out.split())
    assert crps > 0 and r2 > 0.2
