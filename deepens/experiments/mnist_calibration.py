"""Calibrated columns of the MNIST benchmark: the networks trained on part of the training rows and a
temperature fitted on the rest, beside the paper's columns (which keep the paper's protocol untouched).

A fixed, stratified random ``calibration_fraction`` (10%) of the training rows is held out, drawn from
the seed (a stream of its own); each variant's ensemble (same model, optimiser, epochs, FGSM and members
as the paper's column, the cosine schedule spanning its own steps) trains on the other rows, in their
original order. For the one network (M = 1, the first member) and the ensemble of the largest M, one
temperature is fitted by held-out NLL on the averaged prediction (:func:`deepens.calibration.fit_temperature`
on :func:`deepens.calibrated.mixture_log_probs`), and the same networks are scored on the full test set
before (``T = 1``) and after (the fitted ``T``), through :class:`deepens.calibrated.CalibratedClassification`
both times, so the two differ by the temperature only. The test rows never take part in fitting anything.

The temperature divides the mixture's log-probabilities, so it never changes the argmax (error is the
same before and after), but it changes the entropy, hence the NotMNIST AUROC of entropy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepens import calibration as calib
from deepens import metrics
from deepens.calibrated import CalibratedClassification, mixture_log_probs
from deepens.prediction import ClassificationPrediction

SCORES = ("error", "nll", "brier", "ece", "ood_auroc", "entropy_test", "entropy_ood")


def holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fit_rows, cal_rows)``: sorted row numbers of the rows that train and of the held-out rows,
    ``ceil(fraction * N)`` of the ``N`` labels, stratified by class (plain random where a class is too rare
    to stratify). ValueError for a fraction outside (0, 1) or fewer than :data:`deepens.calibration.MIN_ROWS`
    held-out rows, before anything trains."""
    from sklearn.model_selection import train_test_split

    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"calibration_fraction must lie strictly inside (0, 1), got {fraction!r}")
    n = len(labels)
    n_cal = int(np.ceil(fraction * n))
    if n_cal < calib.MIN_ROWS or n - n_cal < 1:
        raise ValueError(
            f"calibration needs at least {calib.MIN_ROWS} held-out rows and one to train on, but "
            f"calibration_fraction={fraction} of {n} training rows gives {n_cal}; use more rows or calibrated=False"
        )
    rows = np.arange(n)
    random_state = int(np.random.default_rng([seed, 3]).integers(2**31))
    try:
        fit_rows, cal_rows = train_test_split(rows, test_size=n_cal, random_state=random_state, stratify=labels)
    except ValueError:  # a class with a single row: no stratified split exists
        fit_rows, cal_rows = train_test_split(rows, test_size=n_cal, random_state=random_state)
    return np.sort(fit_rows), np.sort(cal_rows)


def _scores(
    labels: np.ndarray, prediction: CalibratedClassification, ood: Mapping[str, CalibratedClassification]
) -> dict[str, float]:
    """Error, NLL, Brier/K, ECE, mean entropy on the test set, and per OOD set the AUROC, AUPR and FPR at
    95% TPR of entropy, the AUROC of one minus the largest probability and the mean entropy (nats)."""
    summary = metrics.evaluate(prediction, labels)
    inside = prediction.entropy
    record = {
        "error": summary["error"],
        "nll": summary["nll"],
        "brier": summary["brier_per_class"],
        "ece": summary["ece"],
        "mce": summary["mce"],
        "entropy_test": float(np.mean(inside)),
    }
    for name, out in ood.items():
        prefix = "ood" if name == "notmnist" else name.replace("-", "_")
        result = metrics.ood_detection(inside, out.entropy)
        record[f"{prefix}_auroc"] = result.auroc
        record[f"{prefix}_aupr"] = result.aupr
        record[f"{prefix}_fpr_at_95_tpr"] = result.fpr_at_95_tpr
        record[f"{prefix}_auroc_max_probability"] = metrics.ood_detection(
            1.0 - prediction.confidence, 1.0 - out.confidence
        ).auroc
        record[f"entropy_{prefix}"] = float(np.mean(out.entropy))
    return {k: float(v) for k, v in record.items()}


