"""Calibration on held-out rows: one number fitted after training so that the ensemble's predictions
say honestly how uncertain they are.

Three kinds, each a pure function of held-out predictions (float64 numpy, no JAX):

- ``"temperature"`` (classification): one temperature ``T`` on the ensemble's averaged prediction;
- ``"scale"`` (regression): one factor ``s`` on the predictive std (variance scaling);
- ``"conformal"`` (regression): split-conformal intervals ``mean -/+ q * std`` from the normalised
  scores ``|y - mean| / std``, with marginal coverage ``>= level`` for exchangeable data.

The fitted result is a small frozen :class:`Calibration` that round-trips through plain JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, ndtri

from deepens import validation

KINDS = ("temperature", "scale", "conformal")
MIN_ROWS = 10


def _finite(name: str, a: Any, ndim: int, *, allow_minus_inf: bool = False) -> np.ndarray:
    """``a`` as a float64 array of ``ndim`` dimensions with no NaN or inf (``-inf`` allowed if asked: the
    log of a zero probability); ValueError naming ``name`` and the rows otherwise."""
    arr = _real_array(name, a)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size == 0:
        return arr
    ok = np.isfinite(arr) | (allow_minus_inf & (arr == -np.inf))
    bad = np.flatnonzero(~np.all(ok.reshape(arr.shape[0], -1), axis=1))
    if bad.size:
        shown = ", ".join(str(int(r)) for r in bad[:10])
        what = "NaN or +inf" if allow_minus_inf else "NaN or inf"
        raise ValueError(f"calibration {name} has {what} in row(s) {shown}")
    return arr


def _real_array(name: str, a: Any) -> np.ndarray:
    """``a`` as float64, refusing what is not a real number (strings, objects, complex numbers)."""
    raw = np.asarray(a) if not isinstance(a, np.ndarray) else a
    if raw.dtype.kind == "c":
        raise ValueError(f"{name} must be real numbers, got complex dtype {raw.dtype}")
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric: {err}") from None


def _real_number(name: str, value: Any) -> float:
    """``value`` as a float; ValueError for None, strings, booleans, arrays and other non-numbers."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _enough_rows(n: int) -> None:
    if n < MIN_ROWS:
        raise ValueError(f"calibration needs at least {MIN_ROWS} rows, got {n}")


def _positive_std(std: np.ndarray) -> None:
    bad = np.flatnonzero(~(std > 0))
    if bad.size:
        raise ValueError(
            f"std must be positive, got {std[bad[0]]} in row {int(bad[0])} ({bad.size} row(s) not positive)"
        )


