"""One call that scores an ensemble's prediction with every metric of its kind."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from deepens.metrics.classification import classification_summary
from deepens.metrics.regression import regression_summary


def member_dfs(prediction: Any) -> np.ndarray | None:
    """A Student-t prediction's members' degrees of freedom, shaped like ``member_means``; else ``None``."""
    if prediction.head.name != "student_t":
        return None
    dfs = np.asarray(prediction.head.split(prediction.member_outputs)[2], np.float64)
    return dfs[..., 0] if prediction.squeeze else dfs


def member_locs_and_scales(prediction: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """A regression prediction's members as ``(locs, scales, family)`` for the regression metrics:
    Gaussian members give their standard deviations, Laplace members their ``b = sqrt(var / 2)``,
    Student-t members their scale ``s`` (variance ``s^2 df / (df - 2)``; degrees of freedom from
    :func:`member_dfs`), and point members (trained on MSE or L1) a Gaussian of scale 0."""
    locs = np.asarray(prediction.member_means, np.float64)
    variances = np.asarray(prediction.member_variances, np.float64)
    name = prediction.head.name
    if name == "student_t":
        scales = np.asarray(prediction.head.split(prediction.member_outputs)[1], np.float64)
        return locs, scales[..., 0] if prediction.squeeze else scales, "student_t"
    if name == "laplace":
        return locs, np.sqrt(variances / 2.0), "laplace"
    if name in ("gaussian", "point"):
        return locs, np.sqrt(variances), "gaussian"
    raise ValueError(f"evaluate: no regression metrics for a {name!r} head")


def evaluate(
    prediction: Any,
    y: Any,
    *,
    target_shift: float | np.ndarray = 0.0,
    target_scale: float | np.ndarray = 1.0,
    levels: Sequence[float] = (0.5, 0.9, 0.95),
    bins: int = 15,
) -> dict[str, float]:
    """Every metric for an ensemble's prediction against the truth, as plain floats.

    Args:
      prediction: a :class:`~deepens.prediction.RegressionPrediction` or
        :class:`~deepens.prediction.ClassificationPrediction`.
      y: regression targets (in the original units) or class labels ``(N,)``.
      target_shift, target_scale: for a model trained on standardised targets ``(y - m) / s``, pass
        ``m`` and ``s``: the members are mapped back to the original units before scoring, so NLL, RMSE
        and CRPS are comparable with published tables (the NLL gains ``log s``).
      levels: central-interval levels for coverage (regression).
      bins: calibration bins (classification).
    Returns:
      :func:`~deepens.metrics.regression.regression_summary` or
      :func:`~deepens.metrics.classification.classification_summary`.
    """
    if hasattr(prediction, "probs"):
        labels = np.asarray(y)
        return classification_summary(labels, np.asarray(prediction.probs, np.float64),
                                      nll=np.asarray(prediction.nll(labels), np.float64), bins=bins)
    locs, scales, family = member_locs_and_scales(prediction)
    degenerate = np.flatnonzero(np.ravel(np.all(scales == 0, axis=0) & np.all(locs == locs[:1], axis=0)))
    if len(degenerate):
        raise ValueError(
            f"evaluate: the prediction has zero variance in {len(degenerate)} of {np.size(locs[0])} rows (point "
            f"members, {'one member' if len(locs) == 1 else 'all agreeing'}), so its NLL and intervals are undefined; "
            "score an ensemble of 2 or more point members, or a distributional head"
        )
    scale = np.asarray(target_scale, np.float64)
    if np.any(scale <= 0):
        raise ValueError(f"evaluate: target_scale must be > 0, got {target_scale}")
    return regression_summary(y, locs * scale + np.asarray(target_shift, np.float64), scales * scale,
                              family=family, levels=levels, member_dfs=member_dfs(prediction))
