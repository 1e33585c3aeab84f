"""Calibrated ensembles for the low-level API: :func:`calibrate` fits a calibration of a trained
:class:`deepens.Ensemble` on held-out rows (see :mod:`deepens.calibration`) and returns a
:class:`CalibratedEnsemble`, whose ``predict`` gives a prediction with the same API, calibrated.

Regression: the calibrated distribution is the mixture stretched about its mean by
:func:`deepens.calibration.stretch` (NLL, CDF, std and uncertainty), and a conformal calibration's intervals
come from the held-out scores at every level. Classification: the tempered average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepens import validation
from deepens.calibration import (
    Calibration,
    _enough_rows,
    _finite,
    calibrated_interval,
    fit_regression,
    fit_temperature,
    regression_scores,
    stretch,
    temper,
)

__all__ = ["CalibratedClassification", "CalibratedEnsemble", "CalibratedRegression", "calibrate", "mixture_log_probs"]


@dataclass(frozen=True)
class CalibratedRegression:
    """A regression prediction under a calibration: the mixture stretched about its mean by
    :func:`stretch` (NLL, CDF, std, uncertainty), with :func:`calibrated_interval`'s intervals. Arrays are
    float64 numpy on the prediction's scale, ``(N,)``."""

    prediction: Any
    calibration: Calibration
    scores: np.ndarray | None = None

    @property
    def factor(self) -> float:
        return stretch(self.calibration)

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.prediction.mean, np.float64)

    @property
    def std(self) -> np.ndarray:
        return self.factor * np.asarray(self.prediction.std, np.float64)

    @property
    def variance(self) -> np.ndarray:
        return self.std**2

    @property
    def uncertainty(self) -> Any:
        """Total, aleatoric and epistemic variance, each the mixture's times ``factor**2``."""
        u = self.prediction.uncertainty
        return type(u)(*(self.factor**2 * np.asarray(v, np.float64) for v in u))

    def _unstretched(self, y: Any) -> np.ndarray:
        return (self.mean + (np.asarray(y, np.float64) - self.mean) / self.factor).astype(np.float32)

    def nll(self, y: Any) -> np.ndarray:
        """Exact NLL of the stretched mixture, ``(N,)``: the mixture's at the unstretched ``y`` plus ``log s``."""
        return np.asarray(self.prediction.nll(self._unstretched(y)), np.float64) + math.log(self.factor)

    def log_prob(self, y: Any) -> np.ndarray:
        return -self.nll(y)

    def gaussian_nll(self, y: Any) -> np.ndarray:
        """NLL of the moment-matched Gaussian ``N(mean, std^2)`` with the calibrated std, ``(N,)``."""
        z = (np.asarray(y, np.float64) - self.mean) / self.std
        return 0.5 * np.log(2 * math.pi * self.variance) + 0.5 * z * z

    def cdf(self, y: Any) -> np.ndarray:
        """The stretched mixture's CDF at ``y`` (its PIT values), ``(N,)``."""
        return np.asarray(self.prediction.cdf(self._unstretched(y)), np.float64)

    def interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        return calibrated_interval(
            self.prediction.mean, self.prediction.std, self.prediction.interval, self.calibration, self.scores, level
        )

    def evaluate(self, y: Any, **options: Any) -> dict[str, float]:
        """:func:`regression_scores` of this prediction (options: target_shift, target_scale, levels)."""
        return regression_scores(self.prediction, y, self.calibration, self.scores, **options)


