"""Heads: parameterisation, moments, CDF and quantiles against scipy, closed-form KL against Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from deepens.heads import Categorical, Gaussian, Laplace, Point, get_head


def _outputs(rng, n=6, t=2):
    return np.concatenate([rng.normal(0, 2, (n, t)), rng.normal(0, 1.5, (n, t))], axis=-1).astype(np.float32)


def test_scale_is_softplus_plus_min_scale(rng):
    outputs = _outputs(rng)
    loc, scale = Gaussian(min_scale=1e-3).split(outputs)
    np.testing.assert_allclose(loc, outputs[:, :2])
    np.testing.assert_allclose(scale, np.log1p(np.exp(outputs[:, 2:])) + 1e-3, rtol=1e-6)


def test_gaussian_variance_is_sigma_squared_and_laplace_is_two_b_squared(rng):
    outputs = _outputs(rng)
    _, scale = Gaussian().split(outputs)
    np.testing.assert_allclose(Gaussian().variance(outputs), scale**2, rtol=1e-6)
    np.testing.assert_allclose(Laplace().variance(outputs), 2 * scale**2, rtol=1e-6)
    np.testing.assert_allclose(Laplace().variance(outputs), stats.laplace.var(scale=scale), rtol=1e-5)


@pytest.mark.parametrize("head, dist", [(Gaussian(), stats.norm), (Laplace(), stats.laplace)])
def test_log_prob_cdf_and_quantile_match_scipy(rng, head, dist):
    outputs = _outputs(rng)
    loc, scale = head.split(outputs)
    y = rng.normal(0, 3, loc.shape).astype(np.float32)
    np.testing.assert_allclose(head.log_prob(outputs, y), dist.logpdf(y, loc, scale), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head.nll(outputs, y), -dist.logpdf(y, loc, scale).sum(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(head.cdf(outputs, y), dist.cdf(y, loc, scale), atol=1e-6)
    for p in (0.025, 0.3, 0.5, 0.9):
        np.testing.assert_allclose(head.quantile(outputs, p), dist.ppf(p, loc, scale), rtol=1e-4, atol=1e-4)


def test_laplace_cdf_has_no_overflow_far_in_the_tails():
    outputs = np.array([[0.0, 0.0]], np.float32)  # b = softplus(0) ~ 0.69
    cdf = Laplace().cdf(outputs, np.array([[-1e4], [1e4]], np.float32))
    np.testing.assert_array_equal(np.asarray(cdf), [[0.0], [1.0]])
    assert not np.any(np.isnan(jax.grad(lambda y: Laplace().cdf(outputs, y).sum())(np.array([[1e4]], np.float32))))


@pytest.mark.parametrize("head", [Gaussian(), Laplace()])
def test_kl_matches_monte_carlo(rng, head):
    p = np.array([[0.3, 0.2]], np.float32)
    q = np.array([[-0.4, 0.9]], np.float32)
    loc_p, scale_p = head.split(p)
    dist = stats.norm if isinstance(head, Gaussian) else stats.laplace
    samples = dist.rvs(loc=float(loc_p[0, 0]), scale=float(scale_p[0, 0]), size=400_000, random_state=3)
    y = samples[:, None].astype(np.float32)
    p_rep, q_rep = np.repeat(p, len(y), 0), np.repeat(q, len(y), 0)
    mc = float(np.mean(head.nll(q_rep, y) - head.nll(p_rep, y)))
    assert float(head.kl(p, q)[0]) == pytest.approx(mc, abs=0.01)
    assert float(head.kl(p, p)[0]) == pytest.approx(0.0, abs=1e-6)


def test_categorical_kl_and_probabilities(rng):
    a, b = rng.normal(size=(2, 4, 5)).astype(np.float32)
    pa, pb = jax.nn.softmax(a), jax.nn.softmax(b)
    np.testing.assert_allclose(Categorical().kl(a, b), np.sum(pa * np.log(pa / pb), -1), rtol=1e-5)
    np.testing.assert_allclose(Categorical().mean(a), pa, rtol=1e-6)


def test_point_head_has_zero_variance_and_takes_mse_or_l1(rng):
    out = rng.normal(size=(4, 2)).astype(np.float32)
    y = rng.normal(size=(4, 2)).astype(np.float32)
    head = Point()
    np.testing.assert_array_equal(head.variance(out), 0.0)
    np.testing.assert_allclose(head.loss("mse")(out, y), ((out - y) ** 2).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(head.loss("l1")(out, y), np.abs(out - y).sum(-1), rtol=1e-6)
    with pytest.raises(ValueError, match="mse"):
        head.loss("nll")


def test_get_head_rejects_unknown_names():
    assert isinstance(get_head("laplace"), Laplace)
    with pytest.raises(ValueError, match="unknown head"):
        get_head("student")


def test_location_scale_head_rejects_odd_output_width():
    with pytest.raises(ValueError, match="even"):
        Gaussian().split(jnp.zeros((2, 3)))


@pytest.mark.parametrize("head, dist", [(Gaussian(), stats.norm), (Laplace(), stats.laplace)])
def test_quantiles_far_in_both_tails_match_scipy(head, dist):
    # Issue 14: the Laplace quantile formed p - 1/2 in float32 and lost small p (-13.109 for 1e-6, -inf
    # below 1.5e-8). Upper tails: p = 1 - 10^-k as float32 holds it (k <= 7); beyond, upper_quantile.
    outputs = np.array([[0.25, 0.5413248]], np.float32)  # scale softplus(0.5413) + 1e-6 ~ 1
    loc, scale = (float(a[0, 0]) for a in head.split(outputs))
    for k in range(1, 10):
        p = np.float32(10.0**-k)
        np.testing.assert_allclose(head.quantile(outputs, p)[0, 0], dist.ppf(float(p), loc, scale), rtol=2e-6)
        np.testing.assert_allclose(head.upper_quantile(outputs, p)[0, 0], dist.isf(float(p), loc, scale), rtol=2e-6)
        np.testing.assert_allclose(head.survival(outputs, head.upper_quantile(outputs, p))[0, 0], p, rtol=1e-4)
        if k <= 7:
            upper = np.float32(1.0 - 10.0**-k)
            np.testing.assert_allclose(
                head.quantile(outputs, upper)[0, 0], dist.ppf(float(upper), loc, scale), rtol=2e-6
            )


@pytest.mark.parametrize("head", [Gaussian(), Laplace()])
def test_nll_refuses_targets_that_would_broadcast_to_a_matrix(head):
    # The distributions broadcast (a mixture scores y against every member); the loss path must not.
    outputs = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"y has shape \(4,\)"):
        head.nll(outputs, np.zeros(4, np.float32))
    assert head.nll(outputs, np.zeros((4, 1), np.float32)).shape == (4,)
