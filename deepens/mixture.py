"""An ensemble's prediction is the uniform mixture of its members: p(y|x) = (1/M) sum_m p_m(y|x).

:class:`UniformMixture` wraps a distribution of :mod:`deepens.distributions` whose parameters carry the
members on a leading axis of length ``M``; the functions below take member quantities stacked the same way.
Like the distributions, it computes in JAX for JAX parameters and in NumPy (float64 for the metrics) for
NumPy ones, and it is a pytree, so one compiled program can take it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from deepens import distributions, validation
from deepens.distributions import Distribution
from deepens.heads import Head


def mixture_probs(member_probs: Array) -> Array:
    """Classification: the average of the members' probabilities (not of their logits).

    ``(M, ..., K) -> (..., K)``.
    """
    return jnp.mean(member_probs, axis=0)


def mixture_log_prob(member_log_probs: Any) -> Any:
    """Exact log-density of the mixture: ``logsumexp_m log p_m - log M``. ``(M, ...) -> (...)``."""
    _, special = distributions.namespace(member_log_probs)
    return special.logsumexp(member_log_probs, axis=0) - math.log(member_log_probs.shape[0])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class UniformMixture:
    """The uniform mixture of the members of ``members`` (parameters ``(M, ...)``).

    Attributes:
      members: a location-scale, Student-t, point or categorical distribution with the members on the
        leading axis.
    """

    members: Distribution

    def _xp(self) -> Any:
        return self.members._xp()[0]

    @property
    def num_members(self) -> int:
        return int(self._xp().shape(self.members.mean)[0])

    @property
    def mean(self) -> Any:
        """``mean_m mu_m``, ``(...)``."""
        return self._xp().mean(self.members.mean, axis=0)

    @property
    def variance(self) -> Any:
        """Moment-matched variance by the law of total variance: the mean of the members' variances
        (aleatoric) plus the variance of their means (epistemic), ``(...)``."""
        xp = self._xp()
        return xp.mean(self.members.variance, axis=0) + xp.var(self.members.mean, axis=0)

    @property
    def stddev(self) -> Any:
        return self._xp().sqrt(self.variance)

    @property
    def probs(self) -> Any:
        """Categorical members: the average of their probabilities (not of their logits), ``(..., K)``."""
        members = self.members
        assert isinstance(members, distributions.Categorical), "probs needs categorical members"
        return self._xp().mean(members.probs, axis=0)

    def log_prob(self, y: Any, *, joint: bool = False) -> Any:
        """Exact log-density ``logsumexp_m log p_m(y) - log M``.

        Args:
          y: broadcast against one member's shape ``(...)`` (class labels for categorical members).
          joint: ``False``: elementwise, each coordinate's marginal mixture. ``True``: the density of the
            whole last axis (several targets; members independent across it), ``(...)`` without it.
        """
        xp = self._xp()
        member_log_probs = self.members.log_prob(xp.asarray(y)[None])
        if joint:
            # A coordinate of probability zero makes the row's density zero, even beside a point mass's +inf.
            impossible = xp.any(member_log_probs == -xp.inf, axis=-1)
            member_log_probs = xp.where(impossible, -xp.inf, xp.sum(member_log_probs, axis=-1))
        return mixture_log_prob(member_log_probs)

    def cdf(self, y: Any) -> Any:
        """The average of the members' CDFs at ``y``, elementwise."""
        return self._xp().mean(self.members.cdf(self._xp().asarray(y)[None]), axis=0)

    def survival(self, y: Any) -> Any:
        """``P(Y > y)``, the average of the members' survival functions, elementwise."""
        return self._xp().mean(self.members.survival(self._xp().asarray(y)[None]), axis=0)

    def _bisect(self, member_q: Any, below: Callable[[Any], Any], iterations: int) -> Any:
        """Bisection between the smallest and the largest member quantile; ``below(y)`` is True where the
        answer lies above ``y``. The mixture quantile lies in that bracket (at the smallest, every member's
        CDF is at most ``p``, so their average is too; likewise at the largest), which is exact for one
        member and tight for agreeing members; 60 halvings shrink it below float32 resolution."""
        xp = self._xp()
        low, high = xp.min(member_q, axis=0), xp.max(member_q, axis=0)

        def halve(_, bracket):
            low, high = bracket
            middle = 0.5 * (low + high)
            go_up = below(middle)
            return xp.where(go_up, middle, low), xp.where(go_up, high, middle)

        low, high = distributions.fori_loop(xp, iterations, halve, (low, high))
        return 0.5 * (low + high)

    def quantile(self, p: Any, *, iterations: int = 60) -> Any:
        """The ``y`` where the mixture's CDF is ``p`` in (0, 1), by bisection, elementwise."""
        return self._bisect(self.members.quantile(p), lambda y: self.cdf(y) < p, iterations)

    def upper_quantile(self, q: Any, *, iterations: int = 60) -> Any:
        """The ``y`` where ``P(Y > y) = q`` in (0, 1): the quantile at ``1 - q``, found on the survival
        function so that a small ``q`` stays exact (``1 - q`` rounds to 1 in float32 below 6e-8)."""
        return self._bisect(self.members.upper_quantile(q), lambda y: self.survival(y) > q, iterations)

    def interval(self, level: float) -> tuple[Any, Any]:
        """Central interval holding probability ``level``: ``(1 - level) / 2`` of the mass below ``lower``
        and as much above ``upper``. Both tails come from that small probability, never from
        ``(1 + level) / 2``, which rounds to 1 in float32 for levels within 6e-8 of 1."""
        level = validation.level(level, name="interval level")
        tail = 0.5 * (1.0 - level)
        dtype = self._xp().result_type(self.members.mean)
        if not float(np.asarray(tail, dtype)) > 0.0:
            raise ValueError(f"interval level {level} leaves a tail probability {tail} that {dtype} cannot represent")
        return self.quantile(tail), self.upper_quantile(tail)


def mixture_cdf(head: Head, member_outputs: Array, y: Array) -> Array:
    """Mixture CDF at ``y``: the average of the members' CDFs.

    Args:
      head: a regression head.
      member_outputs: ``(M, ..., O)`` raw outputs.
      y: ``(..., T)``.
    Returns:
      ``(..., T)``.
    """
    return UniformMixture(head.distribution(member_outputs)).cdf(y)


def mixture_quantile(head: Head, member_outputs: Array, p: float | Array, *, iterations: int = 60) -> Array:
    """Quantile of the mixture of ``head``'s members at probability ``p`` in (0, 1), ``(..., T)``
    (:meth:`UniformMixture.quantile`)."""
    return UniformMixture(head.distribution(member_outputs)).quantile(p, iterations=iterations)


def mixture_upper_quantile(head: Head, member_outputs: Array, q: float | Array, *, iterations: int = 60) -> Array:
    """The ``y`` where the mixture's upper tail ``P(Y > y)`` is ``q``, ``(..., T)``
    (:meth:`UniformMixture.upper_quantile`)."""
    return UniformMixture(head.distribution(member_outputs)).upper_quantile(q, iterations=iterations)


def mixture_interval(head: Head, member_outputs: Array, level: float) -> tuple[Array, Array]:
    """Central prediction interval holding probability ``level`` under the mixture of ``head``'s members
    (:meth:`UniformMixture.interval`). Returns ``(lower, upper)``, each ``(..., T)``."""
    return UniformMixture(head.distribution(member_outputs)).interval(level)
