"""Ensemble predictions: shapes, consistency between views, intervals, member selection."""

import numpy as np
import pytest

import deepens


def test_regression_prediction_views_agree(small_regression_ensemble, cubic_data):
    x, y = cubic_data
    p = small_regression_ensemble.predict(x)
    assert p.mean.shape == p.std.shape == (40,)
    assert p.member_means.shape == (3, 40)
    np.testing.assert_allclose(p.variance, p.uncertainty.aleatoric + p.uncertainty.epistemic, rtol=1e-6)
    np.testing.assert_allclose(p.std**2, p.variance, rtol=1e-5)
    lower, upper = p.interval(0.9)
    assert np.all(np.asarray(lower) < np.asarray(p.mean)) and np.all(np.asarray(p.mean) < np.asarray(upper))
    np.testing.assert_allclose(p.cdf(lower), 0.05, atol=1e-4)
    np.testing.assert_allclose(p.cdf(upper), 0.95, atol=1e-4)
    assert p.nll(y).shape == p.gaussian_nll(y).shape == (40,)


def test_ninety_percent_intervals_cover_about_ninety_percent_of_fresh_data():
    from deepens.data import toy

    x, y = toy.cubic(400, seed=5)
    ensemble = deepens.fit(x, y / 30, hidden=(32,), members=3, epochs=500, learning_rate=0.02, progress=False)
    x_new, y_new = toy.cubic(4000, seed=99)
    lower, upper = ensemble.predict(x_new).interval(0.9)
    coverage = float(np.mean((np.asarray(lower) <= y_new / 30) & (y_new / 30 <= np.asarray(upper))))
    assert 0.85 < coverage < 0.95


