"""beta-NLL (Seitzer et al. 2022): its value, its gradient scaling, and training a Gaussian head with it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepens
from deepens import losses
from deepens.heads import Gaussian


def test_beta_zero_is_the_nll():
    rng = np.random.default_rng(0)
    mean, y = rng.normal(size=(2, 7))
    std = rng.uniform(0.2, 3.0, size=7)
    np.testing.assert_allclose(
        losses.beta_gaussian_nll(mean, std, y, beta=0.0), losses.gaussian_nll(mean, std, y), rtol=1e-6
    )


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_mean_gradient_is_scaled_by_sigma_to_two_beta(beta):
    rng = np.random.default_rng(1)
    mean, y = jnp.asarray(rng.normal(size=(2, 5)), jnp.float32)
    std = jnp.asarray(rng.uniform(0.3, 4.0, size=5), jnp.float32)
    grad_nll = jax.grad(lambda m: jnp.sum(losses.gaussian_nll(m, std, y)))(mean)
    grad_beta = jax.grad(lambda m: jnp.sum(losses.beta_gaussian_nll(m, std, y, beta=beta)))(mean)
    np.testing.assert_allclose(grad_beta, grad_nll * std ** (2 * beta), rtol=1e-5)
    # the weight is a constant to differentiation: the std gradient is the NLL's, scaled the same way
    grad_std_nll = jax.grad(lambda s: jnp.sum(losses.gaussian_nll(mean, s, y)))(std)
    grad_std_beta = jax.grad(lambda s: jnp.sum(losses.beta_gaussian_nll(mean, s, y, beta=beta)))(std)
    np.testing.assert_allclose(grad_std_beta, grad_std_nll * std ** (2 * beta), rtol=1e-5)


@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_beta_outside_unit_interval_raises(beta):
    with pytest.raises(ValueError, match="beta"):
        losses.beta_gaussian_nll(np.zeros(2), np.ones(2), np.zeros(2), beta=beta)
    with pytest.raises(ValueError, match="beta"):
        Gaussian(beta=beta)


def test_head_beta_nll_sums_over_targets():
    head = Gaussian(beta=0.7)
    outputs = jnp.asarray([[0.1, -0.4, 0.3, 1.2]])
    loc, scale = head.split(outputs)
    y = jnp.asarray([[0.5, -1.0]])
    expected = np.sum(np.asarray(losses.gaussian_nll(loc, scale, y)) * np.asarray(scale) ** 1.4, axis=-1)
    np.testing.assert_allclose(head.loss("beta_nll")(outputs, y), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="beta_nll"):
        head.loss("mse")


def test_fit_with_beta_nll_trains_and_saves_beta(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, size=(64, 1)).astype(np.float32)
    y = (np.sin(2 * x) + 0.1 * rng.normal(size=x.shape)).astype(np.float32)
    ensemble = deepens.fit(
        x,
        y,
        loss="beta_nll",
        head=Gaussian(beta=0.25),
        hidden=(16,),
        members=2,
        epochs=60,
        learning_rate=0.02,
        progress=False,
    )
    history = np.asarray(ensemble.history)
    assert np.all(np.isfinite(history))
    assert history[-1].mean() < history[0].mean()
    path = deepens.save(ensemble, tmp_path / "model")
    loaded = deepens.load(path)
    assert loaded.head == Gaussian(beta=0.25)
    np.testing.assert_allclose(loaded.predict(x).mean, ensemble.predict(x).mean, rtol=1e-6)
    default = deepens.fit(x, y, loss="beta_nll", hidden=(8,), members=1, epochs=2, progress=False)
    assert default.head.beta == 0.5