def score(
    cal_outputs: np.ndarray,
    y_cal: np.ndarray,
    test_outputs: np.ndarray,
    y_test: np.ndarray,
    ood_outputs: Mapping[str, np.ndarray],
    sizes: Sequence[int],
) -> dict[str, dict[str, Any]]:
    """The calibrated columns of one variant, keyed by ``str(M)`` for each M of ``sizes``: ``temperature``,
    ``heldout_nll_before``/``heldout_nll_after`` (mean NLL of the held-out rows at ``T = 1`` and at the
    fitted ``T``), and the test-set scores ``before`` and ``after`` (see :func:`_scores`).

    ``cal_outputs``, ``test_outputs``, ``ood_outputs[name]``: member logits ``(members, N, K)`` of the
    held-out rows, the test set and each OOD set; the ensemble of M is the first M members."""
    out: dict[str, dict[str, Any]] = {}
    for m in sizes:
        held = ClassificationPrediction(cal_outputs[:m])
        temperature = calib.fit_temperature(mixture_log_probs(held), y_cal)
        record: dict[str, Any] = {"temperature": temperature}
        for when, t in (("before", 1.0), ("after", temperature)):
            cal = calib.Calibration("temperature", t)
            record[f"heldout_nll_{when}"] = float(np.mean(CalibratedClassification(held, cal).nll(y_cal)))
            record[when] = _scores(
                y_test,
                CalibratedClassification(ClassificationPrediction(test_outputs[:m]), cal),
                {k: CalibratedClassification(ClassificationPrediction(v[:m]), cal) for k, v in ood_outputs.items()},
            )
        out[str(m)] = record
    return out


def _cell(record: Mapping[str, Any] | None, key: str, digits: int, scale: float = 1.0) -> str:
    value = None if record is None else record.get(key)
    return "n/a" if value is None else f"{scale * value:.{digits}f}"


def markdown(
    calibrated: Mapping[str, Mapping[str, Any]], paper_columns: Mapping[str, Mapping[str, Any]], run_info: Mapping
) -> list[str]:
    """The calibrated columns' section of ``mnist.md``: per variant and M, the paper's column (all training
    rows, uncalibrated), the held-out networks uncalibrated and the same with the fitted temperature."""
    if not calibrated:
        return []
    s = run_info["settings"]
    rows = run_info["data"].get("calibration", {})
    lines = [
        "### Temperature scaling on held-out rows (added columns; the paper's columns above are untouched)",
        "",
        f"Each variant retrained (same settings and seed) on {rows.get('fit_rows', 'n/a')} of the training rows; "
        f"one temperature fitted by NLL on the other {rows.get('calibration_rows', 'n/a')} (a stratified "
        f"{s.get('calibration_fraction', 0.1):g}, drawn from the seed) on the averaged prediction of the first M "
        "members; every score on the same test images. "
        "`all rows` is the paper's column above; `held-out, T = 1` and `held-out, T` are the same networks "
        "before and after the temperature (the argmax, hence the error, never changes). Entropy: mean "
        "predictive entropy (nats) on MNIST test and NotMNIST; AUROC: entropy as the OOD score.",
        "",
        "| variant, M | networks | T | held-out NLL | error % | NLL | Brier/K | ECE | NotMNIST AUROC "
        "| entropy MNIST | entropy NotMNIST |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, by_m in calibrated.items():
        for m, c in by_m.items():
            paper = paper_columns.get(variant, {}).get(m)
            for label, r, t, held in (
                ("all rows", paper, None, None),
                ("held-out, T = 1", c["before"], 1.0, c["heldout_nll_before"]),
                ("held-out, T", c["after"], c["temperature"], c["heldout_nll_after"]),
            ):
                lines.append(
                    f"| {variant}, {m} | {label} | {'n/a' if t is None else f'{t:.3f}'} | "
                    f"{'n/a' if held is None else f'{held:.4f}'} | {_cell(r, 'error', 2, 100.0)} | "
                    f"{_cell(r, 'nll', 4)} | {_cell(r, 'brier', 5)} | {_cell(r, 'ece', 4)} | "
                    f"{_cell(r, 'ood_auroc', 3)} | {_cell(r, 'entropy_test', 3)} | {_cell(r, 'entropy_ood', 3)} |"
                )
    return lines + [""]
