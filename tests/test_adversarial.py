"""FGSM and VAT: perturbation sizes, loss increase for convex models, eps = 0, and the power iteration."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deepens import losses
from deepens import program as program_module
from deepens.adversarial import FGSM, VAT, fgsm_perturb, get_adversarial, input_scale, vat_divergence, vat_perturbation
from deepens.heads import Categorical, Point
from deepens.models import as_model


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
    expected = jax.grad(
        lambda v: 0.5 * jnp.mean(_linear_gaussian_loss(v, 0.1, y)(x) + _linear_gaussian_loss(v, 0.1, y)(x_adv))
    )(w)
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


# The trainer's objective pinned by hand on a linear point model f(x) = x.w + b trained on squared error,
# where FGSM's step and VAT's perturbation have closed forms.


def _linear_point_program(adversarial):
    init = lambda key, x: {"w": jnp.zeros((x.shape[1], 1)), "b": jnp.zeros(1)}  # noqa: E731
    apply = lambda p, x: x @ p["w"] + p["b"]  # noqa: E731
    return program_module.Program(as_model((init, apply)), Point(), "mse", optax.sgd(0.1), adversarial, 16, 1, True)


@pytest.fixture
def linear_point(rng):
    x = rng.normal(0, 3, (16, 3)).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    params = {"w": rng.normal(size=(3, 1)).astype(np.float32), "b": np.array([0.3], np.float32)}
    weights = np.r_[np.ones(13), np.zeros(3)].astype(np.float32)  # the last three rows are batch padding
    scale = np.array([1.0, 2.0, 0.5], np.float32)
    return x, y, params, weights, scale


def _hand_fgsm(x, y, w, b, weights, eps):
    """(loss(x) + loss(x')) / 2 for loss (f - y)^2 and x' = x + eps sign(2 (f - y) w), its weighted mean
    and the gradient with x' held constant, all in float64."""
    x, y, w = x.astype(np.float64), y[:, 0].astype(np.float64), w[:, 0].astype(np.float64)
    residual = x @ w + b[0] - y
    x_adv = x + eps * np.sign(residual)[:, None] * np.sign(w)  # grad_x (f - y)^2 = 2 (f - y) w
    residual_adv = x_adv @ w + b[0] - y
    per_example = 0.5 * (residual**2 + residual_adv**2)
    total = weights.sum()
    grad_w = ((weights * residual) @ x + (weights * residual_adv) @ x_adv) / total
    grad_b = np.sum(weights * (residual + residual_adv)) / total
    return per_example, np.sum(weights * per_example) / total, grad_w, grad_b


def test_fgsm_objective_is_the_hand_written_step(linear_point):
    x, y, params, weights, scale = linear_point
    fgsm = FGSM(0.07, relative=False)
    per_example, mean, grad_w, grad_b = _hand_fgsm(x, y, params["w"], params["b"], weights, scale * 0.07)
    loss_fn = Point().loss("mse")
    predict = lambda inputs: inputs @ params["w"] + params["b"]  # noqa: E731
    np.testing.assert_allclose(fgsm.objective(loss_fn, predict, x, y, scale=scale), per_example, rtol=1e-5)
    # The trainer's batch objective calls it: the same weighted mean and gradient, with eps from the array.
    program = _linear_point_program(FGSM(0.5, relative=False))  # its own eps is ignored in favour of eps=
    value_and_grad = jax.value_and_grad(
        lambda p: program_module._batch_objective(program, p, {}, x, y, weights, scale, jax.random.PRNGKey(0), 0.07)[0]
    )
    value, grads = value_and_grad(params)
    np.testing.assert_allclose(value, mean, rtol=1e-5)
    np.testing.assert_allclose(grads["w"][:, 0], grad_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["b"][0], grad_b, rtol=1e-4, atol=1e-6)


def test_one_training_step_of_the_compiled_program_is_the_hand_written_fgsm_step(linear_point):
    x, y, params, _, scale = linear_point
    lr, eps = 0.1, 0.07
    _, _, grad_w, grad_b = _hand_fgsm(x, y, params["w"], params["b"], np.ones(len(x)), scale * eps)
    program = _linear_point_program(FGSM(eps, relative=False))  # batch 16 = all rows: one full-batch step
    stacked = jax.tree.map(lambda leaf: leaf[None], params)
    trained, _, history, _ = program_module.train_members(
        program, stacked, {}, x, y, epochs=1, seed=0, member_ids=[0], scale=scale
    )
    np.testing.assert_allclose(trained["w"][0, :, 0], params["w"][:, 0] - lr * grad_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(trained["b"][0, 0], params["b"][0] - lr * grad_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        history[0, 0], _hand_fgsm(x, y, params["w"], params["b"], np.ones(len(x)), scale * eps)[1], rtol=1e-5
    )


def test_vat_objective_is_the_hand_written_step(linear_point):
    """For a linear point model the power iteration finds r = eps * scale * (scale w) / |scale w| up to
    sign, after one step from any start, so KL = (r.w)^2 / 2 = eps^2 |scale w|^2 / 2 for every row."""
    x, y, params, weights, scale = linear_point
    vat, eps, key = VAT(0.5, relative=False, weight=0.8), 0.05, jax.random.PRNGKey(3)
    w, b = params["w"][:, 0].astype(np.float64), params["b"].astype(np.float64)
    residual = x @ w + b[0] - y[:, 0]
    sw = scale * w
    # The sign of r per row follows the random start d: sign((scale * d) . w).
    start = np.asarray(jax.random.normal(key, x.shape, jnp.float32), np.float64)
    r = eps * np.sign(start @ sw)[:, None] * scale * sw / np.linalg.norm(sw)
    kl = 0.5 * (r @ w) ** 2
    np.testing.assert_allclose(kl, 0.5 * eps**2 * np.sum(sw**2), rtol=1e-10)
    per_example = residual**2 + 0.8 * kl
    total = weights.sum()
    # The target p(.|x) is held fixed; only the perturbed prediction x + r carries gradient.
    grad_w = (weights * 2 * residual) @ x / total + 0.8 * (weights * (r @ w)) @ (x + r) / total
    grad_b = np.sum(weights * (2 * residual + 0.8 * (r @ w))) / total

    loss_fn = Point().loss("mse")
    predict = lambda inputs: inputs @ params["w"] + params["b"]  # noqa: E731
    got = vat.objective(loss_fn, predict, x, y, eps=eps, scale=scale, key=key, kl=Point().kl)
    np.testing.assert_allclose(got, per_example, rtol=1e-4)
    program = _linear_point_program(vat)
    value, grads = jax.value_and_grad(
        lambda p: program_module._batch_objective(program, p, {}, x, y, weights, scale, key, eps)[0]
    )(params)
    np.testing.assert_allclose(value, np.sum(weights * per_example) / total, rtol=1e-4)
    np.testing.assert_allclose(grads["w"][:, 0], grad_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["b"][0], grad_b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="key"):
        vat.objective(loss_fn, predict, x, y, scale=scale)
