"""Heads: how a network's raw outputs become a predictive distribution.

A head owns the parameterisation (which output is the mean, how a raw number becomes a positive scale)
and the scoring rules that can train it. :meth:`Head.distribution` turns outputs into a distribution of
:mod:`deepens.distributions` once (split and softplus done there); the head's ``mean``, ``variance``,
``log_prob``, ``cdf``, ``quantile`` and ``kl`` are shorthands for asking that distribution. Losses
themselves live in :mod:`deepens.losses`; combining members lives in :mod:`deepens.mixture`.

Shapes, with ``T`` regression targets and ``K`` classes:

- ``Gaussian`` / ``Laplace``: outputs ``(..., 2T)``, the first ``T`` are means, the last ``T`` raw scales
  ``rho``; the scale is ``softplus(rho) + min_scale``: a standard deviation for the Gaussian, ``b`` for
  the Laplace (whose variance is ``2 b^2``). Targets ``y``: ``(..., T)``.
- ``StudentT``: outputs ``(..., 3T)`` = ``[loc, rho_scale, rho_df]``; ``scale = softplus(rho_scale) +
  min_scale`` and ``df = 2 + min_df + softplus(rho_df)``, so the variance ``scale^2 df / (df - 2)`` exists.
- ``Point``: outputs ``(..., T)``, a mean only (MSE or L1 baseline); its own variance is zero, so an
  ensemble's variance is the members' spread.
- ``Categorical``: outputs ``(..., K)`` logits; targets ``(...)`` integer labels.

Per-example losses and KL divergences sum over targets and return ``(...)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from deepens import distributions, losses

LossFn = Callable[[Array, Array], Array]


def positive_scale(rho: Array, min_scale: float) -> Array:
    """``softplus(rho) + min_scale``: a positive scale from an unconstrained output."""
    return jax.nn.softplus(rho) + min_scale


@dataclasses.dataclass(frozen=True)
class Head:
    """Base class. Subclasses are small frozen dataclasses, hashable so compiled programs can be reused."""

    name: ClassVar[str] = ""
    is_classifier: ClassVar[bool] = False
    loss_names: ClassVar[tuple[str, ...]] = ()

    def num_outputs(self, size: int) -> int:
        """Network outputs needed for ``size`` targets (regression) or classes (classification)."""
        raise NotImplementedError

    def distribution(self, outputs: Array) -> distributions.Distribution:
        """The predictive distribution of raw outputs ``(..., O)``, parameters ``(..., T)`` (or logits)."""
        raise NotImplementedError

    def loss(self, name: str) -> LossFn:
        """The per-example loss ``(outputs, y) -> (...)`` called ``name`` (one of ``loss_names``)."""
        raise NotImplementedError

    def nll(self, outputs: Array, y: Array) -> Array:
        """Negative log-likelihood per example, summed over targets, ``(...)``."""
        return -jnp.sum(self.log_prob(outputs, y), axis=-1)

    def log_prob(self, outputs: Array, y: Array) -> Array:
        """Elementwise log-density ``(..., T)``; ``y`` must have (or broadcast to) the targets' shape."""
        distribution = self.distribution(outputs)
        targets = jnp.shape(distribution.mean)
        # The distribution broadcasts freely (a mixture scores y against every member); a loss must not
        # turn a (B,) target against (B, 1) outputs into a (B, B) matrix.
        if jnp.broadcast_shapes(targets, jnp.shape(y)) != targets:
            raise ValueError(
                f"{self.name} head: y has shape {jnp.shape(y)} but the outputs hold targets of shape {targets}"
            )
        return distribution.log_prob(y)

    def mean(self, outputs: Array) -> Array:
        return self.distribution(outputs).mean

    def variance(self, outputs: Array) -> Array:
        return self.distribution(outputs).variance

    def std(self, outputs: Array) -> Array:
        return jnp.sqrt(self.variance(outputs))

    def cdf(self, outputs: Array, y: Array) -> Array:
        """Elementwise CDF at ``y``, ``(..., T)``."""
        return self.distribution(outputs).cdf(y)

    def survival(self, outputs: Array, y: Array) -> Array:
        """Elementwise ``P(Y > y)``, ``(..., T)``, without the cancellation of ``1 - cdf``."""
        return self.distribution(outputs).survival(y)

    def quantile(self, outputs: Array, p: Array | float) -> Array:
        """Elementwise quantile at probability ``p`` in (0, 1), ``(..., T)``."""
        return self.distribution(outputs).quantile(p)

    def upper_quantile(self, outputs: Array, q: Array | float) -> Array:
        """Elementwise ``y`` with ``P(Y > y) = q`` (the quantile at ``1 - q``), ``(..., T)``. Taking the
        upper-tail probability itself keeps small ``q`` exact where ``1 - q`` would round to 1."""
        return self.distribution(outputs).upper_quantile(q)

    def kl(self, outputs_p: Array, outputs_q: Array) -> Array:
        """KL(p || q) between the distributions of two output arrays, per example ``(...)``."""
        return jnp.sum(self.distribution(outputs_p).kl(self.distribution(outputs_q)), axis=-1)

    @property
    def default_loss(self) -> str:
        return self.loss_names[0]


