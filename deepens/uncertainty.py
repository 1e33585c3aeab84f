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

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


class CategoricalUncertainty(NamedTuple):
    """Per-example uncertainty of a classifier ensemble, in nats; each ``(...)`` (float64 NumPy arrays
    from the scikit-learn estimators)."""

    total: Array | np.ndarray
    data: Array | np.ndarray
    knowledge: Array | np.ndarray


class VarianceUncertainty(NamedTuple):
    """Per-example variance decomposition of a regression ensemble, in squared target units (float64
    NumPy arrays from the scikit-learn estimators)."""

    total: Array | np.ndarray
    aleatoric: Array | np.ndarray
    epistemic: Array | np.ndarray


# Rows of probabilities must sum to 1 within this (as in deepens.metrics), or within a few rounding errors
# per class for low-precision dtypes, whichever is larger.
SUM_TOLERANCE = 1e-3


def _concrete(a: Any) -> bool:
    """Whether ``a`` holds values (not a tracer inside jit/grad/vmap, where no value can be checked)."""
    return not isinstance(a, jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]  # jax.core lacks stubs


@functools.partial(jax.jit, static_argnames=("axis",))
def _probability_stats(p: Array, axis: int) -> tuple[Array, Array, Array, Array]:
    # One small program and four scalars to the host, so checking a large device array stays cheap.
    finite = jnp.all(jnp.isfinite(p))
    return finite, jnp.min(p), jnp.max(p), jnp.max(jnp.abs(jnp.sum(p, axis=axis) - 1.0))


def check_probabilities(name: str, probs: Any, *, axis: int = -1, min_ndim: int = 1) -> Array:
    """``probs`` as a floating array of probability vectors along ``axis``; ValueError naming ``name`` if
    it holds NaN or inf, values outside [0, 1], or vectors that do not sum to 1 (within ``SUM_TOLERANCE``).

    Inside ``jit``/``grad``/``vmap`` the values are unknown: the array passes unchecked, and the functions
    of this module then propagate NaN rather than treating it as a zero probability.
    """
    if not _concrete(probs):
        return probs
    try:
        p = jnp.asarray(probs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array of probabilities ({err})") from None
    if not (jnp.issubdtype(p.dtype, jnp.floating) or jnp.issubdtype(p.dtype, jnp.integer) or p.dtype == bool):
        raise ValueError(f"{name} must hold real probabilities, got dtype {p.dtype}")
    if not jnp.issubdtype(p.dtype, jnp.floating):
        p = p.astype(jnp.float32)
    if p.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {p.shape}")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -p.ndim <= axis < p.ndim:
        raise ValueError(f"{name}: axis {axis!r} is out of range for shape {p.shape}")
    axis = int(axis) % p.ndim
    if p.shape[axis] == 0:
        raise ValueError(f"{name} has no classes along axis {axis} (shape {p.shape})")
    if p.size == 0:
        return p
    if isinstance(probs, jax.Array):
        stats = _probability_stats(p, axis)
    else:  # host input: check it on the host, with no program to compile for its shape
        host = np.asarray(probs, dtype=p.dtype)
        stats = (np.all(np.isfinite(host)), host.min(), host.max(), np.max(np.abs(host.sum(axis=axis) - 1.0)))
    finite, low, high, off = (float(v) for v in stats)
    if not finite:
        raise ValueError(f"{name} contains NaN or inf")
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{low}, {high}]")
    tolerance = max(SUM_TOLERANCE, 4.0 * p.shape[axis] * float(jnp.finfo(p.dtype).eps))
    if off > tolerance:
        raise ValueError(f"{name} must sum to 1 along axis {axis}, but a vector is off by {off:.3g}")
    return p


def _plogp(p: Array) -> Array:
    # 0 log 0 = 0, and the where keeps NaN out of gradients at p = 0. Only an exact zero is mapped to 0:
    # under jit, where nothing is checked, NaN (and a negative p) give NaN rather than a silent 0.
    safe = jnp.where(p == 0, 1.0, p)
    return jnp.where(p == 0, 0.0, p * jnp.log(safe))


def entropy(probs: Array, axis: int = -1) -> Array:
    """Shannon entropy in nats of probability vectors along ``axis``; ``0 log 0 = 0``.

    Raises ValueError for NaN/inf, values outside [0, 1] or vectors not summing to 1 (see
    :func:`check_probabilities`; unchecked, with NaN propagated, under ``jit``).
    """
    probs = check_probabilities("entropy: probs", probs, axis=axis)
    return _entropy(probs, axis)


@functools.partial(jax.jit, static_argnames=("axis",))
def _entropy(probs: Array, axis: int = -1) -> Array:
    return -jnp.sum(_plogp(probs), axis=axis)


