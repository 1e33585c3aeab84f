"""Small frozen distributions, in the manner of distrax: parameters in, densities and moments out.

A head turns a network's raw outputs into one of these once (:meth:`deepens.heads.Head.distribution`);
the mixture, the prediction and the metrics then ask it for ``log_prob``, ``cdf``, ``quantile``, moments
and ``entropy``, so each formula lives here and nowhere else. Parameters broadcast against each other
and against ``y``; every method is elementwise.

Two array backends: parameters that are JAX arrays (or tracers, inside ``jit``) give JAX results in
their dtype; NumPy parameters give NumPy results (the metrics use float64 on the host). The classes are
pytrees, so a distribution can cross a ``jit`` boundary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import jax
import jax.numpy as jnp
import jax.scipy.special as jax_special
import numpy as np
import scipy.special as np_special

from deepens import losses


def namespace(*arrays: Any) -> tuple[ModuleType, ModuleType]:
    """``(numpy, scipy.special)`` when no argument is a JAX array, else ``(jax.numpy, jax.scipy.special)``."""
    xp = losses.namespace(*arrays)
    return (np, np_special) if xp is np else (jnp, jax_special)


def fori_loop(xp: ModuleType, n: int, body: Callable[[int, Any], Any], init: Any) -> Any:
    """``lax.fori_loop`` for JAX arrays (one compiled loop), a Python loop for NumPy ones."""
    if xp is jnp:
        return jax.lax.fori_loop(0, n, body, init)
    for i in range(n):
        init = body(i, init)
    return init


_D = TypeVar("_D")


def _pytree(cls: type[_D]) -> type[_D]:
    """A frozen dataclass registered as a pytree whose fields are all arrays."""
    fields = [f.name for f in dataclasses.fields(cls)]  # pyright: ignore[reportArgumentType]  # cls is a dataclass
    return jax.tree_util.register_dataclass(cls, data_fields=fields, meta_fields=[])


class Distribution:
    """Interface. ``family`` names the distribution in the metrics (``family=`` arguments)."""

    family: ClassVar[str] = ""

    def _xp(self) -> tuple[ModuleType, ModuleType]:
        return namespace(*(getattr(self, f.name) for f in dataclasses.fields(self)))  # type: ignore[arg-type]

    @property
    def mean(self) -> Any:
        raise NotImplementedError

    @property
    def variance(self) -> Any:
        raise NotImplementedError

    @property
    def stddev(self) -> Any:
        return self._xp()[0].sqrt(self.variance)

    def log_prob(self, y: Any) -> Any:
        raise NotImplementedError

    def cdf(self, y: Any) -> Any:
        raise NotImplementedError

    def kl(self, other: Any) -> Any:
        """KL(self || other) to a distribution of the same family, ``(...)``."""
        raise NotImplementedError

    def survival(self, y: Any) -> Any:
        """``P(Y > y)``, computed without the cancellation of ``1 - cdf``."""
        raise NotImplementedError

    def quantile(self, p: Any) -> Any:
        """The ``y`` with ``cdf(y) = p``, for ``p`` in (0, 1)."""
        raise NotImplementedError

    def upper_quantile(self, q: Any) -> Any:
        """The ``y`` with ``survival(y) = q``: the quantile at ``1 - q``, exact for a small ``q`` where
        ``1 - q`` would round to 1."""
        raise NotImplementedError


class _Symmetric(Distribution):
    """Location-scale families symmetric about ``loc``: the upper tail is the lower one reflected."""

    loc: Any
    scale: Any

    @property
    def mean(self) -> Any:
        return self.loc

    def _standard_cdf(self, z: Any) -> Any:
        raise NotImplementedError

    def _standard_quantile(self, p: Any) -> Any:
        raise NotImplementedError

    def cdf(self, y: Any) -> Any:
        return self._standard_cdf((y - self.loc) / self.scale)

    def survival(self, y: Any) -> Any:
        return self._standard_cdf((self.loc - y) / self.scale)

    def _p(self, p: Any) -> Any:
        xp = self._xp()[0]
        return xp.asarray(p, dtype=xp.result_type(self.loc))

    def quantile(self, p: Any) -> Any:
        return self.loc + self.scale * self._standard_quantile(self._p(p))

    def upper_quantile(self, q: Any) -> Any:
        return self.loc - self.scale * self._standard_quantile(self._p(q))


@_pytree
@dataclasses.dataclass(frozen=True)
class Normal(_Symmetric):
    """N(loc, scale^2): ``scale`` is the standard deviation."""

    loc: Any
    scale: Any
    family: ClassVar[str] = "gaussian"

    @property
    def variance(self) -> Any:
        return self._xp()[0].square(self.scale)

    def log_prob(self, y: Any) -> Any:
        xp = self._xp()[0]
        loc, scale, y = xp.broadcast_arrays(self.loc, self.scale, xp.asarray(y))
        return -losses.gaussian_nll(loc, scale, y)

    def _standard_cdf(self, z: Any) -> Any:
        return self._xp()[1].ndtr(z)

    def _standard_quantile(self, p: Any) -> Any:
        return self._xp()[1].ndtri(p)

    def entropy(self) -> Any:
        return 0.5 * (1.0 + math.log(2.0 * math.pi)) + self._xp()[0].log(self.scale)

    def kl(self, other: Normal) -> Any:
        """KL(self || other), elementwise."""
        xp = self._xp()[0]
        ratio = xp.square(self.scale / other.scale)
        return 0.5 * (ratio + xp.square((self.loc - other.loc) / other.scale) - 1.0 - xp.log(ratio))


@_pytree
@dataclasses.dataclass(frozen=True)
class Laplace(_Symmetric):
    """Laplace(loc, b = scale), density ``exp(-|y - loc| / b) / (2 b)``; variance ``2 b^2``."""

    loc: Any
    scale: Any
    family: ClassVar[str] = "laplace"

    @property
    def variance(self) -> Any:
        return 2.0 * self._xp()[0].square(self.scale)

    def log_prob(self, y: Any) -> Any:
        xp = self._xp()[0]
        loc, scale, y = xp.broadcast_arrays(self.loc, self.scale, xp.asarray(y))
        return -losses.laplace_nll(loc, scale, y)

    def _standard_cdf(self, z: Any) -> Any:
        xp = self._xp()[0]
        # Each branch of the where only exponentiates a non-positive number, so neither overflows.
        return xp.where(z < 0, 0.5 * xp.exp(xp.minimum(z, 0.0)), 1.0 - 0.5 * xp.exp(-xp.maximum(z, 0.0)))

    def _standard_quantile(self, p: Any) -> Any:
        xp = self._xp()[0]
        # Split at 1/2 rather than forming p - 1/2, which loses the low bits of a small p (issue 14).
        # Each branch sees a clamped argument so the other side's logarithm stays finite.
        lower = xp.log(2.0 * xp.minimum(p, 0.5))
        upper = -xp.log(2.0 - 2.0 * xp.maximum(p, 0.5))
        return xp.where(p < 0.5, lower, upper)

    def entropy(self) -> Any:
        return 1.0 + math.log(2.0) + self._xp()[0].log(self.scale)

    def kl(self, other: Laplace) -> Any:
        """KL(self || other), elementwise, in closed form."""
        xp = self._xp()[0]
        distance = xp.abs(self.loc - other.loc)
        b_p, b_q = self.scale, other.scale
        return xp.log(b_q / b_p) + distance / b_q + (b_p / b_q) * xp.exp(-distance / b_p) - 1.0


def _student_t_cdf(xp: ModuleType, special: ModuleType, t: Any, df: Any) -> Any:
    """CDF of the standard Student-t at ``t`` through the regularised incomplete beta function:
    ``P(|T| > |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2) = 1 - I_{t^2 / (df + t^2)}(1 / 2, df / 2)``.

    Near the centre ``df / (df + t^2)`` rounds to 1 in float32, so there the second form is used."""
    t2 = xp.square(t)
    small = 1.0 - special.betainc(0.5, 0.5 * df, t2 / (df + t2))
    large = special.betainc(0.5 * df, 0.5, df / (df + t2))
    tail = 0.5 * xp.where(t2 < df, small, large)
    return xp.where(t < 0, tail, 1.0 - tail)


@_pytree
@dataclasses.dataclass(frozen=True)
class StudentT(_Symmetric):
    """Student-t with ``df`` degrees of freedom, location ``loc`` and scale ``s``; the mean is ``loc``
    and the variance ``s^2 df / (df - 2)`` (finite for ``df > 2``, which the head guarantees)."""

    loc: Any
    scale: Any
    df: Any
    family: ClassVar[str] = "student_t"
    quantile_iterations: ClassVar[int] = 100

    @property
    def variance(self) -> Any:
        return self._xp()[0].square(self.scale) * self.df / (self.df - 2.0)

    def log_prob(self, y: Any) -> Any:
        xp, special = self._xp()
        df = self.df
        z = (y - self.loc) / self.scale
        return (
            special.gammaln(0.5 * (df + 1.0))
            - special.gammaln(0.5 * df)
            - 0.5 * xp.log(df * xp.pi)
            - xp.log(self.scale)
            - 0.5 * (df + 1.0) * xp.log1p(xp.square(z) / df)
        )

    def _standard_cdf(self, z: Any) -> Any:
        return _student_t_cdf(*self._xp(), z, self.df)

    def _standard_quantile(self, p: Any) -> Any:
        """By bisection on the standard CDF (JAX has no inverse incomplete beta function). The bracket
        comes from Chebyshev's inequality: the ``q``-tail quantile of a variable with standard deviation
        ``sd`` is within ``sd / sqrt(q)`` of the mean, so ``[-B, B]`` with ``B = sd / sqrt(min(p, 1 - p))``
        holds it; 100 halvings shrink it below float32 resolution."""
        xp, special = self._xp()
        shape = xp.broadcast_shapes(xp.shape(self.loc), xp.shape(self.scale), xp.shape(self.df), xp.shape(p))
        df = xp.broadcast_to(self.df, shape)
        p = xp.broadcast_to(p, shape)
        bound = xp.sqrt(df / (df - 2.0) / xp.minimum(p, 1.0 - p))

        def halve(_, bracket):
            low, high = bracket
            middle = 0.5 * (low + high)
            below = _student_t_cdf(xp, special, middle, df) < p
            return xp.where(below, middle, low), xp.where(below, high, middle)

        low, high = fori_loop(xp, self.quantile_iterations, halve, (-bound, bound))
        return 0.5 * (low + high)

    def entropy(self) -> Any:
        """``(df + 1) / 2 [psi((df + 1) / 2) - psi(df / 2)] + log(sqrt(df) B(df / 2, 1 / 2)) + log s``."""
        xp, special = self._xp()
        half = 0.5 * self.df
        return (
            (half + 0.5) * (special.digamma(half + 0.5) - special.digamma(half))
            + 0.5 * xp.log(self.df)
            + special.betaln(half, 0.5)
            + xp.log(self.scale)
        )

    def kl(self, other: StudentT) -> Any:
        """Approximate KL(self || other): that of the Gaussians with the same means and variances (no
        closed form exists; exact in the limit ``df -> inf``)."""
        return Normal(self.loc, self.stddev).kl(Normal(other.loc, other.stddev))


@_pytree
@dataclasses.dataclass(frozen=True)
class Deterministic(Distribution):
    """A point mass at ``loc`` (the members of an MSE or L1 ensemble): variance 0, a step CDF."""

    loc: Any
    family: ClassVar[str] = "point"

    @property
    def mean(self) -> Any:
        return self.loc

    @property
    def variance(self) -> Any:
        return self._xp()[0].zeros_like(self.loc)

    def log_prob(self, y: Any) -> Any:
        """``+inf`` at ``loc``, ``-inf`` elsewhere."""
        xp = self._xp()[0]
        return xp.where(self.loc == y, xp.inf, -xp.inf)

    def cdf(self, y: Any) -> Any:
        return (y >= self.loc).astype(self._xp()[0].result_type(self.loc))

    def survival(self, y: Any) -> Any:
        return (y < self.loc).astype(self._xp()[0].result_type(self.loc))

    def quantile(self, p: Any) -> Any:
        return self.loc

    def upper_quantile(self, q: Any) -> Any:
        return self.loc

    def kl(self, other: Deterministic) -> Any:
        """Not a KL (two point masses have none): half the squared distance, the KL of unit-variance
        Gaussians at the two points, which is what virtual adversarial training needs."""
        return 0.5 * self._xp()[0].square(self.loc - other.loc)


@_pytree
@dataclasses.dataclass(frozen=True)
class Categorical(Distribution):
    """A categorical over the last axis of ``logits (..., K)``; outcomes are integer labels ``(...)``."""

    logits: Any
    family: ClassVar[str] = "categorical"

    def _softmax(self, log: bool) -> Any:
        if self._xp()[0] is np:
            return (np_special.log_softmax if log else np_special.softmax)(self.logits, axis=-1)
        return (jax.nn.log_softmax if log else jax.nn.softmax)(self.logits, axis=-1)

    @property
    def log_probs(self) -> Any:
        """``(..., K)`` log-probabilities."""
        return self._softmax(log=True)

    @property
    def probs(self) -> Any:
        """``(..., K)`` probabilities."""
        return self._softmax(log=False)

    @property
    def mean(self) -> Any:
        """The one-hot mean: the probabilities ``(..., K)``."""
        return self.probs

    @property
    def variance(self) -> Any:
        """Of each one-hot coordinate: ``p (1 - p)``, ``(..., K)``."""
        p = self.probs
        return p * (1.0 - p)

    def log_prob(self, labels: Any) -> Any:  # pyright: ignore[reportIncompatibleMethodOverride]  # named labels, not y, for classes
        """``log p[label]`` with ``labels`` broadcast against ``logits.shape[:-1]``, from logsumexp."""
        xp = self._xp()[0]
        labels = xp.broadcast_to(xp.asarray(labels), xp.shape(self.logits)[:-1])
        return -losses.categorical_nll(self.logits, labels)

    def entropy(self) -> Any:
        """In nats, ``(...)``; ``0 log 0 = 0``."""
        xp = self._xp()[0]
        log_p, p = self.log_probs, self.probs
        return -xp.sum(xp.where(p > 0, p * log_p, 0.0), axis=-1)

    def kl(self, other: Categorical) -> Any:
        """KL(self || other), ``(...)``."""
        xp = self._xp()[0]
        log_p, log_q = self.log_probs, other.log_probs
        return xp.sum(xp.exp(log_p) * (log_p - log_q), axis=-1)


LOCATION_SCALE: dict[str, type[Normal] | type[Laplace]] = {cls.family: cls for cls in (Normal, Laplace)}


def location_scale(family: str, loc: Any, scale: Any, df: Any = None) -> Distribution:
    """The distribution a metrics ``family`` names: ``"gaussian"`` (scale a standard deviation; 0 gives a
    point mass), ``"laplace"`` (scale ``b``) or ``"student_t"`` (scale ``s``, degrees of freedom ``df``)."""
    if family == "student_t":
        return StudentT(loc, scale, df)
    return LOCATION_SCALE[family](loc, scale)
