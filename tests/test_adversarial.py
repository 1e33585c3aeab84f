"""FGSM and VAT: perturbation sizes, loss increase for convex models, eps = 0, and the power iteration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepens import losses
from deepens.adversarial import FGSM, VAT, fgsm_perturb, get_adversarial, input_scale, vat_divergence, vat_perturbation
from deepens.heads import Categorical


def _linear_gaussian_loss(w, b, y):
    return lambda x: losses.gaussian_nll(x @ w + b, jnp.full_like(y, 0.7), y)


@pytest.fixture
def linear_problem(rng):
    x = rng.normal(0, 10, (32, 5)).astype(np.float32)  # deliberately far outside [0, 1]
    w = rng.normal(size=5).astype(np.float32)
    y = rng.normal(size=32).astype(np.float32)
    return x, w, y


def test_fgsm_moves_every_coordinate_by_eps(linear_problem):
    x, w, y = linear_problem
    x_adv = fgsm_perturb(_linear_gaussian_loss(w, 0.1, y), jnp.asarray(x), 0.05)
    np.testing.assert_allclose(np.abs(np.asarray(x_adv) - x), 0.05, rtol=1e-4)


def test_fgsm_relative_eps_is_a_fraction_of_each_feature_range(linear_problem):
    x, w, y = linear_problem
    x = x * np.array([1, 10, 100, 0.1, 3], np.float32)
    scale = input_scale(x, relative=True)
    np.testing.assert_allclose(scale, x.max(0) - x.min(0))
    x_adv = fgsm_perturb(_linear_gaussian_loss(w, 0.1, y), jnp.asarray(x), 0.01 * scale)
    np.testing.assert_allclose(np.abs(np.asarray(x_adv) - x), np.broadcast_to(0.01 * scale, x.shape), rtol=1e-3)
    np.testing.assert_array_equal(input_scale(x, relative=False), np.ones(5))


def test_fgsm_does_not_lower_the_loss_of_a_linear_model(linear_problem, rng):
    x, w, y = linear_problem
    loss = _linear_gaussian_loss(w, 0.1, y)
    for eps in (1e-3, 0.1, 2.0):
        x_adv = fgsm_perturb(loss, jnp.asarray(x), eps)
        assert np.all(np.asarray(loss(x_adv)) >= np.asarray(loss(x)) - 1e-6)
        assert np.mean(np.asarray(loss(x_adv)) - np.asarray(loss(x))) > 0
    # Softmax regression is convex in x too.
    weights = rng.normal(size=(5, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 32)
    nll = lambda inputs: losses.categorical_nll(inputs @ weights, labels)  # noqa: E731
    x_adv = fgsm_perturb(nll, jnp.asarray(x), 0.3)
    assert np.all(np.asarray(nll(x_adv)) >= np.asarray(nll(x)) - 1e-5)


def test_fgsm_with_zero_eps_leaves_the_inputs_alone(linear_problem):
    x, w, y = linear_problem
    loss = _linear_gaussian_loss(w, 0.1, y)
    np.testing.assert_array_equal(fgsm_perturb(loss, jnp.asarray(x), 0.0), x)


def test_fgsm_training_gradient_treats_the_adversarial_input_as_constant(linear_problem):
    x, w, y = linear_problem

    def objective(weights):  # the trainer's (loss(x) + loss(x_adv)) / 2, x_adv from fgsm_perturb
        loss = _linear_gaussian_loss(weights, 0.1, y)
        return jnp.mean(0.5 * (loss(jnp.asarray(x)) + loss(fgsm_perturb(loss, jnp.asarray(x), 0.2))))

    x_adv = fgsm_perturb(_linear_gaussian_loss(w, 0.1, y), jnp.asarray(x), 0.2)
    expected = jax.grad(lambda v: 0.5 * jnp.mean(_linear_gaussian_loss(v, 0.1, y)(x) + _linear_gaussian_loss(v, 0.1, y)(x_adv)))(w)
    np.testing.assert_allclose(jax.grad(objective)(w), expected, rtol=1e-5)


def test_eps_must_be_non_negative():
    with pytest.raises(ValueError, match="eps"):
        FGSM(eps=-0.1)
    with pytest.raises(ValueError, match="eps"):
        VAT(eps=-1.0)
    with pytest.raises(ValueError, match="eps"):
        get_adversarial("fgsm", eps=float("nan"))
    with pytest.raises(ValueError, match="unknown adversarial"):
        get_adversarial("pgd")
    assert get_adversarial("fgsm") == FGSM(0.01, relative=True)
    assert get_adversarial("none") is None


def test_vat_power_iteration_finds_the_most_sensitive_direction(rng):
    a = np.diag([0.1, 5.0, 0.3]).astype(np.float32)
    divergence = lambda r: jnp.sum(jnp.square(r @ a), axis=-1)  # noqa: E731  a quadratic KL stand-in
    x = jnp.zeros((16, 3))
    r = vat_perturbation(divergence, x, jax.random.PRNGKey(0), eps=0.5, xi=1e-3, iterations=2)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(r), axis=1), 0.5, rtol=1e-5)
    np.testing.assert_allclose(np.abs(np.asarray(r)[:, 1]), 0.5, rtol=1e-3)


def test_vat_relative_radius_is_measured_in_range_units(rng):
    scale = np.array([1.0, 10.0, 100.0], np.float32)
    divergence = lambda r: jnp.sum(jnp.square(r), axis=-1)  # noqa: E731
    r = vat_perturbation(divergence, jnp.zeros((8, 3)), jax.random.PRNGKey(1), eps=0.2, scale=scale)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(r) / scale, axis=1), 0.2, rtol=1e-5)


def test_vat_divergence_needs_no_labels_and_exceeds_a_random_direction(rng):
    weights = rng.normal(size=(4, 3)).astype(np.float32)
    predict = lambda inputs: inputs @ weights  # noqa: E731
    x = jnp.asarray(rng.normal(size=(64, 4)).astype(np.float32))
    config = VAT(eps=0.5, relative=False, xi=1e-3, iterations=3)
    adversarial = vat_divergence(predict, Categorical().kl, x, predict(x), jax.random.PRNGKey(0), config)
    direction = rng.normal(size=(64, 4)).astype(np.float32)
    random_r = 0.5 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    random_kl = Categorical().kl(predict(x), predict(x + random_r))
    assert np.all(np.asarray(adversarial) >= 0)
    assert float(jnp.mean(adversarial)) > 1.5 * float(jnp.mean(random_kl))
