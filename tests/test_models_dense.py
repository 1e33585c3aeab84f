"""The two formulations of the MLP's dense layer (matrix product, broadcast multiply-and-sum) agree to
float32 rounding, alone, under vmap over members and through a short fit; parameter names do not change."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepens
from deepens import models
from deepens.models import MLP


@pytest.mark.parametrize("shape", [(7, 1, 10), (5, 10, 6), (3, 30, 2), (4, 9, 100)])
def test_broadcast_and_matrix_product_agree(shape):
    batch, fan_in, width = shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(6, batch, fan_in)), jnp.float32)  # 6 members
    kernel = jnp.asarray(rng.normal(size=(6, fan_in, width)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(6, width)), jnp.float32)
    exact = np.einsum("mbi,miw->mbw", np.float64(x), np.float64(kernel)) + np.float64(bias)[:, None]
    for broadcast in (False, True):
        got = jax.jit(jax.vmap(lambda a, k, b: models.dense(a, k, b, broadcast)))(x, kernel, bias)
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5 * np.sqrt(fan_in))


def test_the_choice_follows_the_static_shape():
    small = jnp.ones((2, 3))
    big = jnp.ones((200, 200))
    assert "dot_general" not in str(jax.make_jaxpr(models.dense)(jnp.ones((4, 2)), small, jnp.ones(3)))
    assert "dot_general" in str(jax.make_jaxpr(models.dense)(jnp.ones((4, 200)), big, jnp.ones(200)))


def test_parameter_names_and_shapes_are_flax_dense_ones():
    variables = MLP((10, 6), 2).init(jax.random.key(0), jnp.ones((3, 1)))
    shapes = jax.tree.map(jnp.shape, variables)["params"]
    assert shapes == {"Dense_0": {"kernel": (1, 10), "bias": (10,)}, "Dense_1": {"kernel": (10, 6), "bias": (6,)},
                      "Dense_2": {"kernel": (6, 2), "bias": (2,)}}


def test_a_short_fit_is_the_same_either_way(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=32)).astype(np.float32)
    results = []
    for limit in (0, 10**9):
        monkeypatch.setattr(models, "BROADCAST_MAX_WEIGHTS", limit)
        jax.clear_caches()  # the traced program depends on the limit: trace it again
        deepens.train._EXECUTABLES.clear()
        ensemble = deepens.fit(x, y, model=MLP((8,), 2), members=2, epochs=5, batch_size=8, seed=0)
        results.append(np.asarray(ensemble.predict(x).mean))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-5)
