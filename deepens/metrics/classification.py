"""Classification metrics: accuracy, NLL, the Brier score (both conventions), ECE, MCE and reliability data.

Conventions as in :mod:`deepens.metrics.regression`: the truth first, ``labels (N,)`` integers in
``[0, K)``, then ``probs (N, K)`` (an ensemble's averaged member probabilities, rows summing to 1);
per-example scores return ``(N,)``, summaries return floats. The lower-level calibration functions take
``correct (N,)`` booleans and ``confidence (N,)`` in [0, 1] instead, so they also serve inputs that have
no true class (out-of-distribution examples are simply never correct).

Two traps this module names explicitly:

- The Brier score ``sum_k (p_k - onehot_k)^2`` lies in [0, 2]; the paper reports it divided by K.
  :func:`brier_summed` and :func:`brier_per_class` are the two conventions, named so.
- A confidence of exactly 1.0 falls in the *last* equal-width bin, not in a phantom bin ``B``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy.stats import rankdata

from deepens.metrics import _checks

STRATEGIES = ("uniform", "quantile")


def accuracy(labels: Any, probs: Any) -> float:
    """Fraction of examples whose most probable class (the first, on ties) is the label."""
    y, p = _checks.labels_and_probs("accuracy", labels, probs)
    return float(np.mean(np.argmax(p, axis=1) == y))


def categorical_nll(labels: Any, *, probs: Any) -> np.ndarray:
    """``-log p_label`` per example, ``(N,)``, in nats (inf where the label has probability 0).

    For an ensemble, prefer the prediction's ``nll`` (``logsumexp`` of member log-softmax values), which
    stays finite where float32 probabilities underflow to 0; both agree elsewhere.
    """
    y, p = _checks.labels_and_probs("categorical_nll", labels, probs)
    with np.errstate(divide="ignore"):
        return -np.log(p[np.arange(len(y)), y])


def brier_summed(labels: Any, probs: Any) -> np.ndarray:
    """Brier score summed over classes, ``sum_k (p_k - onehot(label)_k)^2``, per example ``(N,)``, in
    [0, 2]. (scikit-learn's multiclass ``brier_score_loss`` is its mean.)"""
    y, p = _checks.labels_and_probs("brier_summed", labels, probs)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return np.sum(np.square(p - onehot), axis=1)


def brier_per_class(labels: Any, probs: Any) -> np.ndarray:
    """Brier score divided by the number of classes K, per example ``(N,)``, in [0, 2/K]: the convention
    of the Deep Ensembles paper (section 3.1, ``BS = K^-1 sum_k (t_k - p_k)^2``)."""
    _, p = _checks.labels_and_probs("brier_per_class", labels, probs)
    return brier_summed(labels, probs) / p.shape[1]


def correct_and_confidence(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``correct (N,)`` (argmax equals the label) and ``confidence (N,)`` (the largest probability)."""
    y, p = _checks.labels_and_probs("correct_and_confidence", labels, probs)
    return np.argmax(p, axis=1) == y, np.max(p, axis=1)


@dataclasses.dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data for B bins.

    Attributes:
      edges: ``(B + 1,)`` bin edges: ``0, 1/B, ..., 1`` for equal-width bins; for equal-mass bins, the
        smallest confidence in each bin, then 1.
      counts: ``(B,)`` examples per bin.
      confidence: ``(B,)`` mean confidence per bin (NaN where empty).
      accuracy: ``(B,)`` fraction correct per bin (NaN where empty).
      strategy: ``"uniform"`` (equal width) or ``"quantile"`` (equal mass).
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    strategy: str

    @property
    def gaps(self) -> np.ndarray:
        """``|accuracy - confidence|`` per bin (NaN where empty)."""
        return np.abs(self.accuracy - self.confidence)

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean gap, ``sum_b (n_b / N) |acc_b - conf_b|``."""
        filled = self.counts > 0
        return float(np.sum(self.counts[filled] * self.gaps[filled]) / np.sum(self.counts))

    @property
    def mce(self) -> float:
        """Maximum calibration error: the largest gap over non-empty bins."""
        return float(np.max(self.gaps[self.counts > 0]))


def _bin_index(confidence: np.ndarray, bins: int, strategy: str) -> np.ndarray:
    if strategy == "uniform":
        # floor(c B) puts c = 1.0 in bin B, which does not exist: clip it into the last bin.
        return np.minimum((confidence * bins).astype(np.int64), bins - 1)
    # Equal mass: bin by rank, with tied confidences kept together (rank of their first occurrence), so
    # the result does not depend on the order of the examples.
    first_rank = rankdata(confidence, method="min") - 1
    return (first_rank * bins) // confidence.size


# bins may always be this many, and more only with more examples than that (see reliability).
MIN_BIN_LIMIT = 10_000


def reliability(correct: Any, confidence: Any, *, bins: int = 15, strategy: str = "uniform") -> Reliability:
    """Bin the examples by confidence and compare accuracy with confidence in each bin.

    Args:
      correct: ``(N,)`` booleans (or 0/1).
      confidence: ``(N,)`` in [0, 1]; 0 falls in the first bin, 1 in the last.
      bins: B >= 1 (15 as in Guo et al. 2017 by default), at most max(N, MIN_BIN_LIMIT).
      strategy: ``"uniform"``: equal-width bins on [0, 1]; ``"quantile"``: equal-mass bins (sizes differ
        by at most one, except that tied confidences always share a bin).

    Where the edges go (other libraries differ, which moves the ECE by up to about 0.05 on small samples):

    - equal width: confidence ``c`` goes to bin ``floor(c B)``, so a confidence exactly on an inner edge
      ``k / B`` belongs to the *upper* bin ``k`` (scikit-learn's ``calibration_curve`` puts it in the lower
      one); ``c = 1.0`` goes to the last bin ``B - 1``, not to a phantom bin ``B`` (a deliberate fix).
    - equal mass: the example of rank ``r`` (0-based, ascending; tied confidences all take the rank of the
      first of them) goes to bin ``floor(r B / N)``, so when ``B`` does not divide ``N`` the larger bins
      sit where that floor puts them, not at the ends; the edges are the smallest confidence in each bin
      (scikit-learn interpolates percentiles instead).
    """
    metric = "reliability"
    ok = _checks.binary(metric, "correct", correct)
    conf = _checks.scores(metric, "confidence", confidence, ok.size)
    if np.any(conf < 0) or np.any(conf > 1):
        raise ValueError(f"{metric}: confidence must lie in [0, 1], got values in [{conf.min()}, {conf.max()}]")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"{metric}: bins must be an integer >= 1, got {bins!r}")
    limit = max(ok.size, MIN_BIN_LIMIT)  # more bins than examples are all but empty and only cost memory
    if bins > limit:
        raise ValueError(f"{metric}: bins must be at most max(examples, {MIN_BIN_LIMIT}) = {limit}, got {bins}")
    if strategy not in STRATEGIES:
        raise ValueError(f"{metric}: strategy must be one of {STRATEGIES}, got {strategy!r}")
    index = _bin_index(conf, bins, strategy)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=bins) / counts
        mean_acc = np.bincount(index, weights=ok.astype(np.float64), minlength=bins) / counts
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, bins + 1)
    else:
        lowest = np.full(bins, np.nan)
        np.fmin.at(lowest, index, conf)
        edges = np.append(lowest, 1.0)
    return Reliability(edges=edges, counts=counts, confidence=mean_conf, accuracy=mean_acc, strategy=strategy)


