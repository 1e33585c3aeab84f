"""The compiled ensemble trainer: vectorised equals sequential, reproducibility, batching semantics."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deepens
from deepens import program as program_module
from deepens import train
from deepens.models import MLP, as_model


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def _assert_trees_close(a, b, **tol):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **tol)


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 3)).astype(np.float32)  # 37 rows: the last minibatch of 8 is partial
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=37)).astype(np.float32)
    return x, y


COMMON = dict(hidden=(8,), epochs=4, batch_size=8, learning_rate=0.01, progress=False)


def test_members_trained_together_equal_members_trained_alone(regression_data):
    x, y = regression_data
    together = deepens.fit(x, y, members=3, seed=11, adversarial=deepens.FGSM(0.05), **COMMON)
    for m in range(3):
        alone = deepens.fit(x, y, member_ids=[m], seed=11, adversarial=deepens.FGSM(0.05), **COMMON)
        _assert_trees_close(together.select([m]).params, alone.params, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(together.history[:, m], alone.history[:, 0], rtol=1e-5)


def test_same_seed_gives_bitwise_identical_members(regression_data):
    x, y = regression_data
    a = deepens.fit(x, y, members=2, seed=5, **COMMON)
    b = deepens.fit(x, y, members=2, seed=5, **COMMON)
    for u, v in zip(_leaves(a.params), _leaves(b.params), strict=True):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.history, b.history)


def test_members_differ_and_seeds_differ(regression_data):
    x, y = regression_data
    ensemble = deepens.fit(x, y, members=2, seed=5, **COMMON)
    first, second = (_leaves(ensemble.select([m]).params) for m in (0, 1))
    assert all(not np.allclose(u, v) for u, v in zip(first, second, strict=True))
    other = deepens.fit(x, y, members=2, seed=6, **COMMON)
    assert not np.allclose(_leaves(ensemble.params)[0], _leaves(other.params)[0])


def test_a_smaller_ensemble_is_a_prefix_of_a_larger_one(regression_data):
    x, y = regression_data
    small = deepens.fit(x, y, members=2, seed=2, **COMMON)
    large = deepens.fit(x, y, members=4, seed=2, **COMMON)
    _assert_trees_close(small.params, large.select([0, 1]).params, rtol=1e-5, atol=1e-6)


def _linear_model():
    init = lambda key, x: {"w": jax.random.normal(key, (x.shape[1], 1)) * 0.1, "b": jnp.zeros(2)}  # noqa: E731
    apply = lambda p, x: jnp.concatenate([x @ p["w"] + p["b"][0], jnp.zeros((len(x), 1)) + p["b"][1]], -1)  # noqa: E731
    return init, apply


def _reference_epochs(x, y, w, b, *, seed, member_id, epochs, batch_size, lr):
    """Plain numpy SGD on the Gaussian NLL with per-batch means, the data order drawn as deepens does."""
    n = len(x)
    w, b = w.astype(np.float64).copy(), b.astype(np.float64).copy()
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, member_id, epoch])
        order = rng.permutation(np.arange(n, dtype=np.int32)) if batch_size < n else np.arange(n)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            xb, yb = x[rows].astype(np.float64), y[rows].astype(np.float64)
            mu = xb @ w[:, 0] + b[0]
            s = np.log1p(np.exp(b[1])) + 1e-6
            resid = (mu - yb) / s**2
            dmu = resid / len(rows)
            ds = (1.0 / s - (mu - yb) ** 2 / s**3) / len(rows)
            dsigmoid = 1.0 / (1.0 + np.exp(-b[1]))
            w[:, 0] -= lr * xb.T @ dmu
            b[0] -= lr * dmu.sum()
            b[1] -= lr * (ds.sum() * dsigmoid)
    return w, b


@pytest.mark.parametrize("batch_size", [8, 37], ids=["minibatch-with-partial-last-batch", "full-batch"])
def test_minibatch_semantics_match_a_plain_sgd_reference(regression_data, batch_size):
    x, y = regression_data
    ensemble = deepens.fit(
        x,
        y,
        model=_linear_model(),
        members=2,
        epochs=3,
        batch_size=batch_size,
        optimizer=optax.sgd(0.05),
        seed=4,
        progress=False,
    )
    start = ensemble.model.init(jnp.asarray(train.member_keys(4, [1])[0]), jnp.asarray(x[:1]))[0]
    w, b = _reference_epochs(
        x,
        y,
        np.asarray(start["w"]),
        np.asarray(start["b"]),
        seed=4,
        member_id=1,
        epochs=3,
        batch_size=batch_size,
        lr=0.05,
    )
    trained = ensemble.select([1]).params
    np.testing.assert_allclose(np.asarray(trained["w"][0]), w, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(np.asarray(trained["b"][0]), b, rtol=2e-4, atol=2e-5)


def test_chunking_epochs_into_calls_does_not_change_the_result(regression_data):
    x, y = regression_data
    model = as_model(MLP((8,), 2))
    params, state = train.init_members(model, 0, [0, 1], x[:1])
    results = []
    for chunk in (1, 2, 4):
        program = train.Program(model, deepens.Gaussian(), "nll", train.make_optimizer(0.01), None, 8, chunk, True)
        trained, _, history, _ = train.train_members(
            program, params, state, x, y[:, None], epochs=4, seed=0, member_ids=[0, 1], scale=np.ones(3, np.float32)
        )
        results.append((trained, history))
    for trained, history in results[1:]:
        for u, v in zip(_leaves(trained), _leaves(results[0][0]), strict=True):
            np.testing.assert_array_equal(u, v)
        # The epoch's mean loss is summed inside a differently shaped program: equal to rounding.
        np.testing.assert_allclose(history, results[0][1], rtol=1e-6)


def test_independent_data_sets_side_by_side_equal_separate_fits(regression_data):
    x, y = regression_data
    x2, y2 = x[::-1] * 2.0, y[::-1] + 1.0
    model = as_model(MLP((8,), 2))
    program = train.Program(model, deepens.Gaussian(), "nll", train.make_optimizer(0.01), None, 8, 1, False)
    shared = dataclasses.replace(program, shared_data=True)
    params, state = train.init_members(model, 0, [0, 1], x[:1])
    stacked_x, stacked_y = np.stack([x, x2]), np.stack([y, y2])[..., None]
    both, *_ = train.train_members(
        program,
        params,
        state,
        stacked_x,
        stacked_y,
        epochs=2,
        seed=0,
        member_ids=[0, 1],
        scale=np.ones((2, 3), np.float32),
    )
    for m, (xm, ym) in enumerate(((x, y), (x2, y2))):
        single = jax.tree.map(lambda leaf: leaf[m : m + 1], (params, state))
        alone, *_ = train.train_members(
            shared, *single, xm, ym[:, None], epochs=2, seed=0, member_ids=[m], scale=np.ones(3, np.float32)
        )
        _assert_trees_close(jax.tree.map(lambda leaf: leaf[m : m + 1], both), alone, rtol=1e-5, atol=1e-6)


def test_fgsm_with_zero_eps_trains_like_plain_nll(regression_data):
    x, y = regression_data
    plain = deepens.fit(x, y, members=2, seed=1, **COMMON)
    zero = deepens.fit(x, y, members=2, seed=1, adversarial=deepens.FGSM(0.0), **COMMON)
    _assert_trees_close(plain.params, zero.params, rtol=1e-5, atol=1e-6)


def test_adversarial_training_changes_the_result(regression_data):
    x, y = regression_data
    plain = deepens.fit(x, y, members=1, seed=1, **COMMON)
    for adversarial in ("fgsm", "vat"):
        other = deepens.fit(x, y, members=1, seed=1, adversarial=adversarial, eps=0.1, **COMMON)
        assert not np.allclose(_leaves(plain.params)[0], _leaves(other.params)[0])
        assert np.all(np.isfinite(other.history))


def test_training_lowers_the_loss_and_fits_the_cubic(cubic_data, small_regression_ensemble):
    x, y = cubic_data
    history = small_regression_ensemble.history
    assert history.shape == (500, 3)
    assert np.all(history[-1] < history[0] - 1.0)
    prediction = small_regression_ensemble.predict(x)
    rmse = float(np.sqrt(np.mean((np.asarray(prediction.mean) - y) ** 2)))
    assert rmse < 0.15  # the noise standard deviation is 0.1
    # The Gaussian head learned the noise level it was never told.
    assert 0.06 < float(np.mean(np.asarray(prediction.std))) < 0.15


def test_classifier_learns_the_spirals(spiral_data, small_classifier):
    x, y = spiral_data
    prediction = small_classifier.predict(x)
    assert float(np.mean(np.asarray(prediction.label) == y)) > 0.8
    np.testing.assert_allclose(np.asarray(prediction.probs).sum(-1), 1.0, rtol=1e-5)


class _BatchNormNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(8)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(2)(nn.relu(x))


def test_flax_module_with_batch_norm_state(regression_data):
    x, y = regression_data
    ensemble = deepens.fit(x, y, model=_BatchNormNet(), members=2, seed=0, **COMMON)
    stats = ensemble.state["batch_stats"]["BatchNorm_0"]
    assert stats["mean"].shape == (2, 8)
    assert not np.allclose(np.asarray(stats["mean"]), 0.0)  # running statistics were updated in training
    # Evaluation uses the running statistics: one row alone gets the same prediction as in a batch.
    full = np.asarray(ensemble.predict(x).mean)
    alone = np.asarray(ensemble.predict(x[:1]).mean)
    np.testing.assert_allclose(alone, full[:1], rtol=1e-5, atol=1e-5)


def test_model_output_width_must_fit_the_head(regression_data):
    x, y = regression_data
    with pytest.raises(ValueError, match="needs 2"):
        deepens.fit(x, y, model=MLP((4,), 3), members=1, **COMMON)


def test_compiled_program_is_reused_across_fits(regression_data, monkeypatch):
    x, y = regression_data
    compiled = []
    original = program_module._compiled
    monkeypatch.setattr(program_module, "_compiled", lambda *args: compiled.append(1) or original(*args))
    deepens.fit(x, y, members=2, seed=21, **{**COMMON, "hidden": (7,)})
    assert len(compiled) == 1
    again = deepens.fit(x, y, members=2, seed=22, **{**COMMON, "hidden": (7,)})
    assert len(compiled) == 1  # another seed, same shapes: no new program
    deepens.fit(x, y, members=2, seed=22, **{**COMMON, "hidden": (7,), "learning_rate": 0.02})
    assert len(compiled) == 2  # another learning rate is another program
    assert again.timings is not None and again.timings.train_s > 0


# Loss histories (epoch x member) of fit(x, y, members=2, seed=5, adversarial=..., **COMMON) recorded with
# the program that held eps in its static key, before eps became an argument (two CPU devices, jax 0.10.2).
STATIC_EPS_HISTORY = {
    "fgsm": [
        [5.415213584899902, 6.353013515472412],
        [4.360904216766357, 4.801817893981934],
        [3.5273585319519043, 3.763424873352051],
        [3.164193630218506, 3.2880783081054688],
    ],
    "vat": [
        [5.232218265533447, 6.034886360168457],
        [4.239706993103027, 4.655491828918457],
        [3.4236745834350586, 3.686295747756958],
        [3.0745766162872314, 3.241048812866211],
    ],
}


def test_an_eps_sweep_compiles_once_and_matches_the_static_eps_program(regression_data, monkeypatch):
    x, y = regression_data
    compiled = []
    original = program_module._compiled
    monkeypatch.setattr(program_module, "_compiled", lambda *args: compiled.append(1) or original(*args))
    monkeypatch.setattr(program_module, "_EXECUTABLES", type(program_module._EXECUTABLES)())  # nothing cached
    for kind, adversarial in (("fgsm", deepens.FGSM), ("vat", deepens.VAT)):
        before = len(compiled)
        histories = {
            eps: deepens.fit(x, y, members=2, seed=5, adversarial=adversarial(eps), **COMMON).history
            for eps in (0.01, 0.02, 0.05)
        }
        assert len(compiled) == before + 1  # one program for the whole sweep
        np.testing.assert_allclose(histories[0.05], STATIC_EPS_HISTORY[kind], rtol=1e-5)
        assert not np.allclose(histories[0.01], histories[0.05])  # eps reaches the program
    assert len(compiled) == 2  # FGSM and VAT are different programs


def test_epochs_per_call_divides_the_epochs_and_the_checkpoint_period():
    for epochs in (1, 7, 40, 300, 600):
        chunk = train.epochs_per_call(epochs, steps_per_epoch=1)
        assert epochs % chunk == 0 and epochs // chunk >= min(epochs, 25)
        for every in (1, 5, 7, 50):
            chunk = train.epochs_per_call(epochs, steps_per_epoch=1, checkpoint_every=every)
            assert epochs % chunk == 0 and every % chunk == 0
    assert train.epochs_per_call(600, steps_per_epoch=1) == 24
    assert train.epochs_per_call(40, steps_per_epoch=400) == 1


def test_resuming_from_a_checkpoint_ends_where_an_uninterrupted_run_does(regression_data):
    x, y = regression_data
    settings = dict(COMMON, epochs=6, members=3, seed=9, adversarial="vat", eps=0.05, checkpoint_every=2)
    saved = []
    uninterrupted = deepens.fit(x, y, on_checkpoint=saved.append, **settings)
    assert [c.epoch for c in saved] == [2, 4, 6]
    assert saved[0].history.shape == (2, saved[0].params["Dense_0"]["kernel"].shape[0])
    resumed = deepens.fit(x, y, resume=saved[0], **settings)
    for u, v in zip(_leaves(uninterrupted.params), _leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(uninterrupted.history, resumed.history)


def test_resume_rejects_a_checkpoint_of_another_ensemble(regression_data):
    x, y = regression_data
    saved = []
    deepens.fit(x, y, members=2, devices=1, checkpoint_every=2, on_checkpoint=saved.append, **COMMON)
    with pytest.raises(ValueError, match="belongs to another run"):
        deepens.fit(x, y, members=3, devices=1, checkpoint_every=2, resume=saved[0], **COMMON)


def test_resume_refuses_a_checkpoint_of_other_data_or_settings(regression_data):
    x, y = regression_data
    settings = dict(COMMON, members=2, devices=1, epochs=4, checkpoint_every=2)
    saved = []
    deepens.fit(x, y, on_checkpoint=saved.append, **settings)
    assert saved[0].identity is not None and saved[0].identity == saved[1].identity
    deepens.fit(x, y, resume=saved[0], **settings)  # the same run resumes
    deepens.fit(x, y, resume=saved[0], **dict(settings, epochs=6))  # and may train for longer
    changed_rows = x.copy()
    changed_rows[0, 0] += 1.0
    for change in (
        dict(x=changed_rows),
        dict(y=y + 1.0),
        dict(x=x[:-1], y=y[:-1]),
        dict(learning_rate=0.5),
        dict(seed=123),
        dict(head="laplace"),
        dict(adversarial="fgsm"),
    ):
        args = {"x": x, "y": y, **settings, **change}
        with pytest.raises(ValueError, match="belongs to another run"):
            deepens.fit(args.pop("x"), args.pop("y"), resume=saved[0], **args)
    with pytest.raises(ValueError, match="carries no run identity"):
        deepens.fit(x, y, resume=dataclasses.replace(saved[0], identity=None), **settings)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_mlp_numpy_initialiser_matches_flax_init(batch_norm):
    module = MLP((5, 7), 3, batch_norm=batch_norm)
    x = np.ones((1, 4), np.float32)
    flax_params, flax_state = as_model(module).init(jax.random.PRNGKey(0), jnp.asarray(x))
    host_params, host_state = as_model(module).init_on_host(np.random.default_rng(0), x)
    assert jax.tree.structure(flax_params) == jax.tree.structure(host_params)
    assert jax.tree.structure(flax_state) == jax.tree.structure(host_state)
    for a, b in zip(
        jax.tree.leaves((flax_params, flax_state)), jax.tree.leaves((host_params, host_state)), strict=True
    ):
        assert a.shape == b.shape and a.dtype == b.dtype
    # PyTorch's nn.Linear initialisation: everything uniform within +-1/sqrt(fan_in).
    big = as_model(MLP((400,), 2)).init_on_host(np.random.default_rng(1), np.ones((1, 100), np.float32))[0]
    kernel = big["Dense_0"]["kernel"]
    assert np.abs(kernel).max() <= 0.1 and np.std(kernel) == pytest.approx(0.1 / np.sqrt(3), rel=0.02)
