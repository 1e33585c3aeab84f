"""Adversarial training: the fast gradient sign method (FGSM) and virtual adversarial training (VAT).

Both act on a batch ``x`` of shape ``(N, ...)`` and on per-example functions of it; neither assumes
the inputs lie in [0, 1] and neither clamps. ``eps`` is absolute, or, with ``relative=True``, a fraction
of each input feature's range in the training data (the paper: 1% of the range); :func:`input_scale`
gives the per-feature multiplier.

FGSM (Goodfellow et al.; the paper's section 2.3):
    x' = x + eps * sign(grad_x loss(x, y)),   objective (loss(x, y) + loss(x', y)) / 2.
VAT (Miyato et al.), which needs no labels:
    r = argmax_{||r|| <= eps} KL(p(.|x) || p(.|x + r)), found by power iteration,
    objective loss(x, y) + weight * KL(p(.|x) || p(.|x + r)).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

PerExample = Callable[[Array], Array]
LossFn = Callable[[Array, Array], Array]  # (outputs, y) -> per-example loss (N,) or (N, slots)
KL = Callable[[Array, Array], Array]  # (outputs_p, outputs_q) -> (N,)


def _check_eps(eps: float) -> None:
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"adversarial eps must be a finite number >= 0, got {eps}")


@dataclasses.dataclass(frozen=True)
class FGSM:
    """Fast gradient sign training. ``eps``: step per input coordinate; ``relative``: eps is a fraction of
    each feature's training range (the paper uses ``FGSM(0.01, relative=True)``)."""

    eps: float = 0.01
    relative: bool = True

    def __post_init__(self) -> None:
        _check_eps(self.eps)

    def objective(
        self,
        loss_fn: LossFn,
        predict: PerExample,
        x: Array,
        y: Array,
        *,
        eps: Array | float | None = None,
        scale: Array | float = 1.0,
        outputs: Array | None = None,
        key: Array | None = None,
        kl: KL | None = None,
    ) -> Array:
        """Per-example ``(loss(x, y) + loss(x', y)) / 2`` with ``x' = x + eps * scale * sign(grad_x loss)``.

        Args:
          loss_fn: ``(outputs, y) -> (N,)`` per-example loss (``(N, slots)`` for slotted methods).
          predict: ``x -> outputs`` at the current parameters.
          x: ``(N, ...)`` inputs; y: their labels or targets.
          eps: the step; default ``self.eps``. The trainer passes it as an array, so one compiled program
            serves every eps.
          scale: per-feature multiplier of eps (:func:`input_scale`), broadcastable to ``x``.
          outputs: ``predict(x)`` when the caller already has it (its clean loss is reused).
          key, kl: unused; VAT's, accepted so the trainer calls both objectives alike.
        Returns:
          The per-example objective, shaped like ``loss_fn``'s result; ``x'`` is a constant for gradients.
        """
        del key, kl
        eps = self.eps if eps is None else eps
        clean = loss_fn(predict(x) if outputs is None else outputs, y)
        x_adv = fgsm_perturb(lambda inputs: loss_fn(predict(inputs), y), x, eps * scale)
        return 0.5 * (clean + loss_fn(predict(x_adv), y))


@dataclasses.dataclass(frozen=True)
class VAT:
    """Virtual adversarial training. ``eps``: L2 radius of the perturbation (in range units when
    ``relative``); ``xi``: finite-difference step of the power iteration; ``weight``: multiplier of the
    KL term added to the loss. Miyato et al. use ``xi = 1e-6``; in float32 the KL at that distance is
    mostly rounding error (the direction found had a median cosine of 0.57 with the true one on a small
    MLP, against 0.98 at ``xi = 1e-3``), hence the larger default."""

    eps: float = 0.01
    relative: bool = True
    xi: float = 1e-3
    iterations: int = 1
    weight: float = 1.0

    def __post_init__(self) -> None:
        _check_eps(self.eps)
        if self.xi <= 0 or self.iterations < 1 or self.weight < 0:
            raise ValueError(
                f"VAT needs xi > 0, iterations >= 1 and weight >= 0, got xi={self.xi}, "
                f"iterations={self.iterations}, weight={self.weight}"
            )

    def objective(
        self,
        loss_fn: LossFn,
        predict: PerExample,
        x: Array,
        y: Array,
        *,
        eps: Array | float | None = None,
        scale: Array | float = 1.0,
        outputs: Array | None = None,
        key: Array | None = None,
        kl: KL | None = None,
    ) -> Array:
        """Per-example ``loss(x, y) + weight * KL(p(.|x) || p(.|x + r_adv))`` (see :func:`vat_divergence`).

        Args:
          loss_fn, predict, x, y, outputs: as :meth:`FGSM.objective`.
          eps: the L2 radius; default ``self.eps`` (an array in the trainer: one program for every eps).
          scale: per-feature units of the radius (:func:`input_scale`).
          key: PRNG key of the power iteration's random start (required).
          kl: the head's ``kl(outputs_p, outputs_q) -> (N,)`` (required).
        """
        if key is None or kl is None:
            raise ValueError("VAT.objective needs the PRNG key and the head's kl")
        outputs = predict(x) if outputs is None else outputs
        divergence = vat_divergence(predict, kl, x, outputs, key, self, scale, eps=eps)
        return loss_fn(outputs, y) + self.weight * divergence