def _positive_setting(head: str, name: str, value: Any) -> None:
    """A ValueError unless ``value`` is a finite number > 0 (a scale floor or a df margin)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or not float(value) > 0.0:
        raise ValueError(f"{head} head: {name} must be a finite number > 0, got {value!r}")


def _check_width(head: str, outputs: Array) -> int:
    if jnp.ndim(outputs) < 1:
        raise ValueError(f"{head} head: outputs must have a last axis of head outputs, got a 0-d array")
    return outputs.shape[-1]


@dataclasses.dataclass(frozen=True)
class _LocationScale(Head):
    """A location-scale regression head: outputs ``(..., 2T)`` are ``[loc, rho]``."""

    min_scale: float = 1e-6
    loss_names: ClassVar[tuple[str, ...]] = ("nll",)
    distribution_class: ClassVar[type[distributions.Normal] | type[distributions.Laplace]]

    def num_outputs(self, size: int) -> int:
        return 2 * size

    def __post_init__(self) -> None:
        _positive_setting(self.name, "min_scale", self.min_scale)

    def split(self, outputs: Array) -> tuple[Array, Array]:
        """``(loc, scale)``, each ``(..., T)``, from outputs ``(..., 2T)``."""
        width = _check_width(self.name, outputs)
        if width % 2:
            raise ValueError(f"{self.name} head needs an even number of outputs (loc, rho), got {width}")
        loc, rho = jnp.split(outputs, 2, axis=-1)
        return loc, positive_scale(rho, self.min_scale)

    def distribution(self, outputs: Array) -> distributions.Distribution:
        return self.distribution_class(*self.split(outputs))

    def loss(self, name: str) -> LossFn:
        if name != "nll":
            raise ValueError(f"{self.name} head is trained with loss 'nll', got {name!r}")
        return self.nll


@dataclasses.dataclass(frozen=True)
class Gaussian(_LocationScale):
    """Gaussian head: ``scale`` is the standard deviation sigma; variance sigma^2.

    Trained with ``"nll"`` or ``"beta_nll"`` (Seitzer et al. 2022, see
    :func:`deepens.losses.beta_gaussian_nll`), whose exponent is ``beta`` in ``[0, 1]``.
    """

    name: ClassVar[str] = "gaussian"
    loss_names: ClassVar[tuple[str, ...]] = ("nll", "beta_nll")
    distribution_class = distributions.Normal
    beta: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        ok = isinstance(self.beta, (int, float, np.integer, np.floating)) and not isinstance(self.beta, bool)
        if not ok or not 0.0 <= float(self.beta) <= 1.0:
            raise ValueError(f"gaussian head: beta must be a number in [0, 1], got {self.beta!r}")

    def loss(self, name: str) -> LossFn:
        if name == "nll":
            return self.nll
        if name == "beta_nll":
            return self.beta_nll
        raise ValueError(f"gaussian head is trained with loss 'nll' or 'beta_nll', got {name!r}")

    def beta_nll(self, outputs: Array, y: Array) -> Array:
        """beta-NLL per example, summed over targets, ``(...)``."""
        loc, scale = self.split(outputs)
        return jnp.sum(losses.beta_gaussian_nll(loc, scale, y, beta=self.beta), axis=-1)


@dataclasses.dataclass(frozen=True)
class Laplace(_LocationScale):
    """Laplace head: ``scale`` is b; variance 2 b^2."""

    name: ClassVar[str] = "laplace"
    distribution_class = distributions.Laplace


@dataclasses.dataclass(frozen=True)
class StudentT(Head):
    """Student-t head: location ``loc``, scale ``s`` and degrees of freedom ``df > 2 + min_df``.

    Outputs ``(..., 3T)`` are ``[loc, rho_scale, rho_df]``. Its mean is ``loc`` and its variance
    ``s^2 df / (df - 2)``; ``min_df`` keeps ``df`` away from 2, where the variance diverges. Heavier tails
    than the Gaussian make the NLL's gradient bounded in the residual, so outliers pull the mean less.
    Quantiles are found by bisection on the CDF (JAX has no inverse incomplete beta function).

    ``kl`` (used by VAT) has no closed form between two Student-t distributions; it is approximated by the
    KL between the Gaussians with the same means and variances (exact in the limit ``df -> inf``).
    """

    name: ClassVar[str] = "student_t"
    loss_names: ClassVar[tuple[str, ...]] = ("nll",)
    min_scale: float = 1e-6
    min_df: float = 0.1

    def __post_init__(self) -> None:
        _positive_setting("student_t", "min_scale", self.min_scale)
        _positive_setting("student_t", "min_df", self.min_df)

    def num_outputs(self, size: int) -> int:
        return 3 * size

    def split(self, outputs: Array) -> tuple[Array, Array, Array]:
        """``(loc, scale, df)``, each ``(..., T)``, from outputs ``(..., 3T)``."""
        width = _check_width("student_t", outputs)
        if width % 3:
            raise ValueError(f"student_t head needs a multiple of 3 outputs (loc, rho_scale, rho_df), got {width}")
        loc, rho_scale, rho_df = jnp.split(outputs, 3, axis=-1)
        return loc, positive_scale(rho_scale, self.min_scale), 2.0 + positive_scale(rho_df, self.min_df)

    def distribution(self, outputs: Array) -> distributions.Distribution:
        return distributions.StudentT(*self.split(outputs))

    def loss(self, name: str) -> LossFn:
        if name != "nll":
            raise ValueError(f"student_t head is trained with loss 'nll', got {name!r}")
        return self.nll


@dataclasses.dataclass(frozen=True)
class Point(Head):
    """A mean-only regression head trained on MSE or L1: the non-probabilistic baseline.

    A single member has zero variance; an ensemble's variance is the spread of its members' means.
    For VAT its KL is that of unit-variance Gaussians, ``0.5 (mu_p - mu_q)^2``.
    """

    name: ClassVar[str] = "point"
    loss_names: ClassVar[tuple[str, ...]] = ("mse", "l1")

    def num_outputs(self, size: int) -> int:
        return size

    def distribution(self, outputs: Array) -> distributions.Distribution:
        return distributions.Deterministic(jnp.asarray(outputs))

    def loss(self, name: str) -> LossFn:
        if name == "mse":
            return lambda outputs, y: jnp.sum(losses.squared_error(outputs, y), axis=-1)
        if name == "l1":
            return lambda outputs, y: jnp.sum(losses.absolute_error(outputs, y), axis=-1)
        raise ValueError(f"point head is trained with loss 'mse' or 'l1', got {name!r}")

    def nll(self, outputs: Array, y: Array) -> Array:
        return jnp.where(jnp.all(outputs == y, axis=-1), -jnp.inf, jnp.inf)


@dataclasses.dataclass(frozen=True)
class Categorical(Head):
    """Softmax classification head: outputs are logits ``(..., K)``."""

    name: ClassVar[str] = "categorical"
    is_classifier: ClassVar[bool] = True
    loss_names: ClassVar[tuple[str, ...]] = ("nll", "brier")

    def num_outputs(self, size: int) -> int:
        return size

    def distribution(self, outputs: Array) -> distributions.Categorical:
        return distributions.Categorical(jnp.asarray(outputs))

    def loss(self, name: str) -> LossFn:
        if name == "nll":
            return losses.categorical_nll
        if name == "brier":
            return losses.brier_score
        raise ValueError(f"categorical head is trained with loss 'nll' or 'brier', got {name!r}")

    def nll(self, outputs: Array, y: Array) -> Array:
        return losses.categorical_nll(outputs, y)

    def log_prob(self, outputs: Array, y: Array) -> Array:
        return -self.nll(outputs, y)

    def probs(self, outputs: Array) -> Array:
        return jax.nn.softmax(outputs, axis=-1)

    def kl(self, outputs_p: Array, outputs_q: Array) -> Array:
        return self.distribution(outputs_p).kl(self.distribution(outputs_q))


HEADS: dict[str, type[Head]] = {cls.name: cls for cls in (Gaussian, Laplace, StudentT, Point, Categorical)}


def get_head(head: str | Head) -> Head:
    """A head instance from a name (``gaussian``, ``laplace``, ``student_t``, ``point``,
    ``categorical``) or itself."""
    if isinstance(head, Head):
        return head
    try:
        return HEADS[head]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown head {head!r}; choose one of {sorted(HEADS)}") from None
