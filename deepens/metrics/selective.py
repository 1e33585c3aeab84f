"""Selective prediction: answer only when confident enough.

Conventions as in :mod:`deepens.metrics.regression`: the truth first, ``correct (N,)`` booleans (an
example with no true class, such as an out-of-distribution input, is never correct), then
``confidence (N,)`` (larger = more sure; the maximum class probability, or minus any uncertainty).

- :func:`accuracy_vs_confidence`: accuracy on the examples whose confidence is at least a threshold tau,
  against tau (the paper's Figure 6, on MNIST test + NotMNIST).
- :func:`risk_coverage_curve` and :func:`aurc`: the error rate among the examples kept, against the
  fraction kept, when keeping the most confident first (Geifman & El-Yaniv 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from deepens.metrics import _checks


def _inputs(metric: str, correct: Any, confidence: Any) -> tuple[np.ndarray, np.ndarray]:
    ok = _checks.binary(metric, "correct", correct)
    return ok, _checks.scores(metric, "confidence", confidence, ok.size)


class SelectiveCurve(NamedTuple):
    """Accuracy against a confidence threshold, each ``(L,)``.

    Attributes:
      thresholds: tau.
      accuracy: fraction correct among examples with confidence >= tau (NaN where none is kept).
      coverage: fraction of all examples kept.
      count: examples kept.
    """

    thresholds: np.ndarray
    accuracy: np.ndarray
    coverage: np.ndarray
    count: np.ndarray  # pyright: ignore[reportIncompatibleMethodOverride]  # a field named count shadows tuple.count, as intended


def accuracy_vs_confidence(
    correct: Any, confidence: Any, thresholds: Sequence[float] | np.ndarray | None = None
) -> SelectiveCurve:
    """Accuracy on the examples with confidence >= tau, for each threshold tau (default 0, 0.05, ..., 0.95,
    the range of the paper's Figure 6). A well-calibrated model's curve rises with tau."""
    ok, conf = _inputs("accuracy_vs_confidence", correct, confidence)
    tau = (
        np.linspace(0.0, 0.95, 20)
        if thresholds is None
        else _checks.floats("accuracy_vs_confidence", "thresholds", thresholds, min_ndim=1)
    )
    if tau.ndim != 1:
        raise ValueError(f"accuracy_vs_confidence: thresholds must be 1-D, got shape {tau.shape}")
    order = np.sort(conf)
    sorted_ok = ok[np.argsort(conf, kind="stable")]
    # Kept examples are a suffix of the sorted confidences; suffix sums of "correct" count the hits.
    start = np.searchsorted(order, tau, side="left")
    hits_suffix = np.concatenate([np.cumsum(sorted_ok[::-1])[::-1], [0]])
    count = conf.size - start
    hits = hits_suffix[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
    return SelectiveCurve(thresholds=tau, accuracy=acc, coverage=count / conf.size, count=count)


class RiskCoverage(NamedTuple):
    """Risk against coverage at each distinct confidence, most confident first; each ``(L,)``.

    Attributes:
      coverage: fraction of examples kept (confidence >= threshold), increasing to 1.
      risk: error rate among the kept examples.
      thresholds: the confidence threshold of each point, decreasing.
    """

    coverage: np.ndarray
    risk: np.ndarray
    thresholds: np.ndarray


def risk_coverage_curve(correct: Any, confidence: Any) -> RiskCoverage:
    """The risk-coverage curve; tied confidences are kept or dropped together."""
    ok, conf = _inputs("risk_coverage_curve", correct, confidence)
    order = np.argsort(-conf, kind="stable")
    sorted_conf, sorted_wrong = conf[order], ~ok[order]
    last = np.append(np.flatnonzero(np.diff(sorted_conf) != 0), conf.size - 1)
    kept = last + 1
    errors = np.cumsum(sorted_wrong)[last]
    return RiskCoverage(coverage=kept / conf.size, risk=errors / kept, thresholds=sorted_conf[last])


def aurc(correct: Any, confidence: Any) -> float:
    """Area under the risk-coverage curve, each point weighted by the coverage it adds: with distinct
    confidences, the mean over k of the error rate among the k most confident examples. Lower is better;
    the best possible value depends on the error rate (errors all last)."""
    curve = risk_coverage_curve(correct, confidence)
    widths = np.diff(np.concatenate([[0.0], curve.coverage]))
    return float(np.sum(widths * curve.risk))
