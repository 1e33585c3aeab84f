"""Heads: how a network's raw outputs become a predictive distribution.

A head owns the parameterisation (which output is the mean, how a raw number becomes a positive scale),
the scoring rules that can train it, and the distribution's mean, variance, CDF and quantiles. Losses
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
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.special import betainc, gammaln, ndtr, ndtri

from deepens import losses

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

    def loss(self, name: str) -> LossFn:
        """The per-example loss ``(outputs, y) -> (...)`` called ``name`` (one of ``loss_names``)."""
        raise NotImplementedError

    def nll(self, outputs: Array, y: Array) -> Array:
        """Negative log-likelihood per example, ``(...)``."""
        raise NotImplementedError

    def mean(self, outputs: Array) -> Array:
        raise NotImplementedError

    def variance(self, outputs: Array) -> Array:
        raise NotImplementedError

    def kl(self, outputs_p: Array, outputs_q: Array) -> Array:
        """KL(p || q) between the distributions of two output arrays, per example ``(...)``."""
        raise NotImplementedError

    @property
    def default_loss(self) -> str:
        return self.loss_names[0]


@dataclasses.dataclass(frozen=True)
class _LocationScale(Head):
    """A location-scale regression head: outputs ``(..., 2T)`` are ``[loc, rho]``."""

    min_scale: float = 1e-6
    loss_names: ClassVar[tuple[str, ...]] = ("nll",)

    def num_outputs(self, size: int) -> int:
        return 2 * size

    def split(self, outputs: Array) -> tuple[Array, Array]:
        """``(loc, scale)``, each ``(..., T)``, from outputs ``(..., 2T)``."""
        width = outputs.shape[-1]
        if width % 2:
            raise ValueError(f"{self.name} head needs an even number of outputs (loc, rho), got {width}")
        loc, rho = jnp.split(outputs, 2, axis=-1)
        return loc, positive_scale(rho, self.min_scale)

    def loss(self, name: str) -> LossFn:
        if name != "nll":
            raise ValueError(f"{self.name} head is trained with loss 'nll', got {name!r}")
        return self.nll

    def mean(self, outputs: Array) -> Array:
        return self.split(outputs)[0]

    def std(self, outputs: Array) -> Array:
        return jnp.sqrt(self.variance(outputs))

    def log_prob(self, outputs: Array, y: Array) -> Array:
        """Elementwise log-density ``(..., T)``."""
        raise NotImplementedError

    def nll(self, outputs: Array, y: Array) -> Array:
        return -jnp.sum(self.log_prob(outputs, y), axis=-1)

    def cdf(self, outputs: Array, y: Array) -> Array:
        """Elementwise CDF at ``y``, ``(..., T)``."""
        raise NotImplementedError

    def quantile(self, outputs: Array, p: Array | float) -> Array:
        """Elementwise quantile at probability ``p`` in (0, 1), ``(..., T)``."""
        raise NotImplementedError

    def survival(self, outputs: Array, y: Array) -> Array:
        """Elementwise ``P(Y > y) = 1 - cdf``, ``(..., T)``, without the cancellation of ``1 - cdf``.
        The families are symmetric about ``loc``, so this is the CDF reflected about it."""
        loc = self.mean(outputs)
        return self.cdf(outputs, 2.0 * loc - y)

    def upper_quantile(self, outputs: Array, q: Array | float) -> Array:
        """Elementwise ``y`` with ``P(Y > y) = q`` (the quantile at ``1 - q``), ``(..., T)``. Taking the
        upper-tail probability itself keeps small ``q`` exact where ``1 - q`` would round to 1."""
        loc = self.mean(outputs)
        return 2.0 * loc - self.quantile(outputs, q)


@dataclasses.dataclass(frozen=True)
class Gaussian(_LocationScale):
    """Gaussian head: ``scale`` is the standard deviation sigma; variance sigma^2.

    Trained with ``"nll"`` or ``"beta_nll"`` (Seitzer et al. 2022, see
    :func:`deepens.losses.beta_gaussian_nll`), whose exponent is ``beta`` in ``[0, 1]``.
    """

    name: ClassVar[str] = "gaussian"
    loss_names: ClassVar[tuple[str, ...]] = ("nll", "beta_nll")
    beta: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.beta) <= 1.0:
            raise ValueError(f"gaussian head: beta must be in [0, 1], got {self.beta}")

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

    def log_prob(self, outputs: Array, y: Array) -> Array:
        loc, scale = self.split(outputs)
        return -losses.gaussian_nll(loc, scale, y)

    def variance(self, outputs: Array) -> Array:
        return jnp.square(self.split(outputs)[1])

    def cdf(self, outputs: Array, y: Array) -> Array:
        loc, scale = self.split(outputs)
        return ndtr((y - loc) / scale)

    def quantile(self, outputs: Array, p: Array | float) -> Array:
        loc, scale = self.split(outputs)
        return loc + scale * ndtri(jnp.asarray(p, loc.dtype))

    def kl(self, outputs_p: Array, outputs_q: Array) -> Array:
        loc_p, s_p = self.split(outputs_p)
        loc_q, s_q = self.split(outputs_q)
        ratio = jnp.square(s_p / s_q)
        kl = 0.5 * (ratio + jnp.square((loc_p - loc_q) / s_q) - 1.0 - jnp.log(ratio))
        return jnp.sum(kl, axis=-1)


@dataclasses.dataclass(frozen=True)
class Laplace(_LocationScale):
    """Laplace head: ``scale`` is b; variance 2 b^2."""

    name: ClassVar[str] = "laplace"

    def log_prob(self, outputs: Array, y: Array) -> Array:
        loc, scale = self.split(outputs)
        return -losses.laplace_nll(loc, scale, y)

    def variance(self, outputs: Array) -> Array:
        return 2.0 * jnp.square(self.split(outputs)[1])

    def cdf(self, outputs: Array, y: Array) -> Array:
        loc, scale = self.split(outputs)
        z = (y - loc) / scale
        # Each branch of the where only exponentiates a non-positive number, so neither overflows.
        return jnp.where(z < 0, 0.5 * jnp.exp(jnp.minimum(z, 0.0)), 1.0 - 0.5 * jnp.exp(-jnp.maximum(z, 0.0)))

    def quantile(self, outputs: Array, p: Array | float) -> Array:
        loc, scale = self.split(outputs)
        p = jnp.asarray(p, loc.dtype)
        # Split at 1/2 rather than forming p - 1/2, which loses the low bits of a small p (issue 14).
        # Each branch sees a clamped argument so the other side's logarithm stays finite.
        lower = jnp.log(2.0 * jnp.minimum(p, 0.5))
        upper = -jnp.log(2.0 - 2.0 * jnp.maximum(p, 0.5))
        return loc + scale * jnp.where(p < 0.5, lower, upper)

    def kl(self, outputs_p: Array, outputs_q: Array) -> Array:
        loc_p, b_p = self.split(outputs_p)
        loc_q, b_q = self.split(outputs_q)
        distance = jnp.abs(loc_p - loc_q)
        kl = jnp.log(b_q / b_p) + distance / b_q + (b_p / b_q) * jnp.exp(-distance / b_p) - 1.0
        return jnp.sum(kl, axis=-1)


def _student_t_cdf(t: Array, df: Array) -> Array:
    """CDF of the standard Student-t at ``t`` through the regularised incomplete beta function:
    ``P(|T| > |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2) = 1 - I_{t^2 / (df + t^2)}(1 / 2, df / 2)``.

    Near the centre ``df / (df + t^2)`` rounds to 1 in float32, so there the second form is used."""
    t2 = jnp.square(t)
    tail = 0.5 * jnp.where(t2 < df, 1.0 - betainc(0.5, 0.5 * df, t2 / (df + t2)), betainc(0.5 * df, 0.5, df / (df + t2)))
    return jnp.where(t < 0, tail, 1.0 - tail)


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
        if not float(self.min_df) > 0.0:
            raise ValueError(f"student_t head: min_df must be > 0, got {self.min_df}")

    def num_outputs(self, size: int) -> int:
        return 3 * size

    def split(self, outputs: Array) -> tuple[Array, Array, Array]:
        """``(loc, scale, df)``, each ``(..., T)``, from outputs ``(..., 3T)``."""
        width = outputs.shape[-1]
        if width % 3:
            raise ValueError(f"student_t head needs a multiple of 3 outputs (loc, rho_scale, rho_df), got {width}")
        loc, rho_scale, rho_df = jnp.split(outputs, 3, axis=-1)
        return loc, positive_scale(rho_scale, self.min_scale), 2.0 + positive_scale(rho_df, self.min_df)

    def loss(self, name: str) -> LossFn:
        if name != "nll":
            raise ValueError(f"student_t head is trained with loss 'nll', got {name!r}")
        return self.nll

    def log_prob(self, outputs: Array, y: Array) -> Array:
        """Elementwise log-density ``(..., T)``."""
        loc, scale, df = self.split(outputs)
        z = (y - loc) / scale
        return (gammaln(0.5 * (df + 1.0)) - gammaln(0.5 * df) - 0.5 * jnp.log(df * jnp.pi) - jnp.log(scale)
                - 0.5 * (df + 1.0) * jnp.log1p(jnp.square(z) / df))

    def nll(self, outputs: Array, y: Array) -> Array:
        return -jnp.sum(self.log_prob(outputs, y), axis=-1)

    def mean(self, outputs: Array) -> Array:
        return self.split(outputs)[0]

    def variance(self, outputs: Array) -> Array:
        _, scale, df = self.split(outputs)
        return jnp.square(scale) * df / (df - 2.0)

    def std(self, outputs: Array) -> Array:
        return jnp.sqrt(self.variance(outputs))

    def cdf(self, outputs: Array, y: Array) -> Array:
        """Elementwise CDF at ``y``, ``(..., T)``."""
        loc, scale, df = self.split(outputs)
        return _student_t_cdf((y - loc) / scale, df)

    def quantile(self, outputs: Array, p: Array | float, *, iterations: int = 100) -> Array:
        """Elementwise quantile at ``p`` in (0, 1), ``(..., T)``, by bisection on the standard CDF.

        The bracket comes from Chebyshev's inequality: the ``q``-tail quantile of a variable with standard
        deviation ``sd`` is within ``sd / sqrt(q)`` of the mean, so ``[-B, B]`` with ``B = sd / sqrt(min(p,
        1 - p))`` holds it; 100 halvings shrink it below float32 resolution.
        """
        loc, scale, df = self.split(outputs)
        p = jnp.broadcast_to(jnp.asarray(p, loc.dtype), loc.shape)
        bound = jnp.sqrt(df / (df - 2.0) / jnp.minimum(p, 1.0 - p))

        def halve(_, bracket):
            low, high = bracket
            middle = 0.5 * (low + high)
            below = _student_t_cdf(middle, df) < p
            return jnp.where(below, middle, low), jnp.where(below, high, middle)

        low, high = jax.lax.fori_loop(0, iterations, halve, (-bound, bound))
        return loc + scale * 0.5 * (low + high)

    def survival(self, outputs: Array, y: Array) -> Array:
        """Elementwise ``P(Y > y)``: the CDF reflected about ``loc`` (the distribution is symmetric)."""
        loc, scale, df = self.split(outputs)
        return _student_t_cdf((loc - y) / scale, df)

    def upper_quantile(self, outputs: Array, q: Array | float) -> Array:
        """Elementwise ``y`` with ``P(Y > y) = q``, ``(..., T)``, by symmetry about ``loc``."""
        loc = self.split(outputs)[0]
        return 2.0 * loc - self.quantile(outputs, q)

    def kl(self, outputs_p: Array, outputs_q: Array) -> Array:
        """Approximate KL(p || q): that of the moment-matched Gaussians (no closed form exists)."""
        loc_p, var_p = self.mean(outputs_p), self.variance(outputs_p)
        loc_q, var_q = self.mean(outputs_q), self.variance(outputs_q)
        ratio = var_p / var_q
        kl = 0.5 * (ratio + jnp.square(loc_p - loc_q) / var_q - 1.0 - jnp.log(ratio))
        return jnp.sum(kl, axis=-1)


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

    def loss(self, name: str) -> LossFn:
        if name == "mse":
            return lambda outputs, y: jnp.sum(losses.squared_error(outputs, y), axis=-1)
        if name == "l1":
            return lambda outputs, y: jnp.sum(losses.absolute_error(outputs, y), axis=-1)
        raise ValueError(f"point head is trained with loss 'mse' or 'l1', got {name!r}")

    def log_prob(self, outputs: Array, y: Array) -> Array:
        """Elementwise log-density of a point mass: ``+inf`` at the prediction, ``-inf`` elsewhere."""
        return jnp.where(outputs == y, jnp.inf, -jnp.inf)

    def nll(self, outputs: Array, y: Array) -> Array:
        return jnp.where(jnp.all(outputs == y, axis=-1), -jnp.inf, jnp.inf)

    def mean(self, outputs: Array) -> Array:
        return outputs

    def variance(self, outputs: Array) -> Array:
        return jnp.zeros_like(outputs)

    def cdf(self, outputs: Array, y: Array) -> Array:
        return (y >= outputs).astype(outputs.dtype)

    def quantile(self, outputs: Array, p: Array | float) -> Array:
        return outputs

    def survival(self, outputs: Array, y: Array) -> Array:
        return (y < outputs).astype(outputs.dtype)

    def upper_quantile(self, outputs: Array, q: Array | float) -> Array:
        return outputs

    def kl(self, outputs_p: Array, outputs_q: Array) -> Array:
        return 0.5 * jnp.sum(jnp.square(outputs_p - outputs_q), axis=-1)


@dataclasses.dataclass(frozen=True)
class Categorical(Head):
    """Softmax classification head: outputs are logits ``(..., K)``."""

    name: ClassVar[str] = "categorical"
    is_classifier: ClassVar[bool] = True
    loss_names: ClassVar[tuple[str, ...]] = ("nll", "brier")

    def num_outputs(self, size: int) -> int:
        return size

    def loss(self, name: str) -> LossFn:
        if name == "nll":
            return losses.categorical_nll
        if name == "brier":
            return losses.brier_score
        raise ValueError(f"categorical head is trained with loss 'nll' or 'brier', got {name!r}")

    def nll(self, outputs: Array, y: Array) -> Array:
        return losses.categorical_nll(outputs, y)

    def probs(self, outputs: Array) -> Array:
        return jax.nn.softmax(outputs, axis=-1)

    def mean(self, outputs: Array) -> Array:
        return self.probs(outputs)

    def variance(self, outputs: Array) -> Array:
        p = self.probs(outputs)
        return p * (1.0 - p)

    def kl(self, outputs_p: Array, outputs_q: Array) -> Array:
        log_p = jax.nn.log_softmax(outputs_p, axis=-1)
        log_q = jax.nn.log_softmax(outputs_q, axis=-1)
        return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


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

