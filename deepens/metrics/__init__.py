"""Evaluation metrics, one module per family, with one signature style throughout.

- the truth first (``y``, ``labels``, ``is_ood``, ``correct``), then the prediction's quantities, then
  keyword-only options;
- per-example scores return one value per example (regression: the shape of ``y``), summaries a float
  or a small named tuple; NLL in nats, other scores in the target's units;
- any array-like input (NumPy, JAX, lists); computed in float64 on the host;
- bad input raises ``ValueError`` naming the metric and the problem.

Families: :mod:`~deepens.metrics.regression` (NLL of the moment-matched Gaussian and of the exact
mixture, RMSE, MAE, CRPS, coverage, PIT, calibration), :mod:`~deepens.metrics.classification` (accuracy,
NLL, Brier in both conventions, ECE/MCE, reliability), :mod:`~deepens.metrics.ood` (AUROC, AUPR, FPR at
95% TPR), :mod:`~deepens.metrics.selective` (accuracy against a confidence threshold, risk-coverage) and
:mod:`~deepens.metrics.shift` (every classification metric against a dataset shift).
:func:`evaluate` scores an ensemble's prediction with every metric of its kind.
"""

from deepens.metrics.classification import (
    Reliability,
    accuracy,
    brier_per_class,
    brier_summed,
    categorical_nll,
    classification_summary,
    correct_and_confidence,
    expected_calibration_error,
    maximum_calibration_error,
    reliability,
    reliability_diagram,
)
from deepens.metrics.ood import OODResult, aupr, auroc, fpr_at_tpr, ood_detection, roc_curve, uncertainty_scores
from deepens.metrics.regression import (
    CalibrationCurve,
    absolute_error,
    calibration_curve,
    central_coverage,
    crps_gaussian,
    crps_laplace,
    crps_mixture,
    gaussian_cdf,
    gaussian_nll,
    interval_coverage,
    laplace_nll,
    mae,
    miscalibration_area,
    mixture_cdf,
    mixture_nll,
    pit,
    regression_summary,
    rmse,
    squared_error,
)
from deepens.metrics.selective import RiskCoverage, SelectiveCurve, accuracy_vs_confidence, aurc, risk_coverage_curve
from deepens.metrics.shift import shift_curve
from deepens.metrics.summary import evaluate, member_dfs, member_locs_and_scales

__all__ = [
    "CalibrationCurve",
    "OODResult",
    "Reliability",
    "RiskCoverage",
    "SelectiveCurve",
    "absolute_error",
    "accuracy",
    "accuracy_vs_confidence",
    "aupr",
    "aurc",
    "auroc",
    "brier_per_class",
    "brier_summed",
    "calibration_curve",
    "categorical_nll",
    "central_coverage",
    "classification_summary",
    "correct_and_confidence",
    "crps_gaussian",
    "crps_laplace",
    "crps_mixture",
    "evaluate",
    "expected_calibration_error",
    "fpr_at_tpr",
    "gaussian_cdf",
    "gaussian_nll",
    "interval_coverage",
    "laplace_nll",
    "mae",
    "maximum_calibration_error",
    "member_dfs",
    "member_locs_and_scales",
    "miscalibration_area",
    "mixture_cdf",
    "mixture_nll",
    "ood_detection",
    "pit",
    "regression_summary",
    "reliability",
    "reliability_diagram",
    "risk_coverage_curve",
    "rmse",
    "roc_curve",
    "shift_curve",
    "squared_error",
    "uncertainty_scores",
]
