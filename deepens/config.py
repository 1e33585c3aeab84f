"""The training settings: one frozen dataclass, one set of defaults, shared by ``fit``, the estimators
and ``deepens train``.

The defaults are the paper's UCI protocol where the paper gives one (5 members, 40 epochs, minibatches
of 100, Adam) and, where it does not, the values that train the built-in MLP well on standardised
tables: learning rate 0.01 (the paper's printed rate is ambiguous between data sets), no weight decay,
and the gradient clipped to global norm 1 for the heads whose NLL divides by a learned scale
(``clip_norm="auto"``; see :data:`CLIPPED_HEADS`). ``reproduce`` does not use these defaults: it keeps
the paper's protocol exactly (:mod:`deepens.experiments`).

This module imports no JAX, Optax or numpy when it loads: ``deepens train --help`` reads :data:`DEFAULTS` and
:data:`METHOD_NAMES` from it without starting JAX. The modules that check an ``Adversarial`` or ``Method``
instance, or build the optimizer, are imported when they are needed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optax

    from deepens.adversarial import Adversarial
    from deepens.heads import Head
    from deepens.methods import Method

# Heads whose NLL divides by a learned scale: a member that shrinks its scale gets gradients that grow
# without bound and can blow up in one Adam step, so "auto" clips them.
CLIPPED_HEADS = frozenset({"gaussian", "laplace", "student_t"})
AUTO_CLIP_NORM = 1.0
ADVERSARIAL = ("none", "fgsm", "vat")
# The built-in methods by name (tests/test_layers.py checks them against deepens.methods.METHODS, where
# register_method may add more).
METHOD_NAMES = ("ensemble", "mimo", "batchensemble")


def _number(name: str, value: Any) -> float:
    """``value`` as a float, refusing booleans, strings and complex numbers by name."""
    # numbers.Real holds Python and numpy ints and floats, but neither numpy's bool_ nor complex numbers.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _count(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How an ensemble is trained (the network and the head are chosen separately).

    Attributes:
      members: M, the number of members (for MIMO and BatchEnsemble, the members in one network).
      epochs: passes over the training rows.
      batch_size: rows per Adam step; ``None`` trains on the full batch.
      learning_rate: Adam's step size (> 0).
      weight_decay: L2 penalty added to the gradient before Adam (PyTorch's ``Adam(weight_decay=)``), >= 0.
      clip_norm: clip each gradient to this global norm before Adam; ``"auto"`` is
        :data:`AUTO_CLIP_NORM` for the heads in :data:`CLIPPED_HEADS` and off otherwise; ``None``: off.
      adversarial: ``"none"`` (or None), ``"fgsm"``, ``"vat"`` or an ``FGSM``/``VAT`` instance; ``eps``: its step as a fraction of each feature's
        training range (``None``: 0.01, the paper's).
      seed: the ensemble's seed (member ``i`` draws from ``[seed, i, stream]``, see :mod:`deepens.train`).
      method: ``"ensemble"`` (one network per member), ``"mimo"``, ``"batchensemble"`` or a Method;
        ``input_repetition`` and ``batch_repetition`` are MIMO's rho and b.
    """

    members: int = 5
    epochs: int = 40
    batch_size: int | None = 100
    learning_rate: float = 0.01
    weight_decay: float = 0.0
    clip_norm: float | str | None = "auto"
    adversarial: str | Adversarial | None = "none"
    eps: float | None = None
    seed: int = 0
    method: str | Method = "ensemble"
    input_repetition: float = 0.0
    batch_repetition: int = 1

    def __post_init__(self) -> None:
        _count("members", self.members)
        _count("epochs", self.epochs)
        if self.batch_size is not None:
            _count("batch_size", self.batch_size)
        rate = _number("learning_rate", self.learning_rate)
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate!r}")
        decay = _number("weight_decay", self.weight_decay)
        if not (math.isfinite(decay) and decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        resolve_clip_norm(self.clip_norm, None)
        if self.adversarial not in (*ADVERSARIAL, None) and not _is_adversarial(self.adversarial):
            raise ValueError(f"adversarial must be one of {ADVERSARIAL}, got {self.adversarial!r}")
        if self.eps is not None:
            eps = _number("eps", self.eps)
            if not (math.isfinite(eps) and eps >= 0):
                raise ValueError(f"eps must be a finite number >= 0 or None, got {self.eps!r}")
        _count("seed", self.seed, low=0)
        if isinstance(self.method, str):
            if self.method not in METHOD_NAMES and self.method not in _registered_methods():
                raise ValueError(
                    f"unknown method {self.method!r}; choose a Method or one of {sorted(_registered_methods())}"
                )
        elif not _is_method(self.method):
            raise ValueError(
                f"unknown method {self.method!r}; choose a Method or one of {sorted(_registered_methods())}"
            )
        repetition = _number("input_repetition", self.input_repetition)
        if not 0.0 <= repetition <= 1.0:
            raise ValueError(f"input_repetition must lie in [0, 1], got {self.input_repetition!r}")
        _count("batch_repetition", self.batch_repetition)
        if not isinstance(self.method, str) and (self.input_repetition != 0.0 or self.batch_repetition != 1):
            raise ValueError("input_repetition and batch_repetition are set on the MIMO instance, not beside it")
        if (
            isinstance(self.method, str)
            and self.method != "mimo"
            and (self.input_repetition != 0.0 or self.batch_repetition != 1)
        ):
            raise ValueError(f"input_repetition and batch_repetition are MIMO's options, not {self.method!r}'s")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (TypeError naming an unknown setting), checked like the original."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(
                f"unknown training setting(s) {', '.join(unknown)}; TrainConfig has "
                f"{', '.join(f.name for f in dataclasses.fields(self))}"
            )
        return dataclasses.replace(self, **changes)

    def optimizer(self, head: Head) -> optax.GradientTransformation:
        """Adam with this config's learning rate, weight decay and (for ``head``) clipping."""
        return make_optimizer(
            float(self.learning_rate), float(self.weight_decay), resolve_clip_norm(self.clip_norm, head)
        )


