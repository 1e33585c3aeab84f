"""Networks as pairs of pure functions, and the built-in MLP.

deepens trains anything that can be written as

    init(key, x) -> (params, state)
    apply(params, state, x, train) -> (outputs, new_state)

where ``params`` are trained and ``state`` is carried along (batch-norm statistics; an empty dict for
most models). Use :func:`as_model` to get this from a Flax ``linen`` module or from a plain
``(init(key, x) -> params, apply(params, x) -> outputs)`` pair.

Models are hashable (a Flax module by value, a pair by its functions' identity), so the compiled
training program for one model, head and data shape is built once and reused.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

Params = Any
State = Any

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "sigmoid": jax.nn.sigmoid,
}


class Model:
    """Interface of a trainable network (see the module docstring)."""

    def init(self, key: Array, x: Array) -> tuple[Params, State]:
        raise NotImplementedError

    def init_on_host(self, rng: np.random.Generator, x: np.ndarray) -> tuple[Params, State] | None:
        """Optionally, the same kind of initialisation drawn with numpy, which needs no compilation (a
        compiled random initialiser costs seconds of XLA time on a CPU). None when not available."""
        return None

    def apply(self, params: Params, state: State, x: Array, train: bool) -> tuple[Array, State]:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class FlaxModel(Model):
    """A Flax ``linen`` module. Collections other than ``params`` (e.g. ``batch_stats``) are state, updated
    in training mode; the module's ``__call__`` receives ``train=`` when it has such a parameter."""

    module: nn.Module

    @property
    def _takes_train(self) -> bool:
        return "train" in inspect.signature(type(self.module).__call__).parameters

    def _kwargs(self, train: bool) -> dict[str, Any]:  # keyword arguments for the module's __call__
        return {"train": train} if self._takes_train else {}

    def init(self, key: Array, x: Array) -> tuple[Params, State]:
        variables = dict(self.module.init(key, x, **self._kwargs(False)))
        params = variables.pop("params", {})
        return params, variables

    def init_on_host(self, rng: np.random.Generator, x: np.ndarray) -> tuple[Params, State] | None:
        host_init = getattr(self.module, "host_init", None)
        if host_init is None:
            return None
        variables = dict(host_init(rng, x))
        params = variables.pop("params", {})
        return params, variables

    def apply(self, params: Params, state: State, x: Array, train: bool) -> tuple[Array, State]:
        variables = {"params": params, **state}
        if train and state:
            outputs, updated = self.module.apply(variables, x, mutable=list(state), **self._kwargs(train))
            return outputs, {**state, **updated}
        # not mutable: apply returns the outputs alone, not an (outputs, variables) pair
        return cast(Array, self.module.apply(variables, x, **self._kwargs(train))), state


@dataclasses.dataclass(frozen=True)
class FunctionalModel(Model):
    """A stateless ``init(key, x) -> params``, ``apply(params, x) -> outputs`` pair."""

    init_fn: Callable[[Array, Array], Params]
    apply_fn: Callable[[Params, Array], Array]

    def init(self, key: Array, x: Array) -> tuple[Params, State]:
        return self.init_fn(key, x), {}

    def apply(self, params: Params, state: State, x: Array, train: bool) -> tuple[Array, State]:
        return self.apply_fn(params, x), state


def as_model(model: Model | nn.Module | tuple[Callable, Callable]) -> Model:
    """A :class:`Model` from a Model, a Flax linen module, or an ``(init, apply)`` pair."""
    if isinstance(model, Model):
        return model
    if isinstance(model, nn.Module):
        return FlaxModel(model)
    if isinstance(model, tuple) and len(model) == 2 and all(callable(f) for f in model):
        return FunctionalModel(*model)
    raise ValueError(
        "model must be a flax.linen.Module, a deepens Model, or an (init, apply) pair of functions; "
        f"got {type(model).__name__}"
    )


