"""Proper scoring rules (and two non-probabilistic baselines) as per-example functions.

Every function returns one value per example and leaves the reduction to the caller, as optax does:
the training objective is the (weighted) mean. Distribution parameters are given explicitly (a mean and a
*standard deviation* for the Gaussian, a location and a scale ``b`` for the Laplace), so a reader never
has to guess whether a number is a variance or a standard deviation.

The regression rules compute in the arguments' own array module (NumPy in, NumPy out, e.g. float64 for
the metrics; JAX arrays or tracers in, JAX out). Shapes: the regression rules act elementwise and return
the broadcast shape of their arguments (the caller sums over target dimensions); the classification rules take logits ``(..., K)`` and integer labels
``(...)`` and return ``(...)``. Mismatched shapes raise ``ValueError``; shapes are static under ``jit``,
so the check costs nothing at run time.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def namespace(*arrays: Any) -> ModuleType:
    """The array module for these arguments: ``jax.numpy`` if any is a JAX array (or a tracer inside a
    transformation), else ``numpy``. The regression rules below compute in it, so the metrics can call
    them in float64 on the host and training calls them on traced float32 arrays."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _same_shape(name: str, **arrays: ArrayLike) -> None:
    shapes = {key: jnp.shape(value) for key, value in arrays.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
        raise ValueError(f"{name}: arguments must have the same shape, got {described}")


def _check_labels(name: str, logits: Array, labels: Array) -> None:
    if jnp.ndim(logits) < 1:
        raise ValueError(f"{name}: logits must have a class axis, got shape {jnp.shape(logits)}")
    if jnp.shape(logits)[:-1] != jnp.shape(labels):
        raise ValueError(
            f"{name}: labels shape {jnp.shape(labels)} must equal logits shape without the class axis "
            f"{jnp.shape(logits)[:-1]}"
        )


def gaussian_nll(mean: ArrayLike, std: ArrayLike, y: ArrayLike) -> Array:
    """Negative log-density of ``y`` under N(mean, std**2): ``0.5 log(2 pi std^2) + (y - mean)^2 / (2 std^2)``.

    Args:
      mean, std, y: arrays of one shape; ``std`` is a standard deviation (> 0), not a variance.
    Returns:
      Elementwise NLL, same shape as the arguments, in nats.
    """
    xp = namespace(mean, std, y)
    # NumPy or JAX arrays (as the inputs), under new names: the parameters' ArrayLike has no arithmetic
    mu, sigma, target = xp.asarray(mean), xp.asarray(std), xp.asarray(y)
    _same_shape("gaussian_nll", mean=mu, std=sigma, y=target)
    z = (target - mu) / sigma
    return 0.5 * _LOG_2PI + xp.log(sigma) + 0.5 * xp.square(z)


def beta_gaussian_nll(mean: ArrayLike, std: ArrayLike, y: ArrayLike, *, beta: float) -> Array:
    """beta-NLL (Seitzer et al., ICLR 2022): the Gaussian NLL weighted by ``stop_gradient(std**(2 beta))``.

    The weight rescales each example's gradient so that points the network has given a large variance are
    not ignored when fitting the mean (the NLL's gradient in the mean is ``(mean - y) / std^2``; beta-NLL's
    is ``(mean - y) std^(2 beta - 2)``). ``beta = 0`` is the NLL, ``beta = 1`` gives the mean the MSE's
    gradient. The weight is a constant to differentiation, so the loss *value* is not a density.

    Args:
      mean, std, y: arrays of one shape; ``std`` is a standard deviation (> 0).
      beta: in ``[0, 1]``.
    Returns:
      Elementwise weighted NLL, same shape as the arguments.
    """
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta_gaussian_nll: beta must be in [0, 1], got {beta}")
    xp = namespace(mean, std, y)
    std = xp.asarray(std)
    weight = std ** (2.0 * beta)
    weight = jax.lax.stop_gradient(weight) if xp is jnp else weight
    return gaussian_nll(mean, std, y) * weight


def laplace_nll(loc: ArrayLike, scale: ArrayLike, y: ArrayLike) -> Array:
    """Negative log-density of ``y`` under Laplace(loc, scale): ``log(2 b) + |y - loc| / b``.

    Args:
      loc, scale, y: arrays of one shape; ``scale`` is ``b`` (> 0); the variance is ``2 b^2``.
    Returns:
      Elementwise NLL, same shape as the arguments, in nats.
    """
    xp = namespace(loc, scale, y)
    mu, b, target = xp.asarray(loc), xp.asarray(scale), xp.asarray(y)
    _same_shape("laplace_nll", loc=mu, scale=b, y=target)
    return _LOG_2 + xp.log(b) + xp.abs(target - mu) / b


def categorical_nll(logits: ArrayLike, labels: ArrayLike) -> Array:
    """Softmax cross-entropy ``-log_softmax(logits)[label]`` (exact even when the logits are huge, where
    ``logsumexp(logits) - logits[label]`` would lose ``eps * max|logit|``).

    Args:
      logits: ``(..., K)`` unnormalised log-probabilities.
      labels: ``(...)`` integers in ``[0, K)``.
    Returns:
      ``(...)`` NLL per example in nats (summed over classes, not averaged over them).
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    _check_labels("categorical_nll", logits, labels)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def brier_score(logits: ArrayLike, labels: ArrayLike) -> Array:
    """Brier score summed over classes: ``sum_k (softmax(logits)_k - onehot(label)_k)^2``, in [0, 2].

    The paper reports this divided by the number of classes K; see
    :func:`deepens.metrics.brier_per_class` for that convention.

    Args:
      logits: ``(..., K)``.
      labels: ``(...)`` integers in ``[0, K)``.
    Returns:
      ``(...)`` per example.
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    _check_labels("brier_score", logits, labels)
    probs = jax.nn.softmax(logits, axis=-1)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=probs.dtype)
    return jnp.sum(jnp.square(probs - onehot), axis=-1)


def squared_error(prediction: ArrayLike, y: ArrayLike) -> Array:
    """``(prediction - y)^2`` elementwise: the MSE baseline, which gives no uncertainty of its own."""
    xp = namespace(prediction, y)
    guess, target = xp.asarray(prediction), xp.asarray(y)
    _same_shape("squared_error", prediction=guess, y=target)
    return xp.square(guess - target)


def absolute_error(prediction: ArrayLike, y: ArrayLike) -> Array:
    """``|prediction - y|`` elementwise: the L1 baseline."""
    xp = namespace(prediction, y)
    guess, target = xp.asarray(prediction), xp.asarray(y)
    _same_shape("absolute_error", prediction=guess, y=target)
    return xp.abs(guess - target)
