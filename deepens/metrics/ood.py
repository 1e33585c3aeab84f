"""Out-of-distribution detection from any uncertainty score: AUROC, AUPR and FPR at 95% TPR.

Conventions as in :mod:`deepens.metrics.regression`: the truth first, ``is_ood (N,)`` booleans (OOD is
the positive class), then ``score (N,)`` where **larger means more likely out of distribution**
(predictive entropy, mutual information, predictive variance; for a confidence such as the maximum
probability pass ``1 - confidence``). :func:`uncertainty_scores` gives these scores for a prediction, and
:func:`ood_detection` scores an in-distribution and an OOD set in one call.

Tied scores are handled as scikit-learn does: a tie between an OOD and an in-distribution example
counts one half in the AUROC, and precision-recall and ROC points are taken at distinct thresholds only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.stats import rankdata

from deepens.metrics import _checks


def _inputs(metric: str, is_ood: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    positive = _checks.binary(metric, "is_ood", is_ood)
    values = _checks.scores(metric, "score", score, positive.size)
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == positive.size:
        which = "out-of-distribution" if n_pos == 0 else "in-distribution"
        raise ValueError(f"{metric}: is_ood holds only one class (no {which} example); the metric is undefined")
    return positive, values


def _cumulative_counts(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when flagging every example with score >= t, at each distinct
    threshold t from the largest score down; returns ``(tp, fp, thresholds)``."""
    order = np.argsort(-score, kind="stable")
    sorted_score, sorted_positive = score[order], positive[order]
    # The last index of each run of equal scores: ties enter together.
    last = np.flatnonzero(np.diff(sorted_score) != 0)
    last = np.append(last, sorted_score.size - 1)
    tp = np.cumsum(sorted_positive)[last]
    fp = (last + 1) - tp
    return tp.astype(np.float64), fp.astype(np.float64), sorted_score[last]


def roc_curve(is_ood: Any, score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` at each distinct threshold, from flagging nothing (0, 0) to everything."""
    positive, values = _inputs("roc_curve", is_ood, score)
    tp, fp, thresholds = _cumulative_counts(positive, values)
    tpr = np.concatenate([[0.0], tp / positive.sum()])
    fpr = np.concatenate([[0.0], fp / (~positive).sum()])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def auroc(is_ood: Any, score: Any) -> float:
    """Area under the ROC curve: the probability that a random OOD example scores higher than a random
    in-distribution one (ties count 1/2), by the Mann-Whitney rank sum. 0.5 is chance, 1 perfect."""
    positive, values = _inputs("auroc", is_ood, score)
    ranks = rankdata(values)  # average ranks: a tie contributes one half
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def aupr(is_ood: Any, score: Any) -> float:
    """Area under the precision-recall curve with OOD as the positive class, as average precision:
    ``sum_t (R_t - R_{t-1}) P_t`` over distinct thresholds (no interpolation; scikit-learn's
    ``average_precision_score``). Chance level is the fraction of OOD examples."""
    positive, values = _inputs("aupr", is_ood, score)
    tp, fp, _ = _cumulative_counts(positive, values)
    precision = tp / (tp + fp)
    recall = tp / positive.sum()
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def fpr_at_tpr(is_ood: Any, score: Any, *, tpr: float = 0.95) -> float:
    """False-positive rate (in-distribution examples flagged) at the first threshold whose true-positive
    rate (OOD examples flagged) reaches ``tpr``. Lower is better."""
    if isinstance(tpr, bool) or not isinstance(tpr, (int, float, np.integer, np.floating)) or not 0.0 < tpr <= 1.0:
        raise ValueError(f"fpr_at_tpr: tpr must be a number in (0, 1], got {tpr!r}")
    fpr, tprs, _ = roc_curve(is_ood, score)
    return float(fpr[np.searchsorted(tprs, tpr - 1e-12, side="left")])


class OODResult(NamedTuple):
    auroc: float
    aupr: float
    fpr_at_95_tpr: float


def ood_detection(score_in: Any, score_out: Any) -> OODResult:
    """AUROC, AUPR (OOD positive) and FPR at 95% TPR from the scores of an in-distribution set and of an
    out-of-distribution set (each 1-D; larger = more likely OOD)."""
    a = _checks.floats("ood_detection", "score_in", score_in, min_ndim=1).ravel()
    b = _checks.floats("ood_detection", "score_out", score_out, min_ndim=1).ravel()
    is_ood = np.concatenate([np.zeros(a.size, bool), np.ones(b.size, bool)])
    score = np.concatenate([a, b])
    return OODResult(auroc(is_ood, score), aupr(is_ood, score), fpr_at_tpr(is_ood, score, tpr=0.95))


def uncertainty_scores(prediction: Any) -> dict[str, np.ndarray]:
    """The usual OOD scores of an ensemble prediction, each ``(N,)`` with larger = more uncertain.

    Classification (:class:`~deepens.prediction.ClassificationPrediction`): ``entropy`` (total, nats),
    ``mutual_information`` (knowledge uncertainty, nats), ``one_minus_max_probability``.
    Regression (:class:`~deepens.prediction.RegressionPrediction`): ``variance`` (total),
    ``epistemic_variance`` (spread of the member means), summed over targets.
    """
    if hasattr(prediction, "probs"):
        return {
            "entropy": np.asarray(prediction.uncertainty.total, np.float64),
            "mutual_information": np.asarray(prediction.uncertainty.knowledge, np.float64),
            "one_minus_max_probability": 1.0 - np.asarray(prediction.confidence, np.float64),
        }
    total = np.asarray(prediction.uncertainty.total, np.float64)
    epistemic = np.asarray(prediction.uncertainty.epistemic, np.float64)
    if total.ndim > 1:
        total, epistemic = total.sum(axis=-1), epistemic.sum(axis=-1)
    return {"variance": total, "epistemic_variance": epistemic}
