"""The uniform mixture: moments against Monte Carlo, exact reduction to one member, log-density, quantiles."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from deepens import mixture
from deepens.heads import Gaussian, Laplace
from deepens.uncertainty import variance_uncertainty

HEADS = [(Gaussian(), stats.norm), (Laplace(), stats.laplace)]


def _members(rng, m=4, n=3):
    loc = rng.normal(0, 3, (m, n, 1))
    rho = rng.normal(0, 1, (m, n, 1))
    return np.concatenate([loc, rho], -1).astype(np.float32)


def _moments(means, variances):
    """The mixture's mean and variance (law of total variance, see deepens.uncertainty)."""
    return jnp.mean(means, axis=0), variance_uncertainty(means, variances).total


@pytest.mark.parametrize("head, dist", HEADS)
def test_moments_match_monte_carlo(rng, head, dist):
    outputs = _members(rng)
    loc, scale = (np.asarray(a) for a in head.split(outputs))
    mean, var = _moments(head.mean(outputs), head.variance(outputs))
    samples_per_member = 200_000
    draws = dist.rvs(loc=loc, scale=scale, size=(samples_per_member, *loc.shape), random_state=0)
    pooled = draws.transpose(2, 3, 0, 1).reshape(loc.shape[1], 1, -1)  # (n, 1, members * samples)
    np.testing.assert_allclose(mean, pooled.mean(-1), atol=4 * float(np.sqrt(np.max(var))) / np.sqrt(pooled.shape[-1]))
    np.testing.assert_allclose(var, pooled.var(-1), rtol=0.02)


def test_moments_are_the_law_of_total_variance(rng):
    outputs = _members(rng)
    head = Gaussian()
    mu, var = np.asarray(head.mean(outputs), np.float64), np.asarray(head.variance(outputs), np.float64)
    mean, total = _moments(head.mean(outputs), head.variance(outputs))
    expected = (var + mu**2).mean(0) - mu.mean(0) ** 2  # GUIDE: mean_m (var_m + mu_m^2) - mu*^2
    np.testing.assert_allclose(total, expected, rtol=1e-5)
    np.testing.assert_allclose(mean, mu.mean(0), rtol=1e-6)


def test_moments_stay_accurate_when_the_mean_dwarfs_the_spread():
    mu = jnp.array([[1e4], [1e4 + 1e-2]], jnp.float32)
    var = jnp.full_like(mu, 1e-4)
    _, total = _moments(mu, var)
    spread = np.var(np.array([1e4, 1e4 + 1e-2], np.float32).astype(np.float64))
    np.testing.assert_allclose(total, 1e-4 + spread, rtol=0.05)


@pytest.mark.parametrize("head, dist", HEADS)
def test_one_member_reduces_exactly_to_that_member(rng, head, dist):
    outputs = _members(rng, m=1)
    y = rng.normal(0, 3, outputs.shape[1:-1] + (1,)).astype(np.float32)
    mean, var = _moments(head.mean(outputs), head.variance(outputs))
    np.testing.assert_array_equal(mean, head.mean(outputs)[0])
    np.testing.assert_array_equal(var, head.variance(outputs)[0])
    np.testing.assert_allclose(
        mixture.mixture_log_prob(-head.nll(outputs, y[None])), -head.nll(outputs[0], y), rtol=1e-6
    )
    lower, upper = mixture.mixture_interval(head, outputs, 0.9)
    loc, scale = head.split(outputs[0])
    np.testing.assert_allclose(lower, dist.ppf(0.05, loc, scale), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(upper, dist.ppf(0.95, loc, scale), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("head, dist", HEADS)
def test_log_density_matches_direct_sum(rng, head, dist):
    outputs = _members(rng)
    y = rng.normal(0, 3, (outputs.shape[1], 1)).astype(np.float32)
    loc, scale = (np.asarray(a, np.float64) for a in head.split(outputs))
    direct = np.log(np.mean(dist.pdf(y[None], loc, scale), axis=0))[..., 0]
    member_log_probs = -head.nll(outputs, np.broadcast_to(y, outputs.shape[:2] + (1,)))
    np.testing.assert_allclose(mixture.mixture_log_prob(member_log_probs), direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head, dist", HEADS)
@pytest.mark.parametrize("level", [0.5, 0.9, 0.99])
def test_interval_holds_its_probability_under_the_mixture(rng, head, dist, level):
    outputs = _members(rng)
    lower, upper = mixture.mixture_interval(head, outputs, level)
    loc, scale = (np.asarray(a, np.float64) for a in head.split(outputs))
    cdf = lambda v: np.mean(dist.cdf(np.asarray(v, np.float64)[None], loc, scale), axis=0)  # noqa: E731
    np.testing.assert_allclose(cdf(lower), (1 - level) / 2, atol=2e-5)
    np.testing.assert_allclose(cdf(upper), (1 + level) / 2, atol=2e-5)


@pytest.mark.parametrize("head, dist", HEADS)
@pytest.mark.parametrize("level", [1 - 1e-7, 1 - 1e-9, 1 - 1e-12])
def test_intervals_at_levels_near_one_stay_finite(head, dist, level):
    # Issue 14: (1 + level) / 2 rounds to 1 in float32 and the upper bound was +inf.
    outputs = np.array([[[0.5, 0.3]]], np.float32)
    loc, scale = (np.asarray(a, np.float64)[0] for a in head.split(outputs))
    lower, upper = mixture.mixture_interval(head, outputs, level)
    tail = (1 - level) / 2
    np.testing.assert_allclose(lower, dist.ppf(tail, loc, scale), rtol=1e-5)
    np.testing.assert_allclose(upper, dist.isf(tail, loc, scale), rtol=1e-5)


def test_interval_level_is_checked(rng):
    with pytest.raises(ValueError, match="level"):
        mixture.mixture_interval(Gaussian(), _members(rng), 1.0)


def test_mixture_probs_average_probabilities_not_logits():
    member_probs = jnp.array([[[0.9, 0.1]], [[0.5, 0.5]]])
    np.testing.assert_allclose(mixture.mixture_probs(member_probs), [[0.7, 0.3]])
