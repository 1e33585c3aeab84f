"""Regression metrics: likelihoods, errors, CRPS, interval coverage, PIT and calibration.

Conventions (shared by every metric family in :mod:`deepens.metrics`):

- The truth comes first (``y``), then the prediction's quantities *by keyword* (``mean=``, ``std=``,
  ``member_locs=`` ...: arrays of one shape cannot be swapped silently), then options.
- ``y`` has shape ``(N,)`` or ``(N, T)``. A single predictive distribution is given by arrays of the
  same shape (``mean``, ``std`` for a Gaussian; ``loc``, ``scale`` for a Laplace). An ensemble is given
  by member arrays ``(M,) + y.shape`` and a ``family`` (``"gaussian"``: scales are standard deviations;
  ``"laplace"``: scales are ``b``, variance ``2 b^2``; ``"student_t"``: scales are the Student-t scale ``s``
  and ``dfs`` the degrees of freedom, > 2, variance ``s^2 df / (df - 2)``); it is scored as the uniform
  mixture of members.
- Per-example scores (NLL, CRPS, errors) are returned elementwise, with the shape of ``y`` and in the
  target's units (NLL in nats); reduce them yourself, usually with the mean. Several targets are scored
  one at a time (each target's marginal distribution).
- Summaries (``rmse``, coverage, calibration) return floats or small named tuples.
- Everything is computed in float64 NumPy from any array-like input (NumPy, JAX, lists), by the same
  code the predictions use: densities, CDFs and moments come from :mod:`deepens.distributions`, the
  mixture from :class:`deepens.mixture.UniformMixture`.

Units trap: NLL and CRPS depend on the target's scale. A model trained on standardised targets
``(y - m) / s`` must be scored on the original scale: NLL gains ``log s`` (see
:func:`gaussian_nll`), CRPS and RMSE are multiplied by ``s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.special import ndtr

from deepens import distributions, losses
from deepens.metrics import _checks, student_t
from deepens.mixture import UniformMixture

_SQRT_PI = math.sqrt(math.pi)
FAMILIES = ("gaussian", "laplace", "student_t")


def _pair(metric: str, y: Any, a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, ...]:
    y = _checks.nonempty(metric, "y", _checks.floats(metric, "y", y, min_ndim=1))
    a = _checks.floats(metric, names[0], a)
    b = _checks.floats(metric, names[1], b)
    _checks.same_shape(metric, y=y, **{names[0]: a, names[1]: b})
    return y, a, b


def _one(metric: str, y: Any, a: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    y = _checks.nonempty(metric, "y", _checks.floats(metric, "y", y, min_ndim=1))
    a = _checks.floats(metric, name, a)
    _checks.same_shape(metric, y=y, **{name: a})
    return y, a


def _members(
    metric: str, y: Any, locs: Any, scales: Any, family: str, *, allow_zero_scale: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if family not in FAMILIES:
        raise ValueError(f"{metric}: family must be one of {FAMILIES}, got {family!r}")
    y = _checks.nonempty(metric, "y", _checks.floats(metric, "y", y, min_ndim=1))
    locs = _checks.floats(metric, "member_locs", locs)
    scales = _checks.floats(metric, "member_scales", scales)
    _checks.members(metric, y, member_locs=locs, member_scales=scales)
    _checks.positive(metric, "member_scales", scales, allow_zero=allow_zero_scale and family == "gaussian")
    return y, locs, scales


def _dfs(metric: str, family: str, dfs: Any, locs: np.ndarray) -> np.ndarray | None:
    """Student-t degrees of freedom, ``locs``' shape and > 2; ``None`` for the other families."""
    if family != "student_t":
        if dfs is not None:
            raise ValueError(f"{metric}: member_dfs is only for family 'student_t', got family {family!r}")
        return None
    if dfs is None:
        raise ValueError(f"{metric}: family 'student_t' needs member_dfs")
    dfs = _checks.floats(metric, "member_dfs", dfs)
    _checks.same_shape(metric, member_locs=locs, member_dfs=dfs)
    if not np.all(dfs > 2.0):
        raise ValueError(f"{metric}: member_dfs must be > 2 (so the variance exists), got min {np.min(dfs)}")
    return dfs


def _mixture(family: str, locs: np.ndarray, scales: np.ndarray, dfs: np.ndarray | None) -> UniformMixture:
    return UniformMixture(distributions.location_scale(family, locs, scales, dfs))


