"""One call that scores an ensemble's prediction with every metric of its kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deepens import distributions
from deepens.metrics.classification import classification_summary
from deepens.metrics.regression import regression_summary


def member_dfs(prediction: Any) -> np.ndarray | None:
    """A Student-t prediction's members' degrees of freedom, shaped like ``member_means``; else ``None``."""
    members = prediction.member_distribution
    return np.asarray(members.df, np.float64) if isinstance(members, distributions.StudentT) else None


def member_locs_and_scales(prediction: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """A regression prediction's members as ``(locs, scales, family)`` for the regression metrics, read
    from the members' distributions: Gaussian members give their standard deviations, Laplace members
    their ``b``, Student-t members their scale ``s`` (degrees of freedom from :func:`member_dfs`), and
    point members (trained on MSE or L1) a Gaussian of scale 0."""
    members = prediction.member_distribution
    locs = np.asarray(members.mean, np.float64)
    if isinstance(members, distributions.Deterministic):
        return locs, np.zeros_like(locs), "gaussian"
    if isinstance(members, (distributions.Normal, distributions.Laplace, distributions.StudentT)):
        return locs, np.asarray(members.scale, np.float64), members.family
    raise ValueError(f"evaluate: no regression metrics for a {prediction.head.name!r} head")


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
      :func:`~deepens.metrics.classification.classification_summary`. For several targets,
      ``nll_mixture`` is the mean of ``prediction.nll(y, joint=False)`` (per-target marginals) and
      ``nll_mixture_joint`` that of ``prediction.nll(y)`` (the joint density of each row).
    """
    if hasattr(prediction, "probs"):
        labels = np.asarray(y)
        return classification_summary(
            labels,
            np.asarray(prediction.probs, np.float64),
            nll=np.asarray(prediction.nll(labels), np.float64),
            bins=bins,
        )
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
    return regression_summary(
        y,
        member_locs=locs * scale + np.asarray(target_shift, np.float64),
        member_scales=scales * scale,
        family=family,
        levels=levels,
        member_dfs=member_dfs(prediction),
    )
