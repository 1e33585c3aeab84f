"""Uncertainty decomposition: identities, bounds and hand-worked values."""

import jax
import numpy as np
import pytest

from deepens.uncertainty import categorical_uncertainty, entropy, variance_uncertainty

LOG2 = np.log(2.0)


def test_entropy_hand_values():
    np.testing.assert_allclose(entropy(np.array([0.5, 0.5])), LOG2, rtol=1e-6)
    np.testing.assert_allclose(entropy(np.array([1.0, 0.0, 0.0])), 0.0, atol=1e-7)
    np.testing.assert_allclose(entropy(np.full(10, 0.1)), np.log(10), rtol=1e-6)


def test_entropy_gradient_is_finite_at_zero_probability():
    grad = jax.grad(lambda p: entropy(p))(np.array([1.0, 0.0], np.float32))
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(
    "members, total, data",
    [
        # Two confident members that disagree: all of the uncertainty is knowledge.
        ([[1.0, 0.0], [0.0, 1.0]], LOG2, 0.0),
        # Two members that agree the coin is fair: all of it is data.
        ([[0.5, 0.5], [0.5, 0.5]], LOG2, LOG2),
        # Worked by hand: mean (0.6, 0.4); H = 0.673012; H(p1) = 0.500402, H(p2) = 0.673012.
        ([[0.8, 0.2], [0.4, 0.6]], 0.6730116670, 0.5867070453),
        # Three members, three classes: mean (1/3, 0.4, 4/15).
        ([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], 1.0851886130, 0.7970403171),
    ],
)
def test_hand_worked_decompositions(members, total, data):
    u = categorical_uncertainty(np.array(members, np.float32)[:, None, :])
    np.testing.assert_allclose(u.total, [total], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(u.data, [data], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(u.knowledge, [total - data], rtol=1e-4, atol=1e-6)


def test_total_is_data_plus_knowledge_and_knowledge_is_non_negative(rng):
    logits = rng.normal(0, 3, (5, 200, 7)).astype(np.float32)
    probs = jax.nn.softmax(logits)
    u = categorical_uncertainty(probs)
    np.testing.assert_allclose(u.total, u.data + u.knowledge, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(u.knowledge) >= 0)
    assert np.all(np.asarray(u.total) >= np.asarray(u.data) - 1e-6)


def test_knowledge_is_the_jensen_shannon_divergence(rng):
    probs = np.asarray(jax.nn.softmax(rng.normal(0, 2, (3, 10, 4))), np.float64)
    mean = probs.mean(0)
    js = np.mean(np.sum(probs * np.log(probs / mean), axis=-1), axis=0)
    np.testing.assert_allclose(categorical_uncertainty(probs.astype(np.float32)).knowledge, js, rtol=1e-4, atol=1e-6)


def test_identical_members_have_no_knowledge_uncertainty(rng):
    p = np.asarray(jax.nn.softmax(rng.normal(0, 2, (1, 50, 4))), np.float32)
    u = categorical_uncertainty(np.repeat(p, 6, axis=0))
    np.testing.assert_allclose(u.knowledge, 0.0, atol=1e-6)
    np.testing.assert_allclose(u.total, u.data, rtol=1e-5)


def test_expected_entropy_and_entropy_of_the_mean_are_not_swapped():
    u = categorical_uncertainty(np.array([[[1.0, 0.0]], [[0.0, 1.0]]], np.float32))
    assert float(u.data[0]) == pytest.approx(0.0, abs=1e-7)  # mean of the entropies
    assert float(u.total[0]) == pytest.approx(LOG2, rel=1e-6)  # entropy of the mean


def test_regression_variances_sum_to_the_mixture_variance(rng):
    means = rng.normal(0, 3, (6, 20)).astype(np.float32)
    variances = rng.uniform(0.1, 2, (6, 20)).astype(np.float32)
    u = variance_uncertainty(means, variances)
    mixture_variance = np.var(means.astype(np.float64), 0) + variances.astype(np.float64).mean(
        0
    )  # law of total variance
    np.testing.assert_allclose(u.aleatoric + u.epistemic, mixture_variance, rtol=1e-6)
    np.testing.assert_allclose(u.aleatoric, variances.mean(0), rtol=1e-6)
    np.testing.assert_allclose(u.epistemic, means.var(0), rtol=1e-5)


def test_regression_hand_values():
    u = variance_uncertainty(np.array([[1.0], [3.0]]), np.array([[0.5], [1.5]]))
    np.testing.assert_allclose(u.aleatoric, [1.0])
    np.testing.assert_allclose(u.epistemic, [1.0])
    np.testing.assert_allclose(u.total, [2.0])


# Issue 14, item 4: NaN probabilities were treated as zeros ([NaN, .5, .5] gave entropy ln 2, knowledge 0
# and total < data). Non-finite, out-of-range or unnormalised probabilities are refused, as in metrics.
@pytest.mark.parametrize("bad", [[np.nan, 0.5, 0.5], [np.inf, 0.0, 0.0], [1.5, -0.5, 0.0], [0.2, 0.2, 0.2]])
def test_invalid_probabilities_are_refused(bad):
    with pytest.raises(ValueError, match="entropy"):
        entropy(np.array(bad, np.float32))
    members = np.array([[bad], [[0.2, 0.3, 0.5]]], np.float32)  # (M=2, N=1, K=3)
    with pytest.raises(ValueError, match="categorical_uncertainty"):
        categorical_uncertainty(members)
    with pytest.raises(ValueError, match="categorical_uncertainty"):
        categorical_uncertainty(jax.numpy.asarray(members))  # a device array is checked too


def test_nan_propagates_under_jit_instead_of_counting_as_zero():
    p = np.array([np.nan, 0.5, 0.5], np.float32)
    assert np.isnan(jax.jit(entropy)(p))
    u = jax.jit(categorical_uncertainty)(np.stack([p, [0.2, 0.3, 0.5]])[:, None])
    assert all(np.isnan(np.asarray(v)).all() for v in u)


@pytest.mark.parametrize("shape", [(3,), (0, 2, 3), (2, 1, 0)])
def test_categorical_uncertainty_needs_members_and_classes(shape):
    with pytest.raises(ValueError, match="categorical_uncertainty"):
        categorical_uncertainty(np.full(shape, 1.0 / 3, np.float32))


@pytest.mark.parametrize(
    "means, variances",
    [
        (np.zeros((2, 3)), np.zeros((2, 4))),  # shapes differ: no silent broadcast
        (np.zeros((2, 3)), -np.ones((2, 3))),  # a negative variance
        (np.full((2, 3), np.nan), np.ones((2, 3))),
        (np.zeros((0, 3)), np.zeros((0, 3))),  # no member
        (np.float32(0.0), np.float32(1.0)),  # no member axis
    ],
)
def test_variance_uncertainty_refuses_invalid_moments(means, variances):
    with pytest.raises(ValueError, match="variance_uncertainty"):
        variance_uncertainty(means, variances)


def test_one_member_has_exactly_zero_knowledge_uncertainty(rng):
    # Compiled as one program, p log p - p log mean was fused into a multiply-add that left ~5e-9.
    p = np.asarray(jax.nn.softmax(rng.normal(0, 3, (1, 200, 7))), np.float32)
    assert np.all(np.asarray(categorical_uncertainty(p).knowledge) == 0.0)
    assert np.all(np.asarray(categorical_uncertainty(jax.numpy.asarray(p)).knowledge) == 0.0)