def _uniform_fan_in(fan_in: int) -> Callable:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for a linear layer's bias."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))

    def init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class MLP(nn.Module):
    """A multi-layer perceptron ``(..., D) -> (..., outputs)``.

    Weights and biases start as in PyTorch's ``nn.Linear`` (uniform in +-1/sqrt(fan_in)), the
    initialisation of the paper's and the practical's code; random biases spread the ReLU kinks, so
    members differ from the first step.

    Attributes:
      hidden: widths of the hidden layers, e.g. ``(50,)`` or ``(200, 200, 200)``.
      outputs: width of the output layer (see the head's ``num_outputs``).
      activation: one of ``ACTIVATIONS``.
      batch_norm: batch normalisation after each hidden linear layer (before the activation).
    """

    hidden: tuple[int, ...]
    outputs: int
    activation: str = "relu"
    batch_norm: bool = False

    def __post_init__(self) -> None:
        # Checked here, when the module is made, so a bad width fails before anything is initialised.
        widths = self.hidden if isinstance(self.hidden, (tuple, list)) else None
        if widths is None or not all(_is_width(w) for w in widths):
            raise ValueError(
                f"hidden must be a sequence of layer widths, integers >= 1 (e.g. (50,)), got {self.hidden!r}"
            )
        if not _is_width(self.outputs):
            raise ValueError(f"outputs must be an integer >= 1, got {self.outputs!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        check_input_rank(x.shape)
        for width in self.hidden:
            x = _dense(width, x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = ACTIVATIONS[self.activation](x)
        return _dense(self.outputs, x)

    def host_init(self, rng: np.random.Generator, x: np.ndarray) -> dict[str, Any]:
        """The variables ``init`` would make (same structure and distributions), drawn with numpy."""
        check_input_rank(np.shape(x))
        params: dict[str, Any] = {}
        stats: dict[str, Any] = {}
        fan_in = int(np.shape(x)[-1])
        for i, width in enumerate((*self.hidden, self.outputs)):
            bound = 1.0 / math.sqrt(max(fan_in, 1))
            params[f"Dense_{i}"] = {
                "kernel": rng.uniform(-bound, bound, (fan_in, width)).astype(np.float32),
                "bias": rng.uniform(-bound, bound, (width,)).astype(np.float32),
            }
            if self.batch_norm and i < len(self.hidden):
                params[f"BatchNorm_{i}"] = {"scale": np.ones(width, np.float32), "bias": np.zeros(width, np.float32)}
                stats[f"BatchNorm_{i}"] = {"mean": np.zeros(width, np.float32), "var": np.ones(width, np.float32)}
            fan_in = width
        return {"params": params, "batch_stats": stats} if stats else {"params": params}


def _is_width(w: Any) -> bool:
    return bool(isinstance(w, (int, np.integer)) and not isinstance(w, (bool, np.bool_)) and w >= 1)


def check_input_rank(shape: Sequence[int]) -> None:
    """ValueError unless ``shape`` is ``(examples, features)``: the MLP's layers act on the last axis, so
    an image batch ``(N, H, W)`` must be flattened first rather than silently treated as N x H rows."""
    if len(shape) != 2:
        raise ValueError(
            f"the built-in MLP takes 2-D x (examples, features), got a {len(shape)}-D x whose examples have "
            f"shape {tuple(shape[1:])}; flatten each example first (x.reshape(len(x), -1)) or pass a model that "
            "takes this shape"
        )


def check_input(model: Model, shape: Sequence[int]) -> None:
    """For the built-in MLP, :func:`check_input_rank` on the data's ``shape`` ``(N, ...)``, so a wrong
    rank fails before anything is initialised or compiled; other models check their own inputs."""
    if isinstance(model, FlaxModel) and isinstance(model.module, MLP):
        check_input_rank(shape)


def _dense(width: int, x: Array) -> Array:
    """A linear layer initialised as PyTorch's ``nn.Linear`` (kaiming-uniform weights, uniform bias)."""
    layer = nn.Dense(
        width,
        kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_init=_uniform_fan_in(x.shape[-1]),
    )
    return layer(x)