Adversarial = FGSM | VAT


def get_adversarial(adversarial: str | Adversarial | None, eps: float | None = None) -> Adversarial | None:
    """``None``/``"none"``, ``"fgsm"``, ``"vat"`` (with ``eps`` relative, default 0.01) or an instance.

    ``eps`` overrides the instance's eps; it is checked even when adversarial training is off (and then
    unused), so a negative or NaN eps never passes silently."""
    if eps is not None:
        _check_eps(eps)
    if adversarial is None or isinstance(adversarial, (FGSM, VAT)):
        if eps is not None and adversarial is not None:
            return dataclasses.replace(adversarial, eps=eps)
        return adversarial
    kinds = {"none": None, "fgsm": FGSM, "vat": VAT}
    if adversarial not in kinds:
        raise ValueError(f"unknown adversarial training {adversarial!r}; choose one of {sorted(kinds)}")
    kind = kinds[adversarial]
    if kind is None:
        return None
    return kind() if eps is None else kind(eps=eps)


def input_scale(x: np.ndarray, relative: bool) -> np.ndarray:
    """Per-feature multiplier of eps: the range ``max - min`` of each feature of the training inputs
    ``x`` (``(N, D)``) when ``relative``, else ones. Returns ``(D,)`` float32."""
    if relative:
        return (np.max(x, axis=0) - np.min(x, axis=0)).astype(np.float32)
    return np.ones(x.shape[1:], np.float32)


def fgsm_perturb(loss_fn: PerExample, x: Array, eps: Array | float) -> Array:
    """``x + eps * sign(grad_x sum(loss_fn(x)))``: the fast-gradient-sign adversarial inputs.

    Args:
      loss_fn: ``(N, ...) -> (N,)`` per-example loss at fixed parameters and labels.
      x: ``(N, ...)`` inputs.
      eps: scalar or per-feature array broadcastable to ``x``.
    Returns:
      ``(N, ...)``, treated as a constant by gradients (the sign's derivative is zero wherever it exists).
    """
    grad = jax.grad(lambda inputs: jnp.sum(loss_fn(inputs)))(x)
    return jax.lax.stop_gradient(x + eps * jnp.sign(grad))


def _unit(d: Array) -> Array:
    """Each example's direction scaled to unit L2 norm over its feature axes."""
    axes = tuple(range(1, d.ndim))
    norm = jnp.sqrt(jnp.sum(jnp.square(d), axis=axes, keepdims=True))
    return d / jnp.maximum(norm, 1e-12)


def vat_perturbation(
    divergence: PerExample,
    x: Array,
    key: Array,
    *,
    eps: Array | float,
    xi: float = 1e-3,
    iterations: int = 1,
    scale: Array | float = 1.0,
) -> Array:
    """The virtual adversarial perturbation ``r`` (``(N, ...)``), by power iteration.

    Args:
      divergence: ``r -> (N,)``, KL(p(.|x) || p(.|x + r)) with p(.|x) held fixed.
      x: ``(N, ...)`` inputs (only their shape and dtype are used).
      key: PRNG key for the random start.
      eps: L2 radius of ``r`` per example, measured after dividing by ``scale``.
      scale: per-feature units (the training range for relative eps).
    """
    d = jax.random.normal(key, x.shape, x.dtype)
    for _ in range(iterations):
        # The gradient at a small step xi along d is, to first order, the Hessian times d: one step of
        # power iteration towards the divergence's most sensitive direction (in range units).
        d = jax.grad(lambda z: jnp.sum(divergence(scale * z)))(xi * _unit(d))
    return jax.lax.stop_gradient(scale * eps * _unit(d))


def vat_divergence(
    predict: Callable[[Array], Array],
    kl: Callable[[Array, Array], Array],
    x: Array,
    clean_outputs: Array,
    key: Array,
    config: VAT,
    scale: Array | float = 1.0,
    *,
    eps: Array | float | None = None,
) -> Array:
    """Per-example KL(p(.|x) || p(.|x + r_adv)), ``(N,)``, the VAT regulariser (no labels needed).

    Args:
      predict: ``x -> outputs`` at the current parameters.
      kl: the head's ``kl(outputs_p, outputs_q) -> (N,)``.
      clean_outputs: ``predict(x)``, held fixed as the target distribution.
      eps: the radius, default ``config.eps`` (an array when traced, so eps is not part of the program).
    """
    target = jax.lax.stop_gradient(clean_outputs)
    divergence = lambda r: kl(target, predict(x + r))  # noqa: E731
    r = vat_perturbation(
        divergence,
        x,
        key,
        eps=config.eps if eps is None else eps,
        xi=config.xi,
        iterations=config.iterations,
        scale=scale,
    )
    return divergence(r)