@dataclass(frozen=True)
class CalibratedClassification:
    """A classification prediction under a temperature: ``softmax(log(mean_m p_m) / T)``. The argmax,
    and the members' own uncertainty decomposition (``uncertainty``), are the mixture's."""

    prediction: Any
    calibration: Calibration

    @property
    def log_probs(self) -> np.ndarray:
        """``(N, K)`` tempered log-probabilities."""
        return temper(mixture_log_probs(self.prediction), self.calibration.value)

    @property
    def probs(self) -> np.ndarray:
        return np.exp(self.log_probs)

    @property
    def label(self) -> np.ndarray:
        return np.argmax(self.log_probs, axis=-1)

    @property
    def confidence(self) -> np.ndarray:
        return np.max(self.probs, axis=-1)

    @property
    def entropy(self) -> np.ndarray:
        p = self.probs
        return -np.sum(np.where(p > 0, p * self.log_probs, 0.0), axis=-1)

    @property
    def uncertainty(self) -> Any:
        return self.prediction.uncertainty

    def log_prob(self, y: Any) -> np.ndarray:
        labels = np.asarray(y, np.int64)
        return self.log_probs[np.arange(labels.shape[0]), labels]

    def nll(self, y: Any) -> np.ndarray:
        return -self.log_prob(y)


@dataclass(frozen=True)
class CalibratedEnsemble:
    """An :class:`deepens.Ensemble` with a calibration fitted on held-out rows (see :func:`calibrate`):
    ``predict(x)`` gives a :class:`CalibratedRegression` or :class:`CalibratedClassification` with the
    prediction's API; ``ensemble.predict(x)`` still gives the uncalibrated one."""

    ensemble: Any
    calibration: Calibration
    scores: np.ndarray | None = None

    def predict(self, x: Any) -> CalibratedRegression | CalibratedClassification:
        prediction = self.ensemble.predict(x)
        if self.calibration.kind == "temperature":
            return CalibratedClassification(prediction, self.calibration)
        return CalibratedRegression(prediction, self.calibration, self.scores)


def mixture_log_probs(prediction: Any) -> np.ndarray:
    """``log((1/M) sum_m softmax(logits_m))`` of a ClassificationPrediction, ``(N, K)`` float64, from
    the members' log-softmax (exact for tiny probabilities)."""
    logits = np.asarray(prediction.member_outputs, np.float64)
    member = logits - np.max(logits, axis=-1, keepdims=True)
    member = member - np.log(np.sum(np.exp(member), axis=-1, keepdims=True))
    top = np.max(member, axis=0)
    return top + np.log(np.mean(np.exp(member - top), axis=0))


def calibrate(ensemble: Any, x_cal: Any, y_cal: Any, method: str = "auto", *, level: float = 0.9) -> CalibratedEnsemble:
    """Fit a calibration of ``ensemble`` on held-out rows ``x_cal`` ``(N, ...)`` and ``y_cal`` ``(N,)``
    (on the scale the ensemble was trained on) and return it as a :class:`CalibratedEnsemble`.

    ``method``: ``"auto"`` (``"temperature"`` for a classifier, ``"conformal"`` for regression),
    ``"temperature"``, ``"scale"`` or ``"conformal"`` (at ``level``; intervals at other levels come from
    the same held-out scores). At least :data:`deepens.calibration.MIN_ROWS` rows; NaN or inf rows, labels outside the
    ensemble's classes and a level outside (0, 1) raise a ValueError naming the problem. Regression needs
    a 1-D target.
    """
    is_classifier = bool(ensemble.is_classifier)
    kind = ("temperature" if is_classifier else "conformal") if method == "auto" else method
    allowed = ("temperature",) if is_classifier else ("scale", "conformal")
    if kind not in allowed:
        what = "a classifier" if is_classifier else "a regression ensemble"
        raise ValueError(f"method for {what} must be 'auto' or one of {allowed}, got {method!r}")
    validation.level(level)
    x = _finite("x", x_cal, np.ndim(x_cal))
    _enough_rows(x.shape[0])
    prediction = ensemble.predict(x.astype(np.float32))
    if is_classifier:
        temperature = fit_temperature(mixture_log_probs(prediction), y_cal)
        return CalibratedEnsemble(ensemble, Calibration("temperature", temperature))
    mean = np.asarray(prediction.mean, np.float64)
    if mean.ndim != 1:
        raise ValueError(f"regression calibration needs a 1-D target, got predictions of shape {mean.shape}")
    calibration, scores = fit_regression(y_cal, mean, np.asarray(prediction.std, np.float64), kind, level)
    return CalibratedEnsemble(ensemble, calibration, scores)
