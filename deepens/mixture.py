"""An ensemble's prediction is the uniform mixture of its members: p(y|x) = (1/M) sum_m p_m(y|x).

All functions take member quantities stacked on a leading axis of length ``M``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array

from deepens.heads import Head


def mixture_probs(member_probs: Array) -> Array:
    """Classification: the average of the members' probabilities (not of their logits).

    ``(M, ..., K) -> (..., K)``.
    """
    return jnp.mean(member_probs, axis=0)


def mixture_log_prob(member_log_probs: Array) -> Array:
    """Exact log-density of the mixture: ``logsumexp_m log p_m - log M``. ``(M, ...) -> (...)``."""
    return jax.nn.logsumexp(member_log_probs, axis=0) - math.log(member_log_probs.shape[0])


def mixture_cdf(head: Head, member_outputs: Array, y: Array) -> Array:
    """Mixture CDF at ``y``: the average of the members' CDFs.

    Args:
      head: a regression head with ``cdf``.
      member_outputs: ``(M, ..., O)`` raw outputs.
      y: ``(..., T)``.
    Returns:
      ``(..., T)``.
    """
    return jnp.mean(head.cdf(member_outputs, y[None]), axis=0)


def mixture_quantile(head: Head, member_outputs: Array, p: float | Array, *, iterations: int = 60) -> Array:
    """Quantile of the mixture at probability ``p`` in (0, 1), by bisection on its CDF.

    The mixture quantile lies between the smallest and the largest member quantile (at the smallest,
    every member's CDF is at most ``p``, so their average is too; likewise at the largest), which gives
    a bracket that is exact for one member and tight for agreeing members. 60 halvings shrink it below
    float32 resolution.

    Returns:
      ``(..., T)``.
    """
    member_q = head.quantile(member_outputs, p)
    low, high = jnp.min(member_q, axis=0), jnp.max(member_q, axis=0)

    def halve(_, bracket):
        low, high = bracket
        middle = 0.5 * (low + high)
        below = mixture_cdf(head, member_outputs, middle) < p
        return jnp.where(below, middle, low), jnp.where(below, high, middle)

    low, high = jax.lax.fori_loop(0, iterations, halve, (low, high))
    return 0.5 * (low + high)


def mixture_interval(head: Head, member_outputs: Array, level: float) -> tuple[Array, Array]:
    """Central prediction interval holding probability ``level`` under the mixture: the quantiles at
    ``(1 - level) / 2`` and ``(1 + level) / 2``. Returns ``(lower, upper)``, each ``(..., T)``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    tail = 0.5 * (1.0 - level)
    return (
        mixture_quantile(head, member_outputs, tail),
        mixture_quantile(head, member_outputs, 1.0 - tail),
    )
