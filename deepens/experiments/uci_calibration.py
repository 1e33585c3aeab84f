"""Calibrated columns of the UCI benchmark: the deep ensemble trained on part of each split's training
rows and calibrated on the rest, beside the paper's columns (which keep the paper's protocol untouched).

For each split a fixed random ``calibration_fraction`` (20%) of the training rows is held out, drawn
from the seed and the split (a stream of its own, not the optimiser's validation part); inputs and
target are standardised on the rows that train, as :class:`deepens.sklearn.DeepEnsembleRegressor`
does; the deep ensemble (same optimiser, epochs and members as the paper's column) trains on them, and
its calibration is fitted on the held-out rows. Three columns come from those same networks:

- ``ensemble_holdout``:   no calibration (what holding the rows out costs by itself)
- ``ensemble_conformal``: split-conformal intervals (``deepens.calibration``, scores ``|y - mean| / std``)
- ``ensemble_scale``:     one factor on the std, fitted by held-out NLL

Calibrated scores are those of the calibrated distribution (the mixture stretched about its mean, see
:func:`deepens.calibration.stretch`); coverage is that of the calibrated intervals. The test rows never
take part in fitting anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from deepens import calibration as calib
from deepens.data import uci

CALIBRATED = ("ensemble_holdout", "ensemble_conformal", "ensemble_scale")
CALIBRATED_LABELS = {
    "ensemble_holdout": "Ensemble of 5, NLL, trained on 80% of the training rows, uncalibrated",
    "ensemble_conformal": "the same, split-conformal intervals fitted on the other 20%",
    "ensemble_scale": "the same, one std factor fitted by NLL on the other 20%",
}
LEVELS = (0.5, 0.8, 0.9, 0.95)
TARGET = (0.87, 0.95)  # the band for the calibrated 90% interval's coverage, averaged over splits


def holdout(x: list[np.ndarray], y: list[np.ndarray], fraction: float, seed: int) -> tuple[list[Any], ...]:
    """Per split (lists over splits) ``(x_fit, y_fit, x_cal, y_cal, scalers)``: the rows that train and
    the held-out rows, standardised on the rows that train, and those standardisers ``(sx, sy)``. ``x``,
    ``y`` are the splits' training rows (already standardised on all of them: an affine change that the
    second standardisation composes with)."""
    out: tuple[list[Any], ...] = ([], [], [], [], [])
    for i, (xs, ys) in enumerate(zip(x, y)):
        order = np.random.default_rng([seed, 2, i]).permutation(len(xs))
        cut = max(calib.MIN_ROWS, int(round(fraction * len(xs))))
        fit_rows, cal_rows = order[cut:], order[:cut]
        sx, sy = uci.Standardizer.fit(xs[fit_rows]), uci.Standardizer.fit(ys[fit_rows])
        for bucket, value in zip(
            out,
            (
                sx.transform(xs[fit_rows]),
                sy.transform(ys[fit_rows]),
                sx.transform(xs[cal_rows]),
                sy.transform(ys[cal_rows]),
                (sx, sy),
            ),
        ):
            bucket.append(value)
    return out


def run(
    data: Any,
    train: Callable[[list[np.ndarray], list[np.ndarray]], tuple[list[Any], float, float]],
    fraction: float,
    seed: int,
) -> tuple[dict[str, dict[str, list[float]]], int, float, float]:
    """Per-split scores of the three columns of :data:`CALIBRATED` for one data set (a ``uci.Prepared``):
    ``(per_split[method][metric], splits, train_s, compile_s)``. ``train(x, y)`` trains the deep ensemble
    on each split and returns ``(ensembles, compile_s, train_s)``."""
    x_fit, y_fit, x_cal, y_cal, scalers = holdout(data.x_train, data.y_train, fraction, seed)
    ensembles, compile_s, train_s = train(x_fit, y_fit)
    per_split: dict[str, dict[str, list[float]]] = {m: {} for m in CALIBRATED}
    for i, e in enumerate(ensembles):
        (sx, sy), split_sy = scalers[i], data.y_scaler[i]
        held = e.predict(x_cal[i].astype(np.float32))
        mean, std = np.asarray(held.mean, np.float64), np.asarray(held.std, np.float64)
        prediction = e.predict(sx.transform(data.x_test[i]).astype(np.float32))
        # Targets: the fit rows' standardisation, then the split's, back to the original units.
        shift, scale = split_sy.mean + split_sy.std * sy.mean, split_sy.std * sy.std
        for method, kind in (
            ("ensemble_holdout", None),
            ("ensemble_conformal", "conformal"),
            ("ensemble_scale", "scale"),
        ):
            cal, scores = (None, None) if kind is None else calib.fit_regression(y_cal[i], mean, std, kind, 0.9)
            result = calib.regression_scores(
                prediction, data.y_test[i], cal, scores, target_shift=shift, target_scale=scale, levels=LEVELS
            )
            result["stretch"] = calib.stretch(cal)
            for key, value in result.items():
                per_split[method].setdefault(key, []).append(float(value))
    return per_split, len(ensembles), train_s, compile_s


def _cell(entry: dict[str, Any] | None, key: str, digits: int = 3) -> str:
    value = None if entry is None else entry.get(key)
    return "n/a" if value is None else f"{value:.{digits}f}"


def coverage_met(results: dict[str, Any]) -> dict[str, bool]:
    """Per data set: does the conformal column's 90% coverage, averaged over splits, lie in :data:`TARGET`?"""
    out = {}
    for name, methods in results.items():
        entry = methods.get("ensemble_conformal")
        if entry is not None and entry.get("coverage_09_mean") is not None:
            out[name] = TARGET[0] <= entry["coverage_09_mean"] <= TARGET[1]
    return out