def _regression(y: Any, mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_ = _finite("y", y, 1)
    mean_ = _finite("mean", mean, 1)
    std_ = _finite("std", std, 1)
    if not (y_.shape == mean_.shape == std_.shape):
        raise ValueError(f"y, mean and std must have one shape, got {y_.shape}, {mean_.shape}, {std_.shape}")
    _enough_rows(y_.shape[0])
    _positive_std(std_)
    return y_, mean_, std_


# --- temperature scaling (classification) -------------------------------------------------------


def temper(log_probs: Any, temperature: float) -> np.ndarray:
    """``log softmax(log_probs / T)``: ``(N, K) -> (N, K)``, each row normalised, float64.

    ``T > 1`` flattens the distribution, ``T < 1`` sharpens it, ``T = 1`` is the identity (up to the
    renormalisation of already normalised log-probabilities). The argmax never changes.
    """
    t = _real_number("temperature", temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    lp = _real_array("log_probs", log_probs)
    if lp.ndim < 1 or lp.shape[-1] == 0:
        raise ValueError(f"log_probs must have a class axis (..., K) with K >= 1, got shape {lp.shape}")
    if np.any(np.isnan(lp)) or np.any(lp == np.inf):
        raise ValueError("log_probs must not hold NaN or +inf (-inf, a zero probability, is allowed)")
    return log_softmax(lp / t, axis=-1)


def _nll(log_probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    lp = temper(log_probs, temperature)
    return float(-np.mean(lp[np.arange(lp.shape[0]), labels]))


def fit_temperature(log_probs: Any, labels: Any) -> float:
    """One temperature ``T > 0`` minimising the held-out NLL of ``softmax(log_probs / T)``.

    ``log_probs``: ``(N, K)`` log-probabilities of the ensemble's averaged prediction (the mixture
    ``log((1/M) sum_m p_m)``), ``labels``: ``(N,)`` integers in ``[0, K)``. Returns ``T`` (unitless).

    This scales the *mixture*, not the members' logits: the tempered distribution is exactly the one
    that is evaluated and reported, so the fitted ``T`` minimises the NLL of what the user sees, and
    dividing one vector of log-probabilities by a positive number is monotone, so it can never change
    the argmax (accuracy is unchanged). Scaling member logits before averaging would change the
    mixture's shape in a way that is not monotone across members, could change predictions, and would
    need the members' logits at prediction time.

    The NLL is convex in ``1/T`` (a log-sum-exp of a linear function minus a linear one), so a bounded
    1-D search over ``log T`` finds the global minimum.
    """
    lp = _finite("log_probs", log_probs, 2, allow_minus_inf=True)
    if lp.shape[1] < 2:
        raise ValueError(f"temperature scaling needs at least 2 classes, got log_probs of shape {lp.shape}")
    empty = np.flatnonzero(np.all(lp == -np.inf, axis=1))
    if empty.size:
        raise ValueError(f"calibration log_probs row {int(empty[0])} is -inf everywhere: not a distribution")
    try:
        lab = np.asarray(labels)
    except (TypeError, ValueError) as err:
        raise ValueError(f"labels must be integers: {err}") from None
    if lab.ndim != 1 or lab.shape[0] != lp.shape[0]:
        raise ValueError(f"labels must have shape ({lp.shape[0]},), got {lab.shape}")
    if lab.dtype.kind == "f":
        if not np.all(np.isfinite(lab)):
            raise ValueError("calibration labels have NaN or inf")
        if not np.all(lab == np.round(lab)):
            raise ValueError("labels must be integers")
        lab = lab.astype(np.int64)
    elif lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {lab.dtype}")
    _enough_rows(lp.shape[0])
    k = lp.shape[1]
    if lab.min() < 0 or lab.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got values from {lab.min()} to {lab.max()}")
    # Clip -inf (a zero probability) so the division stays finite.
    lp = np.maximum(lp, np.log(np.finfo(np.float64).tiny))
    res = minimize_scalar(
        lambda log_t: _nll(lp, lab, math.exp(log_t)),
        bounds=(math.log(1e-2), math.log(1e2)),
        method="bounded",
        options={"xatol": 1e-8},
    )
    # Where the NLL does not depend on T (every held-out row uniform, say), any T is optimal and the search
    # ends anywhere, even at a bound that would then sharpen every later prediction 100 times: keep T = 1
    # unless it is measurably worse.
    if _nll(lp, lab, 1.0) <= res.fun + 1e-12 * (1.0 + abs(res.fun)):
        return 1.0
    return float(math.exp(res.x))


# --- variance scaling (regression) --------------------------------------------------------------


def fit_std_scale(y: Any, mean: Any, std: Any) -> float:
    """One factor ``s > 0`` on the predictive std minimising the held-out Gaussian NLL (variance scaling).

    ``y``, ``mean``, ``std``: ``(N,)`` each, in one unit. The Gaussian NLL of ``N(mean, (s std)^2)``,
    ``log s + z^2 / (2 s^2) + const`` averaged with ``z = (y - mean) / std``, is minimised in closed
    form at ``s^2 = mean(z^2)``. Returns ``s`` (unitless); the calibrated std is ``s * std``.
    """
    y_, mean_, std_ = _regression(y, mean, std)
    with np.errstate(over="ignore"):
        z = (y_ - mean_) / std_
        s2 = float(np.mean(z * z))
    if s2 <= 0:
        raise ValueError("every calibration residual is zero: the std scale is undefined")
    if not math.isfinite(s2):
        raise ValueError("the normalised residuals (y - mean) / std overflow float64: the std scale is undefined")
    return math.sqrt(s2)


# --- split conformal (regression) ----------------------------------------------------------------


def conformal_index(n: int, level: float) -> int:
    """The 1-based rank ``k = ceil((n + 1) * level)`` of the finite-sample conformal quantile."""
    # The tiny tolerance keeps (n + 1) * level that is an integer in exact arithmetic (19 + 1) * 0.9
    # from rounding up to the next rank through floating-point error.
    return int(math.ceil((n + 1) * level - 1e-9))


def conformal_quantile(scores: Any, level: float) -> float:
    """Split-conformal quantile: the ``k``-th smallest of ``n`` scores, ``k = ceil((n + 1) * level)``.

    ``scores``: ``(n,)`` non-conformity scores of the calibration rows (any ``n >= 1``; ties are fine,
    since the rank counts tied scores separately). Returns ``+inf`` when ``k > n``: with so few rows no
    finite interval guarantees the level. For a new exchangeable score ``S``,
    ``P(S <= q) >= level`` (and ``< level + 1/(n + 1)`` without ties).
    """
    lvl = validation.level(level)
    s = _finite("scores", scores, 1)
    n = s.shape[0]
    if n == 0:
        raise ValueError("scores is empty: conformal calibration needs at least one row")
    k = conformal_index(n, lvl)
    if k > n:
        return math.inf
    return float(np.partition(s, k - 1)[k - 1])


def conformal_scores(y: Any, mean: Any, std: Any) -> np.ndarray:
    """Normalised scores ``|y - mean| / std``: ``(N,)`` each to ``(N,)``, unitless."""
    y_, mean_, std_ = _regression(y, mean, std)
    return np.abs(y_ - mean_) / std_


def fit_conformal(y: Any, mean: Any, std: Any, level: float) -> float:
    """The conformal multiplier ``q`` of the std for intervals at ``level`` (see conformal_quantile)."""
    return conformal_quantile(conformal_scores(y, mean, std), level)


def conformal_interval(mean: Any, std: Any, q: float) -> tuple[np.ndarray, np.ndarray]:
    """``(mean - q * std, mean + q * std)``: ``(N,)`` each, in the unit of ``mean``.

    ``q`` is a multiplier ``>= 0``, ``+inf`` allowed (too few calibration rows for the level: the interval
    is then the whole line, also where ``std`` is 0); ``std >= 0`` and of the shape of ``mean``.
    """
    multiplier = _real_number("q", q)
    if not multiplier >= 0:
        raise ValueError(f"conformal multiplier q must be >= 0, got {q!r}")
    m = _real_array("mean", mean)
    s = _real_array("std", std)
    if m.shape != s.shape:
        raise ValueError(f"mean and std must have one shape, got {m.shape} and {s.shape}")
    if np.any(np.isnan(m)) or np.any(np.isnan(s)) or np.any(s < 0):
        raise ValueError("mean and std must not hold NaN, and std must be >= 0")
    half = np.full(s.shape, np.inf) if math.isinf(multiplier) else multiplier * s
    return m - half, m + half


# --- the fitted state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration: ``kind`` in KINDS, its ``value`` (``T``, ``s`` or ``q``), and for
    ``"conformal"`` the ``level`` it was fitted at."""

    kind: str
    value: float
    level: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ValueError(f"calibration kind must be one of {KINDS}, got {self.kind!r}")
        _real_number(f"{self.kind} calibration value", self.value)
        if self.kind == "conformal":
            if self.level is None:
                raise ValueError("a conformal calibration needs its level")
            validation.level(self.level)
            if not (self.value >= 0):  # +inf is allowed: too few rows for a finite interval
                raise ValueError(f"conformal quantile must be >= 0, got {self.value!r}")
        else:
            if self.level is not None:
                raise ValueError(f"a {self.kind} calibration has no level, got {self.level!r}")
            if not (math.isfinite(self.value) and self.value > 0):
                raise ValueError(f"{self.kind} must be a positive finite number, got {self.value!r}")

    def to_config(self) -> dict[str, Any]:
        """Plain JSON (an infinite conformal quantile is written as the string ``"inf"``)."""
        value: float | str = self.value if math.isfinite(self.value) else "inf"
        return {"kind": self.kind, "value": value, "level": self.level}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Calibration:
        """The inverse of :meth:`to_config`; ValueError for anything else (e.g. a corrupt model file)."""
        if not isinstance(config, dict) or "kind" not in config or "value" not in config:
            raise ValueError(f"a calibration config is a dict with 'kind', 'value' (and 'level'), got {config!r}")
        value, level = config["value"], config.get("level")
        return cls(
            kind=config["kind"],
            value=math.inf if value == "inf" else _real_number("calibration value", value),
            level=None if level is None else _real_number("calibration level", level),
        )


# --- the calibrated predictive distribution (regression) -----------------------------------------


def stretch(calibration: Calibration | None) -> float:
    """The factor ``s`` by which a regression calibration stretches the mixture about its mean.

    ``None`` (or a temperature): 1. ``"scale"``: the fitted factor. ``"conformal"``: ``q / z`` with ``q``
    the conformal multiplier at the calibration's level and ``z = Phi^-1((1 + level) / 2)``: the stretch at
    which the moment-matched Gaussian's central interval at that level is exactly the conformal one
    (``+inf`` when ``q`` is). The stretched mixture is what a calibrated model's NLL, CDF, std and
    uncertainty describe; a conformal model's intervals come from the held-out scores at every level.
    """
    if calibration is None or calibration.kind == "temperature":
        return 1.0
    if calibration.kind == "scale":
        return calibration.value
    assert calibration.level is not None  # a conformal calibration records the level it was fitted at
    return calibration.value / float(ndtri(0.5 + 0.5 * float(calibration.level)))


def stretch_members(locs: Any, scales: Any, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """A mixture's members ``(M, ...)`` after stretching the mixture by ``factor`` about its mean:
    locations ``mean + factor * (loc - mean)``, scales ``factor * scale``. The members keep their family,
    so every mixture score applies unchanged; the mean stays, the std (and each member's) multiplies by
    ``factor``, the aleatoric and epistemic variances by ``factor**2``."""
    locs_ = np.asarray(locs, np.float64)
    mean = np.mean(locs_, axis=0)
    return mean + factor * (locs_ - mean), factor * np.asarray(scales, np.float64)


def fit_regression(y: Any, mean: Any, std: Any, kind: str, level: float = 0.9) -> tuple[Calibration, np.ndarray | None]:
    """Fit ``kind`` (``"scale"`` or ``"conformal"``) on held-out rows ``(N,)`` each: ``(calibration,
    scores)``, the scores being the sorted conformal scores (kept so that intervals at any level can be
    served) or None."""
    if kind == "scale":
        return Calibration("scale", fit_std_scale(y, mean, std)), None
    if kind != "conformal":
        raise ValueError(f"regression calibration must be 'scale' or 'conformal', got {kind!r}")
    lvl = validation.level(level)
    scores = np.sort(conformal_scores(y, mean, std))
    return Calibration("conformal", conformal_quantile(scores, lvl), lvl), scores


def calibrated_interval(
    mean: Any,
    std: Any,
    mixture_interval: Callable[[float], tuple[Any, Any]] | None,
    calibration: Calibration | None,
    scores: Any,
    level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The central ``level`` interval ``(lower, upper)`` of a (calibrated) regression prediction.

    ``mean``, ``std``: the uncalibrated mixture's, ``mixture_interval(level)``: its exact central interval
    (called only when needed: a conformal interval does not use it). Uncalibrated: that interval;
    ``"scale"``: it, stretched about the mean; ``"conformal"``: ``mean -/+ q std`` with ``q`` the conformal
    quantile of ``scores`` at ``level`` (``+/-inf`` when they are too few; without scores only the
    calibration's own level can be served)."""
    lvl = validation.level(level)
    m = np.asarray(mean, np.float64)
    if calibration is None or calibration.kind in ("temperature", "scale"):
        if mixture_interval is None:
            raise ValueError("an uncalibrated or scaled interval needs the mixture's interval")
        lower, upper = (np.asarray(a, np.float64) for a in mixture_interval(lvl))
        if calibration is None or calibration.kind == "temperature":
            return lower, upper
        s = calibration.value
        return m + s * (lower - m), m + s * (upper - m)
    if scores is not None:
        q = conformal_quantile(scores, lvl)
    elif calibration.level is not None and math.isclose(lvl, float(calibration.level)):
        q = calibration.value
    else:
        raise ValueError(
            f"conformal intervals at level {lvl} need the calibration scores (fitted at {calibration.level})"
        )
    return conformal_interval(m, std, q)


def regression_scores(
    prediction: Any,
    y: Any,
    calibration: Calibration | None,
    scores: Any = None,
    *,
    target_shift: Any = 0.0,
    target_scale: Any = 1.0,
    levels: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95),
) -> dict[str, float]:
    """Every score of :func:`deepens.metrics.regression_summary` for the calibrated distribution: the
    mixture of ``prediction`` (a RegressionPrediction) stretched by :func:`stretch`, with
    ``coverage_<level>`` that of :func:`calibrated_interval` (the conformal intervals for ``"conformal"``).
    ``y`` in original units; ``target_shift``/``target_scale`` map the prediction's scale to them."""
    from deepens import metrics

    locs, scales, family = metrics.member_locs_and_scales(prediction)
    locs, scales = stretch_members(locs, scales, stretch(calibration))
    shift, scale = np.asarray(target_shift, np.float64), np.asarray(target_scale, np.float64)
    out = metrics.regression_summary(
        y,
        member_locs=locs * scale + shift,
        member_scales=scales * scale,
        family=family,
        levels=levels,
        member_dfs=metrics.member_dfs(prediction),
    )
    if calibration is not None and calibration.kind == "conformal":
        mean, std = np.asarray(prediction.mean, np.float64), np.asarray(prediction.std, np.float64)
        for level in levels:
            lower, upper = calibrated_interval(mean, std, None, calibration, scores, level)
            # (an infinite interval, from too few rows for the level, covers everything)
            y_ = np.asarray(y, np.float64)
            out[f"coverage_{level:g}"] = float(np.mean((y_ >= lower * scale + shift) & (y_ <= upper * scale + shift)))
    return out
