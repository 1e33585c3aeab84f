"""Scoring rules against scipy references, with and without jit, and their shape checks."""

import jax
import numpy as np
import pytest
from scipy import special, stats

from deepens import losses


@pytest.fixture
def regression_args(rng):
    mean = rng.normal(0, 3, (7, 3)).astype(np.float32)
    scale = rng.uniform(0.1, 4, (7, 3)).astype(np.float32)
    y = rng.normal(0, 5, (7, 3)).astype(np.float32)
    return mean, scale, y


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_gaussian_nll_matches_scipy(regression_args, transform):
    mean, std, y = regression_args
    expected = -stats.norm.logpdf(y, loc=mean, scale=std)
    np.testing.assert_allclose(transform(losses.gaussian_nll)(mean, std, y), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_laplace_nll_matches_scipy(regression_args, transform):
    loc, b, y = regression_args
    expected = -stats.laplace.logpdf(y, loc=loc, scale=b)
    np.testing.assert_allclose(transform(losses.laplace_nll)(loc, b, y), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_categorical_nll_matches_log_softmax(rng, transform):
    logits = rng.normal(0, 3, (5, 4, 6)).astype(np.float32)
    labels = rng.integers(0, 6, (5, 4))
    expected = -np.take_along_axis(special.log_softmax(logits, axis=-1), labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(transform(losses.categorical_nll)(logits, labels), expected, rtol=1e-5, atol=1e-5)


def test_categorical_nll_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    np.testing.assert_allclose(losses.categorical_nll(logits, np.array([1])), [1000.0], rtol=1e-6)
    assert np.isfinite(losses.categorical_nll(logits, np.array([2]))).all()


def test_categorical_nll_sums_over_classes_rather_than_averaging():
    # Uniform logits over K classes: NLL is log K, not log K / K.
    for k in (2, 10):
        np.testing.assert_allclose(losses.categorical_nll(np.zeros((1, k)), np.array([0])), [np.log(k)], rtol=1e-6)


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_brier_score_matches_numpy(rng, transform):
    logits = rng.normal(0, 2, (9, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 9)
    probs = special.softmax(logits, axis=-1)
    expected = np.sum((probs - np.eye(4)[labels]) ** 2, axis=-1)
    np.testing.assert_allclose(transform(losses.brier_score)(logits, labels), expected, rtol=1e-5, atol=1e-6)


def test_brier_score_bounds():
    assert float(losses.brier_score(np.array([[50.0, -50.0]]), np.array([0]))[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.brier_score(np.array([[50.0, -50.0]]), np.array([1]))[0]) == pytest.approx(2.0, abs=1e-6)


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_point_losses(regression_args, transform):
    prediction, _, y = regression_args
    np.testing.assert_allclose(transform(losses.squared_error)(prediction, y), (prediction - y) ** 2, rtol=1e-6)
    np.testing.assert_allclose(transform(losses.absolute_error)(prediction, y), np.abs(prediction - y), rtol=1e-6)


@pytest.mark.parametrize(
    "fn, args",
    [
        (losses.gaussian_nll, (np.zeros(3), np.ones(3), np.zeros(4))),
        (losses.laplace_nll, (np.zeros((3, 1)), np.ones(3), np.zeros(3))),
        (losses.squared_error, (np.zeros(3), np.zeros((3, 1)))),
        (losses.absolute_error, (np.zeros(2), np.zeros(3))),
        (losses.categorical_nll, (np.zeros((4, 3)), np.zeros(5, int))),
        (losses.brier_score, (np.zeros((4, 3)), np.zeros((4, 1), int))),
    ],
)
@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_shape_mismatch_raises(fn, args, transform):
    with pytest.raises(ValueError, match="shape"):
        transform(fn)(*args)
