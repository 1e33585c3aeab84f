"""Deep ensembles: one member per network, each network with its own permutation of the rows."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax import Array

from deepens.methods.base import Method, register_method
from deepens.models import Model


@functools.partial(jax.jit, static_argnames=("model",))
def _apply_networks(model: Model, params: Any, state: Any, x: Array) -> Array:
    """Every network in evaluation mode: params/state ``(G, ...)``, x ``(N, ...)`` -> ``(G, N, O)``."""
    return jax.vmap(lambda p, s: model.apply(p, s, x, False)[0])(params, state)


def permutation_order(
    seed: int, network_ids: Sequence[int], epochs: Sequence[int], n: int, steps: int, batch_size: int
) -> np.ndarray:
    """Row order ``(G, E, S, B)`` int32 for the given epochs: network ``i`` sees, in epoch ``e``, the
    permutation drawn by ``default_rng([seed, i, e])`` (so any epoch's order can be redrawn on resume),
    its last batch padded with the permutation's first rows (which carry weight 0)."""
    order = np.empty((len(network_ids), len(epochs), steps * batch_size), np.int32)
    rows = np.arange(n, dtype=np.int32)
    for m, member in enumerate(network_ids):
        for e, epoch in enumerate(epochs):
            perm = np.random.default_rng([seed, int(member), int(epoch)]).permutation(rows)
            order[m, e, :n] = perm
            order[m, e, n:] = perm[: steps * batch_size - n]
    return order.reshape(len(network_ids), len(epochs), steps, batch_size)


@register_method
@dataclasses.dataclass(frozen=True)
class DeepEnsemble(Method):
    """Lakshminarayanan et al. (2017): ``M`` independently initialised networks, one member each."""

    name = "ensemble"

    def draw_order(
        self, seed: int, network_ids: Sequence[int], epochs: Sequence[int], n: int, steps: int, batch_size: int
    ) -> np.ndarray:
        return permutation_order(seed, network_ids, epochs, n, steps, batch_size)

    def member_outputs(self, model: Model, params: Any, state: Any, x: Array) -> Array:
        return _apply_networks(model, params, state, x)
