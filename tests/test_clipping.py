import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deepens
from deepens import train
from deepens.heads import get_head


def _nll_grad(head, x, y):
    # A one-weight model whose outputs are [loc, rho]: loc = w x, rho = -40 (a scale that has collapsed).
    def loss(w):
        outputs = jnp.stack([w[0] * x, jnp.full_like(x, -40.0)], axis=-1)
        return jnp.mean(head.nll(outputs, y[:, None]))

    return loss, jax.grad(loss)


def test_an_unclipped_step_overflows_and_a_clipped_one_does_not():
    # Gaussian NLL with a tiny std (softplus(-40) + 1e-6 ~ 1e-6): d nll / d loc ~ (y - loc) / sigma^2,
    # about 1e14 here, so each SGD step multiplies the error by ~1e10 and float32 overflows by step 3.
    head = get_head("gaussian")
    x = jnp.linspace(1.0, 2.0, 8, dtype=jnp.float32)
    y = 100.0 * x
    loss, grad = _nll_grad(head, x, y)
    w0 = jnp.array([0.0], jnp.float32)
    assert np.isfinite(loss(w0))

    def run(optimizer, steps=3):
        w, state = w0, optimizer.init(w0)
        for _ in range(steps):
            updates, state = optimizer.update(grad(w), state, w)
            w = optax.apply_updates(w, updates)
        return w

    plain = run(optax.sgd(1e-2))
    clipped = run(optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1e-2)))
    assert not np.all(np.isfinite(np.asarray(plain))) or not np.isfinite(loss(plain))
    assert np.all(np.isfinite(np.asarray(clipped))) and np.isfinite(loss(clipped))
    assert float(jnp.linalg.norm(clipped - w0)) <= 3 * 1e-2 * (1 + 1e-6)  # each step moves at most lr * c


def test_make_optimizer_clips_before_adam_and_is_unchanged_without_clipping():
    rng = np.random.default_rng(0)
    params = {"a": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 50, jnp.float32), params) for _ in range(3)]

    def updates(optimizer, gs):
        state, out = optimizer.init(params), []
        for g in gs:
            u, state = optimizer.update(g, state, params)
            out.append(u)
        return out

    # clip_norm=None: bit for bit the Adam the library used before.
    for got, want in zip(updates(train.make_optimizer(0.1), grads), updates(optax.adam(0.1), grads)):
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), got, want)
    # clip_norm=c: Adam on each gradient rescaled to global norm c (the norms here are ~300 > c).
    c = 0.5
    rescaled = [jax.tree.map(lambda leaf, g=g: leaf * (c / optax.tree.norm(g)), g) for g in grads]
    for got, want in zip(updates(train.make_optimizer(0.1, 0.0, c), grads), updates(optax.adam(0.1), rescaled)):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7), got, want
        )


def test_auto_clip_norm_depends_on_the_head():
    assert train.resolve_clip_norm("auto", get_head("gaussian")) == 1.0
    assert train.resolve_clip_norm("auto", get_head("laplace")) == 1.0
    assert train.resolve_clip_norm("auto", get_head("point")) is None
    assert train.resolve_clip_norm("auto", get_head("categorical")) is None
    assert train.resolve_clip_norm(None, get_head("gaussian")) is None
    assert train.resolve_clip_norm(2, get_head("categorical")) == 2.0
    for bad in ("always", 0.0, -1.0, float("inf"), [1.0]):
        with pytest.raises(ValueError, match="clip_norm"):
            train.resolve_clip_norm(bad, get_head("gaussian"))


def test_fit_default_clips_gaussian_heads_and_none_reproduces_the_unclipped_fit():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(32, 1)).astype(np.float32)
    y = (3 * x[:, 0] + 0.1 * rng.normal(size=32)).astype(np.float32)
    kw = dict(members=2, epochs=5, hidden=(8,), learning_rate=0.05, progress=False)
    auto = deepens.fit(x, y, **kw)
    explicit = deepens.fit(x, y, clip_norm=1.0, **kw)
    off = deepens.fit(x, y, clip_norm=None, **kw)
    reference = deepens.fit(x, y, optimizer=optax.adam(0.05), **kw)  # the unclipped Adam
    same = lambda a, b: all(jax.tree.leaves(jax.tree.map(lambda p, q: bool(np.array_equal(p, q)), a.params, b.params)))  # noqa: E731
    assert same(auto, explicit)
    assert same(off, reference)
    assert not same(auto, off)


def test_estimators_and_cli_pass_clip_norm_through():
    import argparse

    from deepens.cli.common import _clip_norm
    from deepens.sklearn import DeepEnsembleRegressor

    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(40, 2))
    y = x[:, 0] - 2 * x[:, 1] + 0.1 * rng.normal(size=40)
    kw = dict(members=2, hidden_layer_sizes=(8,), epochs=3, batch_size=None, learning_rate=0.05, random_state=0)
    preds = {c: DeepEnsembleRegressor(clip_norm=c, **kw).fit(x, y).predict(x) for c in ("auto", 1.0, None)}
    np.testing.assert_array_equal(preds["auto"], preds[1.0])
    assert not np.array_equal(preds["auto"], preds[None])
    with pytest.raises(ValueError, match="clip_norm"):
        DeepEnsembleRegressor(clip_norm="sometimes", **kw).fit(x, y)
    assert _clip_norm("none") is None and _clip_norm("auto") == "auto" and _clip_norm("0.5") == 0.5
    for bad in ("0", "-1", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            _clip_norm(bad)