def test_one_member_ensemble_is_that_member(small_regression_ensemble, cubic_data):
    x, y = cubic_data
    one = small_regression_ensemble.select([1])
    p, full = one.predict(x), small_regression_ensemble.predict(x)
    np.testing.assert_array_equal(p.mean, full.member_means[1])
    np.testing.assert_allclose(p.variance, full.member_variances[1], rtol=1e-6)
    np.testing.assert_allclose(p.nll(y), p.gaussian_nll(y), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(p.uncertainty.epistemic, 0.0)


def test_prediction_does_not_depend_on_batch_size_or_padding(small_regression_ensemble):
    x = np.linspace(-6, 6, 1000, dtype=np.float32)[:, None]
    whole = np.asarray(small_regression_ensemble.predict(x).mean)
    parts = np.concatenate(
        [np.asarray(small_regression_ensemble.predict(x[i : i + 37]).mean) for i in range(0, 1000, 37)]
    )
    np.testing.assert_allclose(parts, whole, rtol=1e-6, atol=1e-6)


def test_prediction_in_chunks(small_regression_ensemble, monkeypatch):
    from deepens import ensemble as module

    x = np.linspace(-6, 6, 100, dtype=np.float32)[:, None]
    whole = np.asarray(small_regression_ensemble.predict(x).mean)
    monkeypatch.setattr(module, "PREDICT_CHUNK", 16)
    # Other padded shapes compile to other programs, which round differently in float32.
    np.testing.assert_allclose(np.asarray(small_regression_ensemble.predict(x).mean), whole, rtol=1e-6, atol=1e-6)


def test_classification_prediction(small_classifier, spiral_data):
    x, y = spiral_data
    p = small_classifier.predict(x)
    assert p.probs.shape == (len(x), 3) and p.member_probs.shape == (3, len(x), 3)
    np.testing.assert_allclose(p.probs, np.asarray(p.member_probs).mean(0), rtol=1e-6)
    np.testing.assert_allclose(p.uncertainty.total, p.entropy, rtol=1e-6)
    np.testing.assert_allclose(p.log_prob(y), np.log(np.asarray(p.probs)[np.arange(len(y)), y]), rtol=1e-4, atol=1e-5)
    assert np.all((np.asarray(p.confidence) >= 1 / 3) & (np.asarray(p.confidence) <= 1))


def test_knowledge_uncertainty_is_higher_far_from_the_data(small_classifier):
    p_near = small_classifier.predict(np.zeros((1, 2), np.float32) + 0.5)
    p_far = small_classifier.predict(np.array([[8.0, -8.0]], np.float32))
    assert float(p_far.uncertainty.knowledge[0]) > float(p_near.uncertainty.knowledge[0])


def test_multi_target_regression(rng):
    x = rng.normal(size=(50, 2)).astype(np.float32)
    y = np.stack([x[:, 0], -x[:, 1]], 1)
    ensemble = deepens.fit(x, y, hidden=(8,), members=2, epochs=5, progress=False)
    p = ensemble.predict(x)
    assert p.mean.shape == (50, 2) and p.member_means.shape == (2, 50, 2)
    assert p.nll(y).shape == (50,)
    lower, upper = p.interval(0.5)
    assert lower.shape == (50, 2)


def test_select_rejects_an_empty_selection(small_regression_ensemble):
    with pytest.raises(ValueError):
        small_regression_ensemble.select([])


@pytest.mark.parametrize("head_name", ["gaussian", "laplace"])
def test_joint_and_marginal_log_densities_of_several_targets(head_name):
    """Issue 14: with T > 1 targets the prediction's ``log_prob`` is the joint mixture density and the
    metrics score per-target marginal mixtures; both are named and checked against scipy here."""
    from scipy import stats
    from scipy.special import logsumexp

    from deepens import metrics
    from deepens.heads import get_head
    from deepens.prediction import RegressionPrediction

    head = get_head(head_name)
    rng = np.random.RandomState(0)
    outputs = rng.normal(0, 1.5, (3, 5, 6)).astype(np.float32)  # M = 3, N = 5, T = 3
    y = rng.normal(0, 2, (5, 3)).astype(np.float32)
    p = RegressionPrediction(head, outputs)
    loc, scale = (np.asarray(a, np.float64) for a in head.split(outputs))
    dist = stats.norm if head_name == "gaussian" else stats.laplace
    member = dist.logpdf(y[None].astype(np.float64), loc, scale)  # (M, N, T)
    joint = logsumexp(member.sum(-1), axis=0) - np.log(3)  # log mean_m prod_t p_m(y_t)
    marginal = logsumexp(member, axis=0) - np.log(3)  # log mean_m p_m(y_t), per target
    assert np.max(np.abs(joint - marginal.sum(-1))) > 0.1  # the two really differ here
    np.testing.assert_allclose(p.log_prob(y), joint, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.nll(y, joint=True), -joint, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.log_prob(y, joint=False), marginal, rtol=1e-5, atol=1e-5)
    family = {"family": head_name}
    np.testing.assert_allclose(
        metrics.mixture_nll(y, member_locs=loc, member_scales=scale, **family), -marginal, rtol=1e-10
    )
    np.testing.assert_allclose(
        metrics.mixture_nll(y, member_locs=loc, member_scales=scale, **family, joint=True), -joint, rtol=1e-10
    )
    summary = metrics.evaluate(p, y)
    assert summary["nll_mixture"] == pytest.approx(float(np.mean(-marginal)), rel=1e-5)
    assert summary["nll_mixture"] == pytest.approx(float(np.mean(p.nll(y, joint=False))), rel=1e-5)
    assert summary["nll_mixture_joint"] == pytest.approx(float(np.mean(-joint)), rel=1e-5)
    assert summary["nll_mixture_joint"] == pytest.approx(float(np.mean(p.nll(y))), rel=1e-5)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([-1, 0, 1], r"in \[0, 3\)"),
        ([7, 0, 1], r"in \[0, 3\)"),
        ([0.7, 0, 1], "integer"),
        ([0, 1], "shape"),
        (["a", "b", "c"], "integer"),
    ],
)
def test_classification_nll_refuses_labels_outside_the_classes(labels, message):
    """Issue 14: label -1 was read as class K-1, 7 of K = 3 gave NaN, 0.7 was read as class 0."""
    from deepens.prediction import ClassificationPrediction

    p = ClassificationPrediction(np.zeros((2, 3, 3), np.float32))
    np.testing.assert_allclose(p.nll(np.array([0, 2, 1])), np.log(3), rtol=1e-6)
    np.testing.assert_allclose(p.nll(np.array([0.0, 2.0, 1.0])), np.log(3), rtol=1e-6)
    with pytest.raises(ValueError, match=message):
        p.nll(np.array(labels))


@pytest.mark.parametrize(
    "squeeze, shape",
    [(True, (4, 2)), (True, (1,)), (True, (4, 4)), (False, (4, 3)), (False, (4, 1)), (False, (4,)), (False, (1, 2))],
)
def test_regression_scores_refuse_targets_of_another_width(squeeze, shape):
    """Issue 14: a too-wide y must not be scored on its column 0, nor a too-narrow one broadcast."""
    from deepens.heads import Gaussian
    from deepens.prediction import RegressionPrediction

    width = 1 if squeeze else 2
    p = RegressionPrediction(Gaussian(), np.zeros((2, 4, 2 * width), np.float32), squeeze)
    for score in (p.nll, p.cdf, p.log_prob, p.gaussian_nll):
        with pytest.raises(ValueError, match=r"y has shape \(" + ", ".join(map(str, shape))):
            score(np.zeros(shape, np.float32))