def categorical_uncertainty(member_probs: Array | np.ndarray) -> CategoricalUncertainty:
    """Total, data and knowledge uncertainty from the members' class probabilities.

    Args:
      member_probs: ``(M, ..., K)``.
    Returns:
      ``CategoricalUncertainty`` of arrays ``(...)``. Knowledge is computed as the mean KL divergence
      of the members from their mean, a sum of non-negative terms, rather than as a difference of
      entropies that could round below zero; ``total = data + knowledge`` holds to rounding.
    Raises:
      ValueError: fewer than 2 dimensions, no member, or probabilities that are NaN/inf, outside [0, 1]
      or do not sum to 1 (see :func:`check_probabilities`; unchecked, with NaN propagated, under ``jit``).
    """
    member_probs = check_probabilities("categorical_uncertainty: member_probs", member_probs, min_ndim=2)
    if _concrete(member_probs) and member_probs.shape[0] == 0:
        raise ValueError("categorical_uncertainty: member_probs has no member (shape (0, ...))")
    return _categorical_uncertainty(member_probs)


@jax.jit
def _categorical_uncertainty(member_probs: Array) -> CategoricalUncertainty:
    mean_probs = jnp.mean(member_probs, axis=0)
    total = _entropy(mean_probs)
    data = jnp.mean(_entropy(member_probs), axis=0)
    log_mean = jnp.log(jnp.where(mean_probs == 0, 1.0, mean_probs))
    log_members = jnp.log(jnp.where(member_probs == 0, 1.0, member_probs))
    # Where p_m > 0, the mean is > 0 too, so log_mean is finite wherever it is used. p (log p - log mean)
    # rather than p log p - p log mean: the compiler may fuse the latter into a multiply-add that leaves
    # ~1e-9 where the member equals the mean, and one member must have exactly zero knowledge uncertainty.
    kl = jnp.sum(jnp.where(member_probs == 0, 0.0, member_probs * (log_members - log_mean)), axis=-1)
    knowledge = jnp.maximum(jnp.mean(kl, axis=0), 0.0)
    return CategoricalUncertainty(total=total, data=data, knowledge=knowledge)


def variance_uncertainty(member_means: Array, member_variances: Array) -> VarianceUncertainty:
    """Aleatoric (mean of variances) and epistemic (variance of means) parts of the mixture variance.

    Args:
      member_means, member_variances: ``(M, ...)``.
    Returns:
      ``VarianceUncertainty`` of arrays ``(...)``; ``total = aleatoric + epistemic``.
    Raises:
      ValueError: shapes that differ or have no member axis, no member, NaN/inf, or a negative variance
      (unchecked under ``jit``).
    """
    if _concrete(member_means) and _concrete(member_variances):
        member_means, member_variances = _check_moments(member_means, member_variances)
    return _variance_uncertainty(member_means, member_variances)


@jax.jit
def _variance_uncertainty(member_means: Array, member_variances: Array) -> VarianceUncertainty:
    aleatoric = jnp.mean(member_variances, axis=0)
    epistemic = jnp.var(member_means, axis=0)
    return VarianceUncertainty(total=aleatoric + epistemic, aleatoric=aleatoric, epistemic=epistemic)


def _check_moments(member_means: Any, member_variances: Any) -> tuple[Array, Array]:
    name = "variance_uncertainty"
    arrays = []
    for label, a in (("member_means", member_means), ("member_variances", member_variances)):
        try:
            arr = jnp.asarray(a)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: {label} must be numeric ({err})") from None
        if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
            raise ValueError(f"{name}: {label} must hold real numbers, got dtype {arr.dtype}")
        arrays.append(arr)
    means, variances = arrays
    if means.shape != variances.shape:
        raise ValueError(
            f"{name}: member_means {means.shape} and member_variances {variances.shape} must have one shape"
        )
    if means.ndim < 1 or means.shape[0] == 0:
        raise ValueError(f"{name}: the arrays need a leading member axis with at least one member, got {means.shape}")
    if means.size:
        if isinstance(member_means, jax.Array) or isinstance(member_variances, jax.Array):
            finite, lowest = (float(v) for v in _moment_stats(means, variances))
        else:  # host input: checked on the host, with no program to compile for its shape
            host_means, host_variances = np.asarray(member_means), np.asarray(member_variances)
            finite = np.all(np.isfinite(host_means)) and np.all(np.isfinite(host_variances))
            lowest = float(np.min(host_variances))
        if not finite:
            raise ValueError(
                f"{name}: member_means or member_variances contains NaN or inf (for finite inputs, "
                "the members' outputs overflowed or training diverged)"
            )
        if lowest < 0:
            raise ValueError(f"{name}: member_variances must be >= 0, got minimum {lowest}")
    return means, variances


@jax.jit
def _moment_stats(means: Array, variances: Array) -> tuple[Array, Array]:
    return jnp.all(jnp.isfinite(means)) & jnp.all(jnp.isfinite(variances)), jnp.min(variances)
