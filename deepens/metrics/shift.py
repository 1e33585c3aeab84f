"""How a classifier's accuracy, calibration and uncertainty change as its inputs drift (Ovadia et al. 2019).

:func:`shift_curve` applies each shift of :mod:`deepens.data.shift` to the same test images, asks the
model for its prediction, and scores it with the metrics of :mod:`deepens.metrics.classification`.
Works with any model: ``predict_fn`` may return class probabilities ``(N, K)``, member probabilities
``(M, N, K)``, or an object with ``member_probs`` (such as
:class:`deepens.prediction.ClassificationPrediction`, whose exact log-probabilities then give the NLL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from deepens.data import shift as shift_data
from deepens.metrics.classification import (
    accuracy,
    brier_per_class,
    brier_summed,
    categorical_nll,
    expected_calibration_error,
)
from deepens.uncertainty import categorical_uncertainty

RECORD_FIELDS = (
    "kind",
    "intensity",
    "n",
    "accuracy",
    "nll",
    "brier",
    "brier_per_class",
    "ece",
    "mean_confidence",
    "entropy",
    "knowledge",
)


def _member_probs(name: str, output: Any) -> np.ndarray:
    """``(M, N, K)`` member probabilities of a prediction; M = 1 for a single distribution ``(N, K)``."""
    probs = output.member_probs if hasattr(output, "member_probs") else output
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3:
        raise ValueError(f"{name}: predict_fn must return (N, K) or (M, N, K) probabilities, got shape {p.shape}")
    return p


def _score(labels: np.ndarray, output: Any, bins: int) -> dict[str, float]:
    member_probs = _member_probs("shift_curve", output)
    probs = member_probs.mean(axis=0)
    if probs.shape[0] != len(labels):
        raise ValueError(f"shift_curve: predict_fn returned {probs.shape[0]} predictions for {len(labels)} labels")
    if hasattr(output, "log_prob"):
        # log mean_m p_m(y) from the logits: finite where a float64 probability would round to 0.
        nll = -np.asarray(output.log_prob(labels), dtype=np.float64)
    else:
        nll = categorical_nll(labels, probs=probs)
    uncertainty = categorical_uncertainty(member_probs)
    return {
        "n": len(labels),
        "accuracy": accuracy(labels, probs),
        "nll": float(np.mean(nll)),
        "brier": float(np.mean(brier_summed(labels, probs))),
        "brier_per_class": float(np.mean(brier_per_class(labels, probs))),
        "ece": expected_calibration_error(labels, probs, bins=bins),
        "mean_confidence": float(np.mean(probs.max(axis=1))),
        "entropy": float(np.mean(np.asarray(uncertainty.total, dtype=np.float64))),
        "knowledge": float(np.mean(np.asarray(uncertainty.knowledge, dtype=np.float64))),
    }


def _check_shifts(shifts: Any) -> list[tuple[str, Any]]:
    try:
        pairs = [tuple(s) for s in shifts]
    except TypeError:
        raise ValueError("shift_curve: shifts must be a sequence of (kind, intensity) pairs") from None
    if not pairs:
        raise ValueError("shift_curve: shifts is empty")
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"shift_curve: each shift must be a (kind, intensity) pair, got {pair!r}")
        try:
            shift_data.check_shift(*pair)
        except ValueError as error:
            raise ValueError(f"shift_curve: {error}") from None
    return pairs


def shift_curve(
    predict_fn: Callable[[np.ndarray], Any],
    images: Any,
    labels: Any,
    *,
    shifts: Sequence[tuple[str, float]],
    seed: int = 0,
    bins: int = 15,
) -> list[dict[str, Any]]:
    """Score ``predict_fn`` on ``images`` under each shift, in the order given.

    Args:
      predict_fn: shifted images (the shape of ``images``) -> class probabilities ``(N, K)``, member
        probabilities ``(M, N, K)``, or an object with ``member_probs (M, N, K)`` (and optionally
        ``log_prob(labels) -> (N,)``, used for the NLL).
      images: ``(N, H, W)`` or ``(N, H * W)`` floats in [0, 1].
      labels: ``(N,)`` integer classes.
      shifts: ``(kind, intensity)`` pairs: ``("rotate", degrees)``, ``("translate", pixels)`` or
        ``(corruption, 0..5)`` for a corruption of :data:`deepens.data.shift.CORRUPTIONS`.
      seed: randomness of the noisy corruptions (the same for every shift, so results repeat).
      bins: equal-width bins of the ECE.

    Returns:
      One dict per shift with :data:`RECORD_FIELDS`: ``accuracy``; ``nll`` in nats; ``brier`` the Brier
      score summed over classes, in [0, 2] (Ovadia et al.'s convention) and ``brier_per_class`` it
      divided by K (Lakshminarayanan et al.'s); ``ece`` (equal-width bins); ``mean_confidence`` (the
      largest averaged probability); ``entropy`` the mean predictive entropy and ``knowledge`` the mean
      mutual information between label and member, both in nats (knowledge is 0 for a single
      distribution).
    """
    pairs = _check_shifts(shifts)
    y = np.asarray(labels)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or np.all(y == np.round(y))):
        raise ValueError(f"shift_curve: labels must be 1-D integer classes, got shape {y.shape}")
    y = y.astype(np.int64)
    x = np.asarray(images)
    if len(x) != len(y):
        raise ValueError(f"shift_curve: {len(x)} images but {len(y)} labels")
    records = []
    for kind, intensity in pairs:
        shifted = shift_data.apply_shift(kind, x, intensity, seed=seed)
        amount = intensity.item() if isinstance(intensity, np.generic) else intensity
        record: dict[str, Any] = {"kind": kind, "intensity": amount}
        record.update(_score(y, predict_fn(shifted), bins))
        records.append(record)
    return records
