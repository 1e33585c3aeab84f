"""The seam between the trainer and the ways of fitting M members.

The trainer trains ``G`` *networks* side by side (``vmap`` over a leading axis, ``lax.scan`` over epochs
and steps); a method says how those networks hold the ensemble's ``M`` members and how a batch is built:

- a deep ensemble (:class:`DeepEnsemble`): one member per network, ``G = M``; each network sees its own
  permutation of the rows; batches are ``x[index]`` with ``index`` ``(B,)``.
- an ensemble inside one network (MIMO, BatchEnsemble): ``k`` members per network, ``G = M / k`` (usually
  1). A batch has a *slot* axis of length ``k``: ``index`` is ``(B, k)``, the network receives
  ``x[index]`` of shape ``(B, k, D)`` and returns ``(B, k, O)``, one output per member, and the per-example
  loss is reduced over the slot axis (:meth:`Method.reduce_slots`). MIMO fills the slots from ``k``
  independent permutations; BatchEnsemble fills every slot with the same row.

Whatever the layout, :meth:`Method.member_outputs` gives the members' raw outputs ``(M, N, O)`` in
evaluation mode, and from there prediction, the mixture, the uncertainty decomposition and every metric
are the same code for every method.

A new method is a new module that subclasses :class:`Method` and calls :func:`register_method`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import numpy as np
from jax import Array

from deepens.models import Model

LossFn = Callable[[Array, Array], Array]

# XLA:CPU options for BatchEnsemble's training program and the slotted prediction programs: no YNNPACK
# library fusions (the empty list). This jaxlib sends reductions and elementwise ops to YNNPACK by default, which runs a
# batch-axis reduction such as BatchEnsemble's fast-weight gradients (sum over B of a (B, k, W) product)
# several times slower than XLA's own loops: profiled on w2, two such fusions took 0.45 ms of
# BatchEnsemble's 1.1 ms step, and its training took 3x less CPU time without them. Dots are not YNNPACK
# fusions by default and are unaffected.
CPU_COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def _cpu_options_known() -> bool:
    # Older (and perhaps later) jaxlibs have no YNNPACK and refuse an option they do not know ("No such
    # compile option"); there the defaults already are XLA's own loops, so nothing is lost without it.
    try:
        jax.jit(lambda v: v + 1, compiler_options=CPU_COMPILER_OPTIONS)(np.zeros(1, np.float32))
    except Exception:  # the error's type differs between jaxlib versions
        return False
    return True


def compiler_options() -> dict[str, Any]:
    """XLA options for compiling a program on the default backend (:data:`CPU_COMPILER_OPTIONS` on a CPU
    whose jaxlib knows them, else none)."""
    return CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" and _cpu_options_known() else {}


def jit_for_backend(fun: Callable, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fun, **jit_kwargs)`` compiled with :func:`compiler_options` of the backend at call time."""
    plain = jax.jit(fun, **jit_kwargs)
    cpu = jax.jit(fun, compiler_options=CPU_COMPILER_OPTIONS, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args: Any, **kwargs: Any) -> Any:
        return (cpu if compiler_options() else plain)(*args, **kwargs)

    return call


@dataclasses.dataclass(frozen=True)
class Method:
    """Base class: small frozen dataclasses, hashable, so a compiled program is shared by equal methods.

    Attributes:
      members_per_network: ``k``, members held by one network (1 for a deep ensemble).
    """

    name: ClassVar[str] = ""

    @property
    def members_per_network(self) -> int:
        return 1

    @property
    def slots(self) -> int | None:
        """Length of the batch's slot axis, or None when a batch has none (``index`` is ``(B,)``)."""
        return None

    def networks(self, members: int) -> int:
        """Networks to train for ``members`` members; a ValueError when ``members`` does not fit."""
        k = self.members_per_network
        if members % k:
            raise ValueError(f"{self.name}: {members} members cannot be split into networks of {k}")
        return members // k

    def build(self, model: Model, *, input_shape: tuple[int, ...], outputs: int) -> Model:
        """The network to train, from the one-member ``model`` (whose output width is ``outputs``).

        A ValueError when the method cannot be applied to that model (e.g. a custom model MIMO cannot widen).
        """
        return model

    def draw_order(
        self, seed: int, network_ids: Sequence[int], epochs: Sequence[int], n: int, steps: int, batch_size: int
    ) -> np.ndarray:
        """Row indices ``(G, E, S, B)`` (or ``(G, E, S, B, slots)``) int32, drawn on the host."""
        raise NotImplementedError

    def compiler_options(self) -> dict[str, Any]:
        """XLA options for compiling this method's training program (none by default)."""
        return {}

    def take(self, data: Array, index: Array) -> Array:
        """One batch of ``data`` ``(N, ...)``: ``data[index]``, ``(B, ...)`` or ``(B, slots, ...)``."""
        return data[index]

    def reduce_slots(self, per_example: Array) -> Array:
        """Per-example loss ``(B, slots)`` -> ``(B,)``; the identity for methods without slots."""
        return per_example

    def member_outputs(self, model: Model, params: Any, state: Any, x: Array) -> Array:
        """Every member's outputs in evaluation mode: params/state ``(G, ...)``, ``x`` ``(N, ...)`` ->
        ``(G * k, N, O)``, members of network ``g`` at ``g * k ... g * k + k - 1``."""
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        """Plain-JSON description (for saving); :func:`get_method` accepts it back."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Make a method known by its ``name`` to :func:`get_method` (and so to fit, the estimators, the command
    line and loading). Usable as a class decorator."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty name")
    METHODS[cls.name] = cls
    return cls


def get_method(method: str | Method | dict[str, Any], **options: Any) -> Method:
    """A method instance from a name (with its options), a saved config, or itself."""
    if isinstance(method, Method):
        return dataclasses.replace(method, **options) if options else method
    if isinstance(method, dict):
        options = {**{k: v for k, v in method.items() if k != "name"}, **options}
        method = method.get("name", "")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    assert isinstance(method, str)  # a key of METHODS
    try:
        return METHODS[method](**options)
    except TypeError as err:
        raise ValueError(f"method {method!r}: {err}") from None