def _is_adversarial(value: Any) -> bool:
    from deepens.adversarial import FGSM, VAT

    return isinstance(value, (FGSM, VAT))


def _is_method(value: Any) -> bool:
    from deepens.methods import Method

    return isinstance(value, Method)


def _registered_methods() -> tuple[str, ...]:
    from deepens.methods import METHODS

    return tuple(METHODS)


@functools.lru_cache(maxsize=64)
def make_optimizer(
    learning_rate: float, weight_decay: float = 0.0, clip_norm: float | None = None
) -> optax.GradientTransformation:
    """Adam, with L2 weight decay added to the gradient as in PyTorch's ``Adam(weight_decay=...)``, and
    with ``clip_norm`` set, the gradient first rescaled to global norm at most ``clip_norm``.

    Cached so that fits with equal settings get the same object and share a compiled program.
    """
    import optax

    if weight_decay:
        optimizer = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))
    else:
        optimizer = optax.adam(learning_rate)
    if clip_norm is None:
        return optimizer
    return optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)


def resolve_clip_norm(clip_norm: float | str | None, head: Head | None) -> float | None:
    """``"auto"``: AUTO_CLIP_NORM for heads in CLIPPED_HEADS, else None; None: off; a number > 0: itself.
    With ``head=None`` only checks the value."""
    if isinstance(clip_norm, str):
        if clip_norm != "auto":
            raise ValueError(f"clip_norm must be a positive number, None or 'auto', got {clip_norm!r}")
        return AUTO_CLIP_NORM if head is not None and head.name in CLIPPED_HEADS else None
    if clip_norm is None:
        return None
    value = _number("clip_norm", clip_norm)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"clip_norm must be a positive finite number, got {clip_norm!r}")
    return value


DEFAULTS = TrainConfig()
