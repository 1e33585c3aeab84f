"""MIMO (Havasi et al., ICLR 2021, "Training independent subnetworks for robust prediction").

One network holds ``k`` members: its input layer takes ``k`` examples concatenated (width ``k * D``), its
output layer gives ``k`` heads (width ``k * O``), and the hidden layers are shared. In training, slot ``j``
of a batch is filled from subnetwork ``j``'s own permutation of the rows, so each subnetwork learns to read
its own input and ignore the others; the loss is the sum of the subnetworks' losses. At prediction the
same input fills every slot and the ``k`` outputs are the ``k`` members of the usual uniform mixture.

Batch construction (:meth:`MIMO.draw_order`), for network ``g`` and epoch ``e``, all from
``rng = default_rng([seed, g, e])``:

1. ``k`` permutations of the rows, drawn in order from ``rng`` (so with ``k = 1``, ``rho = 0``, ``b = 1``
   the order is exactly a deep-ensemble member's), each padded like the deep ensemble's to fill the last
   batch with its first rows (weight 0).
2. Batch repetition ``b``: each padded permutation is repeated element-wise ``b`` times
   (``np.repeat``), so the epoch's stream has ``n * b`` real positions; the trainer must lay out
   ``steps * batch_size >= n * b`` positions with weight 1 on the first ``n * b``. When ``batch_size`` is a
   multiple of ``b`` all copies of a row fall in one batch. Then, for ``b > 1`` only, the real positions of
   each batch are shuffled in every slot independently (padding stays in place, so the position mask still
   holds); this pairs the ``b`` copies of a row with different partners in the other slots, as the
   reference code's per-member shuffle of the repeated batch does.
3. Input repetition ``rho``: in each batch the first ``round(rho * batch_size)`` positions copy slot 0 into
   every slot (all subnetworks see the same example there); ``rho = 1`` makes all slots identical.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from deepens.methods.base import Method, jit_for_backend, register_method
from deepens.models import MLP, FlaxModel, Model


def _check_members(name: str, members: Any) -> None:
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
        raise ValueError(f"{name}: members must be an integer >= 1, got {members!r}")


def widenable_mlp(name: str, model: Model, input_shape: tuple[int, ...], outputs: int) -> MLP:
    """The built-in MLP inside ``model``, or a ValueError saying why ``name`` cannot be applied to it."""
    module = getattr(model, "module", None)
    if not isinstance(model, FlaxModel) or not isinstance(module, MLP):
        raise ValueError(f"{name} needs the built-in MLP (deepens.models.MLP); a custom model cannot be widened")
    if len(input_shape) != 1:
        raise ValueError(f"{name} needs flat inputs (D,), got input shape {input_shape}")
    if module.outputs != outputs:
        raise ValueError(f"{name}: the model has {module.outputs} outputs but the head needs {outputs}")
    return module


@dataclasses.dataclass(frozen=True)
class MIMONetwork(Model):
    """The widened MLP: ``(B, k, D) -> (B, k, O)`` through ``trunk`` ``(B, k * D) -> (B, k * O)``.

    Attributes:
      trunk: the MLP with input width ``k * D`` and ``k * O`` outputs (its parameters are the network's).
      members: ``k``.
    """

    trunk: MLP
    members: int

    def _flat(self, x: Any) -> Any:
        return x.reshape(x.shape[0], -1)

    def init(self, key: Array, x: Array) -> tuple[Any, Any]:
        return FlaxModel(self.trunk).init(key, self._flat(x))

    def init_on_host(self, rng: np.random.Generator, x: np.ndarray) -> tuple[Any, Any] | None:
        return FlaxModel(self.trunk).init_on_host(rng, self._flat(np.asarray(x)))

    def apply(self, params: Any, state: Any, x: Array, train: bool) -> tuple[Array, Any]:
        outputs, state = FlaxModel(self.trunk).apply(params, state, self._flat(x), train)
        return outputs.reshape(x.shape[0], self.members, -1), state


def _slotted_member_outputs(model: Model, k: int, params: Any, state: Any, x: Array) -> Array:
    """Tile ``x`` ``(N, D)`` into every slot, apply each network: ``(G * k, N, O)``, network-major."""
    tiled = jnp.repeat(x[:, None], k, axis=1)
    outputs = jax.vmap(lambda p, s: model.apply(p, s, tiled, False)[0])(params, state)  # (G, N, k, O)
    g, n = outputs.shape[:2]
    return jnp.swapaxes(outputs, 1, 2).reshape(g * k, n, outputs.shape[-1])


slotted_member_outputs = jit_for_backend(_slotted_member_outputs, static_argnames=("model", "k"))


@functools.lru_cache(maxsize=64)  # traced shapes only, but tracing costs milliseconds per prediction
def _folded_leaf(network: MIMONetwork, input_width: int) -> tuple[Any, tuple[int, ...]] | None:
    """Where the widened input layer sits in the network's parameters: ``(treedef, index of the leaf)``
    found by comparing the widened trunk's parameter shapes with those of the same trunk on width ``D``
    (exactly one leaf, ``(k * D, H)`` against ``(D, H)``), or None when the trees do not differ that way."""
    x = jax.ShapeDtypeStruct((1, network.members * input_width), jnp.float32)
    narrow_x = jax.ShapeDtypeStruct((1, input_width), jnp.float32)
    key = jax.random.PRNGKey(0)
    wide = jax.eval_shape(lambda: FlaxModel(network.trunk).init(key, jnp.zeros(x.shape, x.dtype))[0])
    narrow = jax.eval_shape(lambda: FlaxModel(network.trunk).init(key, jnp.zeros(narrow_x.shape, x.dtype))[0])
    wide_leaves, tree = jax.tree.flatten(wide)
    narrow_leaves, narrow_tree = jax.tree.flatten(narrow)
    if tree != narrow_tree:
        return None
    differ = [i for i, (a, b) in enumerate(zip(wide_leaves, narrow_leaves)) if a.shape != b.shape]
    if len(differ) != 1:
        return None
    wide_shape, narrow_shape = wide_leaves[differ[0]].shape, narrow_leaves[differ[0]].shape
    if len(wide_shape) != 2 or wide_shape != (network.members * narrow_shape[0], narrow_shape[1]):
        return None
    return tree, (differ[0],)


def _folded_member_outputs(
    network: MIMONetwork, where: tuple[Any, tuple[int, ...]], params: Any, state: Any, x: Array
) -> Array:
    """MIMO's members on ``x`` ``(N, D)``, as :func:`slotted_member_outputs` but without tiling: with the
    same row in every slot the input layer ``[x, ..., x] @ [W_1; ...; W_k]`` equals ``x @ (W_1 + ... +
    W_k)``, so the widened kernel is summed over its ``k`` blocks and the trunk reads ``x`` once (one
    network's cost for that layer; equal to the tiled product up to float32 rounding)."""
    _, (index,) = where
    k = network.members
    leaves, tree = jax.tree.flatten(params)
    kernel = leaves[index]  # (G, k * D, H)
    leaves[index] = kernel.reshape(kernel.shape[0], k, -1, kernel.shape[-1]).sum(axis=1)
    folded = jax.tree.unflatten(tree, leaves)
    trunk = FlaxModel(network.trunk)
    outputs = jax.vmap(lambda p, s: trunk.apply(p, s, x, False)[0])(folded, state)  # (G, N, k * O)
    g, n = outputs.shape[:2]
    return jnp.swapaxes(outputs.reshape(g, n, k, -1), 1, 2).reshape(g * k, n, -1)


folded_member_outputs = jit_for_backend(_folded_member_outputs, static_argnames=("network", "where"))


@dataclasses.dataclass(frozen=True)
class SlottedMethod(Method):
    """What MIMO and BatchEnsemble share: ``members`` (``k >= 1``) members in one network, a slot axis of
    length ``k`` in every batch, and prediction with the input tiled into every slot."""

    members: int = 1

    def __post_init__(self) -> None:
        _check_members(self.name, self.members)

    @property
    def members_per_network(self) -> int:
        return int(self.members)

    @property
    def slots(self) -> int | None:
        return int(self.members)

    def member_outputs(self, model: Model, params: Any, state: Any, x: Array) -> Array:
        return slotted_member_outputs(model, int(self.members), params, state, x)


@register_method
@dataclasses.dataclass(frozen=True)
class MIMO(SlottedMethod):
    """MIMO with ``members`` subnetworks per network.

    Attributes:
      members: ``k >= 1`` subnetworks (input and output heads) in one network.
      input_repetition: ``rho`` in [0, 1], the fraction of each batch where every slot holds slot 0's row.
      batch_repetition: ``b >= 1``, copies of each row in an epoch's stream (see the module docstring).
    """

    name = "mimo"
    input_repetition: float = 0.0
    batch_repetition: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        rho = self.input_repetition
        if isinstance(rho, bool) or not isinstance(rho, (int, float, np.number)) or not 0.0 <= float(rho) <= 1.0:
            raise ValueError(f"mimo: input_repetition must be a number in [0, 1], got {rho!r}")
        b = self.batch_repetition
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"mimo: batch_repetition must be an integer >= 1, got {b!r}")

    def build(self, model: Model, *, input_shape: tuple[int, ...], outputs: int) -> Model:
        mlp = widenable_mlp(self.name, model, input_shape, outputs)
        return MIMONetwork(dataclasses.replace(mlp, outputs=self.members * outputs, parent=None), int(self.members))

    def draw_order(
        self, seed: int, network_ids: Sequence[int], epochs: Sequence[int], n: int, steps: int, batch_size: int
    ) -> np.ndarray:
        """Row indices ``(G, E, S, B, k)`` int32 (construction in the module docstring)."""
        k, b = int(self.members), int(self.batch_repetition)
        total = steps * batch_size
        if total < n * b:
            raise ValueError(f"mimo: {steps} steps of {batch_size} rows cannot hold {n} rows repeated {b} times")
        shared = int(round(float(self.input_repetition) * batch_size))
        real = n * b
        order = np.empty((len(network_ids), len(epochs), steps, batch_size, k), np.int32)
        rows = np.arange(n, dtype=np.int32)
        for g, network in enumerate(network_ids):
            for e, epoch in enumerate(epochs):
                rng = np.random.default_rng([seed, int(network), int(epoch)])
                perms = [rng.permutation(rows) for _ in range(k)]
                slots = np.empty((total, k), np.int32)
                for j, perm in enumerate(perms):
                    stream = np.repeat(perm, b)
                    slots[:real, j] = stream
                    slots[real:, j] = np.resize(perm, total - real)
                if b > 1:
                    for start in range(0, real, batch_size):
                        stop = min(start + batch_size, real)
                        for j in range(k):
                            slots[start:stop, j] = rng.permutation(slots[start:stop, j])
                batches = slots.reshape(steps, batch_size, k)
                batches[:, :shared, :] = batches[:, :shared, :1]
                order[g, e] = batches
        return order

    def member_outputs(self, model: Model, params: Any, state: Any, x: Array) -> Array:
        where = _folded_leaf(model, x.shape[-1]) if isinstance(model, MIMONetwork) and x.ndim == 2 else None
        if where is None:
            return super().member_outputs(model, params, state, x)
        return folded_member_outputs(model, where, params, state, x)

    def reduce_slots(self, per_example: Array) -> Array:
        """The sum of the subnetworks' losses, ``(B, k) -> (B,)``."""
        return jnp.sum(per_example, axis=-1)