# --- likelihoods --------------------------------------------------------------------------------------


def gaussian_nll(y: Any, *, mean: Any, std: Any) -> np.ndarray:
    """Negative log-density of ``y`` under N(mean, std^2), elementwise, in nats.

    ``0.5 log(2 pi) + log std + (y - mean)^2 / (2 std^2)``. ``std`` is a standard deviation (> 0), not a
    variance. For a model of standardised targets, pass ``mean`` and ``std`` mapped back to the original
    scale (``mean * s + m``, ``std * s``): the result is then the standardised NLL plus ``log s``.

    Returns:
      The shape of ``y``.
    """
    y, mean, std = _pair("gaussian_nll", y, mean, std, ("mean", "std"))
    _checks.positive("gaussian_nll", "std", std)
    return -distributions.Normal(mean, std).log_prob(y)


def laplace_nll(y: Any, *, loc: Any, scale: Any) -> np.ndarray:
    """Negative log-density of ``y`` under Laplace(loc, b = scale), elementwise, in nats:
    ``log(2 b) + |y - loc| / b``. Returns the shape of ``y``."""
    y, loc, scale = _pair("laplace_nll", y, loc, scale, ("loc", "scale"))
    _checks.positive("laplace_nll", "scale", scale)
    return -distributions.Laplace(loc, scale).log_prob(y)


def mixture_nll(
    y: Any,
    *,
    member_locs: Any,
    member_scales: Any,
    family: str = "gaussian",
    member_dfs: Any = None,
    joint: bool = False,
) -> np.ndarray:
    """Negative log-density of ``y`` under the exact uniform mixture of the members, in nats.

    Args:
      y: ``(N,)`` or ``(N, T)``.
      member_locs, member_scales: ``(M,) + y.shape``; scales are standard deviations (``gaussian``) or
        ``b`` (``laplace``), all > 0.
      joint: ``False`` (default): each target's *marginal* mixture, ``-(logsumexp_m log p_m(y_t) - log M)``,
        elementwise, the shape of ``y`` (what :func:`regression_summary`'s ``nll_mixture`` averages).
        ``True``: the *joint* density of each row of a 2-D ``y`` (members independent across targets),
        ``-(logsumexp_m sum_t log p_m(y_t) - log M)``, ``(N,)``; what
        :meth:`deepens.prediction.RegressionPrediction.nll` returns by default. Equal for one target.
    """
    y, locs, scales = _members("mixture_nll", y, member_locs, member_scales, family)
    dfs = _dfs("mixture_nll", family, member_dfs, locs)
    return -_mixture(family, locs, scales, dfs).log_prob(y, joint=joint and y.ndim > 1)


# --- point errors -------------------------------------------------------------------------------------


def squared_error(y: Any, *, mean: Any) -> np.ndarray:
    """``(y - mean)^2`` elementwise, in squared target units."""
    y, mean = _one("squared_error", y, mean, "mean")
    return np.asarray(losses.squared_error(mean, y))  # NumPy in, NumPy out (losses follows its inputs)


def absolute_error(y: Any, *, mean: Any) -> np.ndarray:
    """``|y - mean|`` elementwise, in target units."""
    y, mean = _one("absolute_error", y, mean, "mean")
    return np.asarray(losses.absolute_error(mean, y))  # NumPy in, NumPy out (losses follows its inputs)


def rmse(y: Any, *, mean: Any) -> float:
    """Root mean squared error over all examples (and targets), in target units."""
    return float(np.sqrt(np.mean(squared_error(y, mean=mean))))


def mae(y: Any, *, mean: Any) -> float:
    """Mean absolute error over all examples (and targets), in target units."""
    return float(np.mean(absolute_error(y, mean=mean)))


# --- CRPS ---------------------------------------------------------------------------------------------
#
# CRPS(F, y) = integral (F(t) - 1[t >= y])^2 dt = E|X - y| - E|X - X'| / 2 with X, X' independent draws
# from F (Gneiting & Raftery 2007). For a uniform mixture, both expectations split over members (pairs of
# members), and each piece has a closed form for Gaussian and Laplace members.


