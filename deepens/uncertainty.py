"""Uncertainty measures and their decomposition into data and knowledge parts (Malinin et al.).

Classification, with H the Shannon entropy in nats and members on the leading axis:

- total     = H(mean_m p_m)                 entropy of the mean (the ensemble's predictive entropy)
- data      = mean_m H(p_m)                 mean of the entropies (expected, aleatoric)
- knowledge = total - data = mean_m KL(p_m || mean p)
            = mutual information between y and the member = Jensen-Shannon divergence of the members.

Regression, with each member a distribution of mean mu_m and variance var_m:

- aleatoric = mean_m var_m,  epistemic = var_m(mu_m),  total = aleatoric + epistemic (the mixture variance).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array


class CategoricalUncertainty(NamedTuple):
    """Per-example uncertainty of a classifier ensemble, in nats; each ``(...)``."""

    total: Array
    data: Array
    knowledge: Array


class VarianceUncertainty(NamedTuple):
    """Per-example variance decomposition of a regression ensemble, in squared target units."""

    total: Array
    aleatoric: Array
    epistemic: Array


def _plogp(p: Array) -> Array:
    # 0 log 0 = 0, and the where keeps NaN out of gradients at p = 0.
    safe = jnp.where(p > 0, p, 1.0)
    return jnp.where(p > 0, p * jnp.log(safe), 0.0)


def entropy(probs: Array, axis: int = -1) -> Array:
    """Shannon entropy in nats of probability vectors along ``axis``; ``0 log 0 = 0``."""
    return -jnp.sum(_plogp(probs), axis=axis)


def categorical_uncertainty(member_probs: Array) -> CategoricalUncertainty:
    """Total, data and knowledge uncertainty from the members' class probabilities.

    Args:
      member_probs: ``(M, ..., K)``.
    Returns:
      ``CategoricalUncertainty`` of arrays ``(...)``. Knowledge is computed as the mean KL divergence
      of the members from their mean, a sum of non-negative terms, rather than as a difference of
      entropies that could round below zero; ``total = data + knowledge`` holds to rounding.
    """
    mean_probs = jnp.mean(member_probs, axis=0)
    total = entropy(mean_probs)
    data = jnp.mean(entropy(member_probs), axis=0)
    log_mean = jnp.log(jnp.where(mean_probs > 0, mean_probs, 1.0))
    # Where p_m > 0, the mean is > 0 too, so log_mean is finite wherever it is used.
    kl = jnp.sum(_plogp(member_probs) - jnp.where(member_probs > 0, member_probs * log_mean, 0.0), axis=-1)
    knowledge = jnp.maximum(jnp.mean(kl, axis=0), 0.0)
    return CategoricalUncertainty(total=total, data=data, knowledge=knowledge)


def variance_uncertainty(member_means: Array, member_variances: Array) -> VarianceUncertainty:
    """Aleatoric (mean of variances) and epistemic (variance of means) parts of the mixture variance.

    Args:
      member_means, member_variances: ``(M, ...)``.
    Returns:
      ``VarianceUncertainty`` of arrays ``(...)``; ``total = aleatoric + epistemic``.
    """
    aleatoric = jnp.mean(member_variances, axis=0)
    epistemic = jnp.var(member_means, axis=0)
    return VarianceUncertainty(total=aleatoric + epistemic, aleatoric=aleatoric, epistemic=epistemic)
