"""BatchEnsemble (Wen et al., ICLR 2020): members share each layer's weight matrix ``W`` and differ by
rank-1 "fast weights": member ``m``'s weight is ``W * outer(r_m, s_m)``, computed without forming it as
``((x * r_m) @ W) * s_m``, plus its own bias. The members sit on the slot axis of one network: in training
every slot of a batch holds the same row (one permutation per epoch, as a deep-ensemble member's), so the
members see the same data and differ by their fast weights and their initialisation; the loss is the mean
over members. Fast weights start as random signs (+-1), as in the paper.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from deepens.methods.base import compiler_options, register_method
from deepens.methods.ensemble import permutation_order
from deepens.methods.mimo import SlottedMethod, widenable_mlp
from deepens.models import ACTIVATIONS, FlaxModel, Model


def _random_signs(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
    return jax.random.rademacher(key, shape, dtype)


def _uniform(bound: float):
    def init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class BatchEnsembleDense(nn.Module):
    """``(B, k, in) -> (B, k, width)``: shared ``kernel`` ``(in, width)``, fast weights ``r`` ``(k, in)``,
    ``s`` ``(k, width)``, per-member ``bias`` ``(k, width)``."""

    width: int
    members: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        fan_in = x.shape[-1]
        bound = 1.0 / math.sqrt(max(fan_in, 1))
        kernel = self.param("kernel", _uniform(bound), (fan_in, self.width))
        r = self.param("r", _random_signs, (self.members, fan_in))
        s = self.param("s", _random_signs, (self.members, self.width))
        bias = self.param("bias", _uniform(bound), (self.members, self.width))
        return ((x * r) @ kernel) * s + bias


class BatchEnsembleMLP(nn.Module):
    """The built-in MLP's architecture as a BatchEnsemble: ``(B, k, D) -> (B, k, outputs)``.

    Shared kernels start as PyTorch's ``nn.Linear`` (uniform in +-1/sqrt(fan_in)), like
    :class:`deepens.models.MLP`; each member's bias is drawn from the same distribution.
    """

    hidden: tuple[int, ...]
    outputs: int
    members: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")
        for width in self.hidden:
            x = ACTIVATIONS[self.activation](BatchEnsembleDense(width, self.members)(x))
        return BatchEnsembleDense(self.outputs, self.members)(x)

    def host_init(self, rng: np.random.Generator, x: np.ndarray) -> dict[str, Any]:
        """The variables ``init`` would make (same structure and distributions), drawn with numpy."""
        params: dict[str, Any] = {}
        fan_in = int(np.shape(x)[-1])
        k = self.members
        for i, width in enumerate((*self.hidden, self.outputs)):
            bound = 1.0 / math.sqrt(max(fan_in, 1))
            params[f"BatchEnsembleDense_{i}"] = {
                "kernel": rng.uniform(-bound, bound, (fan_in, width)).astype(np.float32),
                "r": rng.choice(np.array([-1.0, 1.0], np.float32), (k, fan_in)),
                "s": rng.choice(np.array([-1.0, 1.0], np.float32), (k, width)),
                "bias": rng.uniform(-bound, bound, (k, width)).astype(np.float32),
            }
            fan_in = width
        return {"params": params}


@register_method
@dataclasses.dataclass(frozen=True)
class BatchEnsemble(SlottedMethod):
    """BatchEnsemble with ``members`` members per network (``k >= 1``)."""

    name = "batchensemble"

    def build(self, model: Model, *, input_shape: tuple[int, ...], outputs: int) -> Model:
        mlp = widenable_mlp(self.name, model, input_shape, outputs)
        if mlp.batch_norm:
            raise ValueError("batchensemble: the MLP's batch_norm is not supported")
        return FlaxModel(BatchEnsembleMLP(tuple(mlp.hidden), outputs, int(self.members), mlp.activation))

    def draw_order(
        self, seed: int, network_ids: Sequence[int], epochs: Sequence[int], n: int, steps: int, batch_size: int
    ) -> np.ndarray:
        """Row indices ``(G, E, S, B, k)``: network ``g``'s deep-ensemble permutation in every slot."""
        order = permutation_order(seed, network_ids, epochs, n, steps, batch_size)
        return np.repeat(order[..., None], int(self.members), axis=-1)

    def compiler_options(self) -> dict[str, Any]:
        """No YNNPACK fusions on a CPU (see :data:`deepens.methods.base.CPU_COMPILER_OPTIONS`)."""
        return compiler_options()

    def take(self, data: Array, index: Array) -> Array:
        """Every slot holds the same row: gather ``B`` rows once and broadcast them over the ``k`` slots
        (``(B, k, ...)``, equal to ``data[index]``) rather than gathering ``B * k`` rows."""
        rows = data[index[:, :1]]  # (B, 1, ...)
        return jnp.broadcast_to(rows, (*index.shape, *data.shape[1:]))

    def reduce_slots(self, per_example: Array) -> Array:
        """The mean of the members' losses, ``(B, k) -> (B,)``."""
        return jnp.mean(per_example, axis=-1)