def _gaussian_abs_mean(mu: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``E|Z|`` for Z ~ N(mu, s^2), ``mu (2 Phi(mu/s) - 1) + 2 s phi(mu/s)``; ``|mu|`` where s = 0."""
    positive = s > 0
    safe = np.where(positive, s, 1.0)
    z = mu / safe
    value = mu * (2.0 * ndtr(z) - 1.0) + 2.0 * safe * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return np.where(positive, value, np.abs(mu))


def _laplace_abs_mean(d: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``E|X - c|`` for X ~ Laplace(mu, b) with ``d = |c - mu|``: ``d + b exp(-d / b)``."""
    return d + b * np.exp(-d / b)


def _laplace_pair_abs_mean(d: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``E|X1 - X2|`` for independent X1 ~ Laplace(mu1, a), X2 ~ Laplace(mu2, c), ``d = |mu1 - mu2|``.

    Conditioning on X2: ``E[d2 + a exp(-d2 / a)]`` with ``d2 = |X2 - mu1|``, i.e.
    ``d + c exp(-d / c) + a K / (2 c)`` where ``K = integral exp(-|x| / a - |x - d| / c) dx``
    ``= (e^{-d/a} + e^{-d/c}) a c / (a + c) + (e^{-d/a} - e^{-d/c}) / (1/c - 1/a)``.
    K is symmetric in a and c; with a >= c the last ratio is ``e^{-d/a} (-expm1(-d k)) / k``,
    ``k = 1/c - 1/a >= 0``, which neither overflows nor cancels, and tends to ``d e^{-d/a}`` as k -> 0.
    """
    big, small = np.maximum(a, c), np.minimum(a, c)
    k = 1.0 / small - 1.0 / big
    safe_k = np.where(k > 0, k, 1.0)
    ratio = np.where(k > 0, -np.expm1(-d * safe_k) / safe_k, d)
    e_big = np.exp(-d / big)
    kernel = (e_big + np.exp(-d / small)) * big * small / (big + small) + e_big * ratio
    return d + c * np.exp(-d / c) + a * kernel / (2.0 * c)


def crps_gaussian(y: Any, *, mean: Any, std: Any) -> np.ndarray:
    """CRPS of N(mean, std^2) at ``y``, elementwise, in target units (lower is better):
    ``std [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)]`` with ``z = (y - mean) / std``.

    ``std`` may be 0 (a point forecast), where the CRPS is ``|y - mean|``.
    """
    y, mean, std = _pair("crps_gaussian", y, mean, std, ("mean", "std"))
    _checks.positive("crps_gaussian", "std", std, allow_zero=True)
    return _gaussian_abs_mean(y - mean, std) - std / _SQRT_PI


def crps_laplace(y: Any, *, loc: Any, scale: Any) -> np.ndarray:
    """CRPS of Laplace(loc, b = scale) at ``y``, elementwise, in target units:
    ``|y - loc| + b exp(-|y - loc| / b) - 3 b / 4``."""
    y, loc, scale = _pair("crps_laplace", y, loc, scale, ("loc", "scale"))
    _checks.positive("crps_laplace", "scale", scale)
    return _laplace_abs_mean(np.abs(y - loc), scale) - 0.75 * scale


def crps_mixture(
    y: Any, *, member_locs: Any, member_scales: Any, family: str = "gaussian", member_dfs: Any = None
) -> np.ndarray:
    """CRPS of the uniform mixture of the members at ``y``, elementwise, in target units, in closed form:
    ``mean_m E|X_m - y| - mean_{m,n} E|X_m - X_n| / 2``; for Student-t members by quadrature of
    ``int (F(t) - 1[t >= y])^2 dt`` (:func:`deepens.metrics.student_t.crps_mixture`).

    Args:
      member_locs, member_scales: ``(M,) + y.shape``. Gaussian scales may be 0 (point members, e.g. an
        ensemble trained on MSE: the mixture is then the members' empirical distribution).
    Returns:
      The shape of ``y``. For M = 1 it equals :func:`crps_gaussian` / :func:`crps_laplace`.
    """
    y, locs, scales = _members("crps_mixture", y, member_locs, member_scales, family, allow_zero_scale=True)
    dfs = _dfs("crps_mixture", family, member_dfs, locs)
    if dfs is not None:
        return student_t.crps_mixture(y, locs, scales, dfs)
    m = locs.shape[0]
    if family == "gaussian":
        to_y = np.mean(_gaussian_abs_mean(locs - y[None], scales), axis=0)
        pairs = sum(
            np.sum(_gaussian_abs_mean(locs[i][None] - locs, np.sqrt(scales[i][None] ** 2 + scales**2)), axis=0)
            for i in range(m)  # one member at a time keeps memory at (M,) + y.shape
        )
    else:
        to_y = np.mean(_laplace_abs_mean(np.abs(locs - y[None]), scales), axis=0)
        pairs = sum(
            np.sum(_laplace_pair_abs_mean(np.abs(locs[i][None] - locs), scales[i][None], scales), axis=0)
            for i in range(m)
        )
    return to_y - 0.5 * pairs / (m * m)


# --- PIT, coverage and calibration --------------------------------------------------------------------


def mixture_cdf(
    y: Any, *, member_locs: Any, member_scales: Any, family: str = "gaussian", member_dfs: Any = None
) -> np.ndarray:
    """The mixture's CDF at ``y``, elementwise: the probability integral transform (PIT) values.

    For a calibrated forecaster the PIT values are uniform on [0, 1]. One Gaussian or Laplace is the
    mixture of one member: pass ``member_locs=mean[None], member_scales=std[None]``. Returns the shape of
    ``y``.
    """
    y, locs, scales = _members("mixture_cdf", y, member_locs, member_scales, family)
    dfs = _dfs("mixture_cdf", family, member_dfs, locs)
    return _mixture(family, locs, scales, dfs).cdf(y)


pit = mixture_cdf


def gaussian_cdf(y: Any, *, mean: Any, std: Any) -> np.ndarray:
    """PIT values of N(mean, std^2) (e.g. the moment-matched ensemble Gaussian), elementwise."""
    y, mean, std = _pair("gaussian_cdf", y, mean, std, ("mean", "std"))
    _checks.positive("gaussian_cdf", "std", std)
    return distributions.Normal(mean, std).cdf(y)


def _pit_values(metric: str, pit_values: Any) -> np.ndarray:
    u = _checks.nonempty(metric, "pit_values", _checks.floats(metric, "pit_values", pit_values)).ravel()
    if np.any(u < 0) or np.any(u > 1):
        raise ValueError(f"{metric}: pit_values must lie in [0, 1], got values in [{u.min()}, {u.max()}]")
    return u


def _levels(metric: str, levels: Any) -> np.ndarray:
    lv = _checks.floats(metric, "levels", levels, min_ndim=1)
    if lv.ndim != 1 or np.any(lv < 0) or np.any(lv > 1):
        raise ValueError(f"{metric}: levels must be a 1-D sequence of probabilities in [0, 1], got {lv}")
    return lv


def interval_coverage(y: Any, *, lower: Any, upper: Any) -> float:
    """Fraction of ``y`` inside ``[lower, upper]`` (inclusive), over all examples and targets."""
    y, lower, upper = _pair("interval_coverage", y, lower, upper, ("lower", "upper"))
    if np.any(lower > upper):
        raise ValueError("interval_coverage: lower must not exceed upper")
    return float(np.mean((y >= lower) & (y <= upper)))


def central_coverage(pit_values: Any, levels: Sequence[float] = (0.5, 0.9, 0.95)) -> np.ndarray:
    """Observed coverage of the central prediction intervals at each level.

    ``y`` lies in the central interval holding probability L exactly when its PIT value u satisfies
    ``(1 - L) / 2 <= u <= (1 + L) / 2`` (for a continuous predictive CDF), so coverage needs no quantiles.

    Returns:
      ``(len(levels),)``: the fraction of examples inside each interval; a calibrated forecaster gives
      about ``levels``.
    """
    u = _pit_values("central_coverage", pit_values)
    lv = _levels("central_coverage", levels)
    return np.mean(np.abs(u[None, :] - 0.5) <= lv[:, None] / 2.0, axis=1)


class CalibrationCurve(NamedTuple):
    """Expected against observed proportions, each ``(L,)``; a calibrated forecaster lies on the diagonal."""

    expected: np.ndarray
    observed: np.ndarray


def _calibration_statistic(metric: str, pit_values: Any, kind: str) -> np.ndarray:
    u = _pit_values(metric, pit_values)
    if kind == "quantile":
        return u
    if kind == "central":
        return np.abs(2.0 * u - 1.0)  # the smallest central level whose interval holds y
    raise ValueError(f"{metric}: kind must be 'quantile' or 'central', got {kind!r}")


def calibration_curve(
    pit_values: Any, levels: Sequence[float] | None = None, *, kind: str = "quantile"
) -> CalibrationCurve:
    """Calibration curve from PIT values.

    Args:
      pit_values: the predictive CDF at each observation (see :func:`mixture_cdf`), any shape.
      levels: expected proportions; default 0, 0.05, ..., 1.
      kind: ``"quantile"``: observed = fraction of ``y`` at or below the level's quantile (PIT <= level);
        ``"central"``: observed = fraction inside the central interval of that level (the paper's
        Figure 7, appendix A.2).
    """
    lv = _levels("calibration_curve", np.linspace(0.0, 1.0, 21) if levels is None else levels)
    statistic = _calibration_statistic("calibration_curve", pit_values, kind)
    observed = np.mean(statistic[None, :] <= lv[:, None], axis=1)
    return CalibrationCurve(expected=lv, observed=observed)


def miscalibration_area(pit_values: Any, *, kind: str = "quantile") -> float:
    """Area between the calibration curve and the diagonal, ``integral_0^1 |F(p) - p| dp``, computed
    exactly for the empirical curve F (a step function), not on a grid. 0 is perfect; the worst is 0.5
    (every PIT value 0 or every one 1). ``kind`` as in :func:`calibration_curve`."""
    s = np.sort(_calibration_statistic("miscalibration_area", pit_values, kind))
    knots = np.unique(np.concatenate([[0.0], s, [1.0]]))
    a, b = knots[:-1], knots[1:]
    c = np.searchsorted(s, a, side="right") / s.size  # F on [a, b): the fraction of values <= a
    # integral over [a, b] of |c - p| dp, for c left of, right of, or inside the piece.
    left = 0.5 * (b * b - a * a) - c * (b - a)
    right = c * (b - a) - 0.5 * (b * b - a * a)
    inside = 0.5 * (c - a) ** 2 + 0.5 * (b - c) ** 2
    area = np.where(c <= a, left, np.where(c >= b, right, inside))
    return float(np.sum(area))


def regression_summary(
    y: Any,
    *,
    member_locs: Any,
    member_scales: Any,
    family: str = "gaussian",
    levels: Sequence[float] = (0.5, 0.9, 0.95),
    member_dfs: Any = None,
) -> dict[str, float]:
    """Every regression metric of an ensemble at once, as plain floats (means over examples and targets).

    Keys: ``nll`` (moment-matched Gaussian, the paper's evaluation), ``nll_mixture`` (exact mixture; for
    several targets each target's marginal mixture, see :func:`mixture_nll`'s ``joint``),
    ``rmse``, ``mae``, ``crps`` (exact mixture), ``coverage_<level>`` (central intervals of the exact
    mixture), ``miscalibration_area`` (quantile calibration of the exact mixture); for a 2-D ``y`` with
    several targets also ``nll_mixture_joint``, the mean over examples of the joint mixture NLL of each
    row (summed over targets, as ``RegressionPrediction.nll`` gives it). All other keys are means over
    examples *and* targets.

    Args:
      member_locs, member_scales: ``(M,) + y.shape``; Gaussian scales may be 0 (members trained on MSE),
        then the moment-matched variance is the members' spread alone and the exact-mixture scores that
        need a density (``nll_mixture``, coverage, calibration) are reported as NaN.
    """
    y, locs, scales = _members("regression_summary", y, member_locs, member_scales, family, allow_zero_scale=True)
    dfs = _dfs("regression_summary", family, member_dfs, locs)
    by_family = {"member_locs": locs, "member_scales": scales, "family": family, "member_dfs": dfs}
    moments = _mixture(family, locs, scales, dfs)  # the moment-matched mean and variance
    summary = {
        "nll": float(np.mean(gaussian_nll(y, mean=moments.mean, std=moments.stddev))),
        "rmse": rmse(y, mean=moments.mean),
        "mae": mae(y, mean=moments.mean),
        "crps": float(np.mean(crps_mixture(y, **by_family))),
    }
    if np.all(scales > 0):
        u = mixture_cdf(y, **by_family)
        summary["nll_mixture"] = float(np.mean(mixture_nll(y, **by_family)))
        if y.ndim > 1 and y.shape[-1] > 1:
            summary["nll_mixture_joint"] = float(np.mean(mixture_nll(y, **by_family, joint=True)))
        coverage = central_coverage(u, levels)
        summary["miscalibration_area"] = miscalibration_area(u)
    else:
        summary["nll_mixture"] = float("nan")
        coverage = np.full(len(levels), np.nan)
        summary["miscalibration_area"] = float("nan")
    for level, value in zip(levels, coverage):
        summary[f"coverage_{level:g}"] = float(value)
    return summary