def reliability_diagram(labels: Any, probs: Any, *, bins: int = 15, strategy: str = "uniform") -> Reliability:
    """:func:`reliability` of the predicted class: correct = argmax is the label, confidence = max prob.

    ``bins`` may be at most the larger of the number of examples and 10,000 (more bins than that are
    all but empty and only cost memory); beyond it, a ValueError.
    """
    correct, confidence = correct_and_confidence(labels, probs)
    return reliability(correct, confidence, bins=bins, strategy=strategy)


def expected_calibration_error(labels: Any, probs: Any, *, bins: int = 15, strategy: str = "uniform") -> float:
    """ECE of the predicted class's confidence: ``sum_b (n_b / N) |acc_b - conf_b|``, in [0, 1]."""
    return reliability_diagram(labels, probs, bins=bins, strategy=strategy).ece


def maximum_calibration_error(labels: Any, probs: Any, *, bins: int = 15, strategy: str = "uniform") -> float:
    """MCE: the largest ``|acc_b - conf_b|`` over non-empty bins, in [0, 1]."""
    return reliability_diagram(labels, probs, bins=bins, strategy=strategy).mce


def classification_summary(labels: Any, probs: Any, *, nll: Any = None, bins: int = 15) -> dict[str, float]:
    """Every classification metric at once, as floats (means over examples).

    Keys: ``accuracy``, ``error``, ``nll``, ``brier_summed``, ``brier_per_class`` (the paper's),
    ``ece``, ``mce`` (equal width), ``ece_quantile``, ``mce_quantile`` (equal mass).

    Args:
      nll: optional per-example NLL ``(N,)`` computed more accurately from log-probabilities (an
        ensemble's ``prediction.nll(labels)``); default ``-log probs[label]``.
    """
    y, p = _checks.labels_and_probs("classification_summary", labels, probs)
    if nll is None:
        per_example_nll = categorical_nll(y, probs=p)
    else:
        per_example_nll = _checks.scores("classification_summary", "nll", nll, len(y))
    acc = accuracy(y, p)
    uniform = reliability_diagram(y, p, bins=bins, strategy="uniform")
    quantile = reliability_diagram(y, p, bins=bins, strategy="quantile")
    return {
        "accuracy": acc,
        "error": 1.0 - acc,
        "nll": float(np.mean(per_example_nll)),
        "brier_summed": float(np.mean(brier_summed(y, p))),
        "brier_per_class": float(np.mean(brier_per_class(y, p))),
        "ece": uniform.ece,
        "mce": uniform.mce,
        "ece_quantile": quantile.ece,
        "mce_quantile": quantile.mce,
    }
