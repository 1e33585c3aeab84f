"""An ensemble's prediction is the uniform mixture of its members: p(y|x) = (1/M) sum_m p_m(y|x).

All functions take member quantities stacked on a leading axis of length ``M``.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
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


def _bisect(member_q: Array, below: Callable[[Array], Array], iterations: int) -> Array:
    """Bisection between the smallest and the largest member quantile; ``below(y)`` is True where the
    answer lies above ``y``."""
    low, high = jnp.min(member_q, axis=0), jnp.max(member_q, axis=0)

    def halve(_, bracket):
        low, high = bracket
        middle = 0.5 * (low + high)
        go_up = below(middle)
        return jnp.where(go_up, middle, low), jnp.where(go_up, high, middle)

    low, high = jax.lax.fori_loop(0, iterations, halve, (low, high))
    return 0.5 * (low + high)


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
    return _bisect(member_q, lambda y: mixture_cdf(head, member_outputs, y) < p, iterations)


def mixture_upper_quantile(head: Head, member_outputs: Array, q: float | Array, *, iterations: int = 60) -> Array:
    """The ``y`` where the mixture's upper tail ``P(Y > y)`` is ``q`` in (0, 1): the quantile at ``1 - q``,
    found on the survival function so that a small ``q`` stays exact (``1 - q`` rounds to 1 in float32
    for ``q`` below 6e-8). Same bracket as :func:`mixture_quantile`. Returns ``(..., T)``."""
    member_q = head.upper_quantile(member_outputs, q)
    survival = lambda y: jnp.mean(head.survival(member_outputs, y[None]), axis=0)  # noqa: E731
    return _bisect(member_q, lambda y: survival(y) > q, iterations)


def mixture_interval(head: Head, member_outputs: Array, level: float) -> tuple[Array, Array]:
    """Central prediction interval holding probability ``level`` under the mixture: ``(1 - level) / 2``
    of the mass below ``lower`` and as much above ``upper``. Both tails are computed from that small
    probability, never from ``(1 + level) / 2``, which rounds to 1 in float32 for levels within 6e-8 of 1.
    Returns ``(lower, upper)``, each ``(..., T)``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    tail = 0.5 * (1.0 - level)
    if not float(np.asarray(tail, member_outputs.dtype)) > 0.0:
        raise ValueError(f"interval level {level} leaves a tail probability {tail} that {member_outputs.dtype} "
                         "cannot represent")
    return (
        mixture_quantile(head, member_outputs, tail),
        mixture_upper_quantile(head, member_outputs, tail),
    )
