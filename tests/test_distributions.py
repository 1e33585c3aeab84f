"""deepens.distributions and the UniformMixture against scipy.stats, in float64 NumPy and float32 JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from deepens import distributions as D
from deepens.heads import Gaussian, Laplace, StudentT, get_head
from deepens.mixture import UniformMixture


def _params(rng, shape=(4, 3)):
    return rng.normal(0, 2, shape), rng.uniform(0.2, 3, shape), rng.uniform(2.2, 12, shape)


def _pair(family, loc, scale, df):
    """(ours, scipy's frozen distribution) for one family."""
    if family == "student_t":
        return D.StudentT(loc, scale, df), stats.t(df, loc, scale)
    ours = D.location_scale(family, loc, scale)
    return ours, (stats.norm if family == "gaussian" else stats.laplace)(loc, scale)


FAMILIES = ["gaussian", "laplace", "student_t"]


@pytest.mark.parametrize("family", FAMILIES)
def test_float64_numpy_matches_scipy(rng, family):
    loc, scale, df = _params(rng)
    ours, ref = _pair(family, loc, scale, df)
    y = rng.normal(0, 4, loc.shape)
    np.testing.assert_allclose(ours.log_prob(y), ref.logpdf(y), rtol=1e-12)
    np.testing.assert_allclose(ours.cdf(y), ref.cdf(y), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours.survival(y), ref.sf(y), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours.mean, ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(ours.variance, ref.var(), rtol=1e-12)
    np.testing.assert_allclose(ours.stddev, ref.std(), rtol=1e-12)
    np.testing.assert_allclose(ours.entropy(), ref.entropy(), rtol=1e-10)
    tolerance = 1e-6 if family == "student_t" else 1e-12  # bisection to float64 resolution of the CDF
    for p in (1e-9, 0.01, 0.3, 0.5, 0.9):
        np.testing.assert_allclose(ours.quantile(p), ref.ppf(p), rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(ours.upper_quantile(p), ref.isf(p), rtol=tolerance, atol=tolerance)
    assert ours.log_prob(y).dtype == np.float64 and isinstance(ours.cdf(y), np.ndarray)


@pytest.mark.parametrize("family", FAMILIES)
def test_float32_jax_matches_scipy_and_crosses_jit(rng, family):
    loc, scale, df = (a.astype(np.float32) for a in _params(rng))
    ref = _pair(family, loc.astype(np.float64), scale.astype(np.float64), df.astype(np.float64))[1]
    ours = _pair(family, jnp.asarray(loc), jnp.asarray(scale), jnp.asarray(df))[0]
    y = rng.normal(0, 4, loc.shape).astype(np.float32)
    np.testing.assert_allclose(ours.log_prob(y), ref.logpdf(y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.cdf(y), ref.cdf(y), atol=2e-6)
    np.testing.assert_allclose(ours.quantile(0.9), ref.ppf(0.9), rtol=2e-5, atol=2e-5)
    assert ours.cdf(y).dtype == jnp.float32
    # A pytree: one compiled program takes the distribution itself.
    jitted = jax.jit(lambda d, v: (d.log_prob(v), d.variance))(ours, y)
    np.testing.assert_allclose(jitted[0], ours.log_prob(y), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jitted[1], ours.variance, rtol=1e-6)
    assert jax.tree_util.tree_structure(ours).num_leaves == (3 if family == "student_t" else 2)


def test_laplace_quantile_split_form_is_exact_in_both_tails_in_float64():
    # Issue 14: p - 1/2 threw away the low bits of small p (float32 gave -13.109 at 1e-6, scipy -13.122).
    laplace = D.Laplace(np.float64(0.0), np.float64(1.0))
    for k in range(1, 10):
        p = 10.0**-k
        np.testing.assert_allclose(laplace.quantile(p), stats.laplace.ppf(p), rtol=1e-13)
        np.testing.assert_allclose(laplace.quantile(1 - p), stats.laplace.ppf(1 - p), rtol=1e-13)
        np.testing.assert_allclose(laplace.upper_quantile(p), stats.laplace.isf(p), rtol=1e-13)
    float32 = D.Laplace(jnp.float32(0.0), jnp.float32(1.0))
    for k in range(1, 10):
        p = np.float32(10.0**-k)
        np.testing.assert_allclose(float32.quantile(p), stats.laplace.ppf(float(p)), rtol=1e-6)
        np.testing.assert_allclose(float32.upper_quantile(p), stats.laplace.isf(float(p)), rtol=1e-6)


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_closed_form_kl_matches_monte_carlo(family):
    p = D.location_scale(family, np.float64(0.3), np.float64(0.8))
    q = D.location_scale(family, np.float64(-0.4), np.float64(1.3))
    ref = _pair(family, 0.3, 0.8, None)[1]
    y = ref.rvs(size=400_000, random_state=3)
    assert float(p.kl(q)) == pytest.approx(float(np.mean(p.log_prob(y) - q.log_prob(y))), abs=0.01)
    assert float(p.kl(p)) == pytest.approx(0.0, abs=1e-12)


def test_categorical_against_scipy(rng):
    logits = rng.normal(size=(5, 4))
    labels = rng.integers(0, 4, 5)
    ours = D.Categorical(logits)
    probs = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
    np.testing.assert_allclose(ours.probs, probs, rtol=1e-12)
    np.testing.assert_allclose(ours.entropy(), stats.entropy(probs, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(ours.log_prob(labels), np.log(probs[np.arange(5), labels]), rtol=1e-6)
    other = D.Categorical(rng.normal(size=(5, 4)))
    np.testing.assert_allclose(ours.kl(other), stats.entropy(probs, other.probs, axis=-1), rtol=1e-10)
    np.testing.assert_allclose(ours.variance, probs * (1 - probs), rtol=1e-12)


def test_point_mass():
    point = D.Deterministic(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(point.cdf(np.array([1.0, 1.5])), [1.0, 0.0])
    np.testing.assert_array_equal(point.survival(np.array([1.0, 1.5])), [0.0, 1.0])
    np.testing.assert_array_equal(point.log_prob(np.array([1.0, 1.5])), [np.inf, -np.inf])
    np.testing.assert_array_equal(point.variance, 0.0)
    np.testing.assert_array_equal(point.quantile(0.3), [1.0, 2.0])


@pytest.mark.parametrize(
    "name, width", [("gaussian", 2), ("laplace", 2), ("student_t", 3), ("point", 1), ("categorical", 4)]
)
def test_head_distribution_is_the_heads_view(rng, name, width):
    """Head.distribution does split and softplus once; the head's methods are that distribution's."""
    head = get_head(name)
    outputs = rng.normal(size=(5, 2 * width if name != "categorical" else width)).astype(np.float32)
    dist = head.distribution(outputs)
    np.testing.assert_array_equal(head.mean(outputs), dist.mean)
    np.testing.assert_array_equal(head.variance(outputs), dist.variance)
    if hasattr(head, "split"):
        parts = head.split(outputs)
        np.testing.assert_array_equal(dist.loc, parts[0])
        np.testing.assert_array_equal(dist.scale, parts[1])


def _mixture(rng, family, m=4, n=3):
    loc, scale, df = _params(rng, (m, n))
    ours, _ = _pair(family, loc, scale, df)
    members = [_pair(family, loc[i], scale[i], df[i])[1] for i in range(m)]
    return UniformMixture(ours), members


@pytest.mark.parametrize("family", FAMILIES)
def test_uniform_mixture_against_scipy_members(rng, family):
    mixture, members = _mixture(rng, family)
    y = rng.normal(0, 3, 3)
    np.testing.assert_allclose(mixture.cdf(y), np.mean([d.cdf(y) for d in members], axis=0), rtol=1e-10)
    np.testing.assert_allclose(mixture.survival(y), np.mean([d.sf(y) for d in members], axis=0), rtol=1e-10)
    density = np.mean([d.pdf(y) for d in members], axis=0)
    np.testing.assert_allclose(mixture.log_prob(y), np.log(density), rtol=1e-10)
    means = np.array([d.mean() for d in members])
    second = np.mean([d.var() + d.mean() ** 2 for d in members], axis=0)
    np.testing.assert_allclose(mixture.mean, means.mean(0), rtol=1e-12)
    np.testing.assert_allclose(mixture.variance, second - means.mean(0) ** 2, rtol=1e-10)  # law of total variance
    lower, upper = mixture.interval(0.9)
    np.testing.assert_allclose(mixture.cdf(lower), 0.05, atol=1e-9)
    np.testing.assert_allclose(mixture.survival(upper), 0.05, atol=1e-9)
    np.testing.assert_allclose(mixture.quantile(0.3), UniformMixture(mixture.members).quantile(0.3))
    np.testing.assert_allclose(mixture.cdf(mixture.quantile(0.3)), 0.3, atol=1e-9)


def test_uniform_mixture_joint_log_prob_over_the_last_axis(rng):
    loc, scale, _ = _params(rng, (3, 5, 2))
    y = rng.normal(size=(5, 2))
    mixture = UniformMixture(D.Normal(loc, scale))
    members = stats.norm.logpdf(y[None], loc, scale)
    np.testing.assert_allclose(mixture.log_prob(y, joint=True), logsumexp(members.sum(-1), 0) - np.log(3), rtol=1e-12)
    np.testing.assert_allclose(mixture.log_prob(y), logsumexp(members, 0) - np.log(3), rtol=1e-12)


def test_uniform_mixture_of_one_member_is_that_member(rng):
    loc, scale, _ = _params(rng, (1, 4))
    member = D.Laplace(loc[0], scale[0])
    mixture = UniformMixture(D.Laplace(loc, scale))
    y = rng.normal(size=4)
    np.testing.assert_allclose(mixture.log_prob(y), member.log_prob(y), rtol=1e-14)
    np.testing.assert_array_equal(mixture.variance, member.variance)
    lower, upper = mixture.interval(0.99)
    np.testing.assert_allclose(lower, member.quantile(0.005), rtol=1e-12)
    np.testing.assert_allclose(upper, member.upper_quantile(0.005), rtol=1e-12)


def test_uniform_mixture_interval_refuses_levels_outside_zero_one():
    mixture = UniformMixture(D.Normal(np.zeros((2, 1)), np.ones((2, 1))))
    for level in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="level"):
            mixture.interval(level)


def test_heads_distribution_classes():
    assert isinstance(Gaussian().distribution(np.zeros((1, 2), np.float32)), D.Normal)
    assert isinstance(Laplace().distribution(np.zeros((1, 2), np.float32)), D.Laplace)
    assert isinstance(StudentT().distribution(np.zeros((1, 3), np.float32)), D.StudentT)