def nll_check(results: dict[str, Any], method: str = "ensemble_conformal") -> dict[str, dict[str, bool]]:
    """Per data set: is ``method``'s NLL worse than the paper's column (``vs_ensemble``) or than the same
    networks uncalibrated (``vs_holdout``) by no more than the calibrated NLL's standard error?"""
    out = {}
    for name, methods in results.items():
        ours = methods.get(method)
        if ours is None or ours.get("nll_mean") is None:
            continue
        se = ours.get("nll_se") or 0.0
        out[name] = {
            key: methods[other]["nll_mean"] is not None and ours["nll_mean"] <= methods[other]["nll_mean"] + se
            for key, other in (("vs_ensemble", "ensemble"), ("vs_holdout", "ensemble_holdout"))
            if other in methods
        }
    return out


def markdown(results: dict[str, Any]) -> list[str]:
    """The calibrated columns' section of ``uci.md``: coverage at 50/80/90/95% before and after
    calibration, and NLL/RMSE beside the paper's column."""
    if not any(m in r for r in results.values() for m in CALIBRATED):
        return []
    lines = [
        "### Calibrated on held-out rows (added columns; the paper's columns above are untouched)",
        "",
        "The deep ensemble trained on 80% of each split's training rows, calibrated on the other 20% "
        "(drawn per split from the seed); scores on the same test rows. `ensemble` is the paper's column "
        "(all training rows, uncalibrated). Coverage: fraction of test targets inside the central "
        f"interval, mean over splits; target for the conformal 90% interval: [{TARGET[0]}, {TARGET[1]}].",
        "",
        "| data set | method | cov 50% | cov 80% | cov 90% | cov 95% | NLL | RMSE | std factor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    met = coverage_met(results)
    for name, methods in results.items():
        for m in ("ensemble", *CALIBRATED):
            e = methods.get(m)
            if e is None:
                continue
            nll = _cell(e, "nll_mean") + (f" ± {e['nll_se']:.3f}" if e.get("nll_se") is not None else "")
            cov90 = _cell(e, "coverage_09_mean")
            if m == "ensemble_conformal" and name in met:
                cov90 += "" if met[name] else " **(outside)**"
            lines.append(
                f"| {name} | {m} | {_cell(e, 'coverage_05_mean')} | {_cell(e, 'coverage_08_mean')} | "
                f"{cov90} | {_cell(e, 'coverage_095_mean')} | {nll} | {_cell(e, 'rmse_mean')} | "
                f"{_cell(e, 'stretch_mean')} |"
            )
    lines += [
        "",
        "Methods: " + "; ".join(f"`{m}` = {CALIBRATED_LABELS[m]}" for m in CALIBRATED) + ".",
        f"Conformal 90% coverage in [{TARGET[0]}, {TARGET[1]}]: {sum(met.values())} of {len(met)} data sets"
        + (f" (not: {', '.join(n for n, ok in met.items() if not ok)})" if not all(met.values()) else "")
        + ".",
    ]
    checks = nll_check(results)
    for key, what in (
        ("vs_ensemble", "the paper's column (all training rows)"),
        ("vs_holdout", "the same networks uncalibrated"),
    ):
        failed = [n for n, c in checks.items() if not c.get(key, True)]
        lines.append(
            f"Conformal NLL no worse than {what} by more than its standard error: "
            f"{len(checks) - len(failed)} of {len(checks)}" + (f" (not: {', '.join(failed)})" if failed else "") + "."
        )
    lines.append("")
    return lines
