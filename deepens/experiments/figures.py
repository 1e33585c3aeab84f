"""Figures of the paper's benchmarks, drawn without pyplot (no display, no global state).

- :func:`uci_figure`: test NLL and RMSE per data set and method, with the published values.
- :func:`metrics_vs_members`: error, NLL and Brier against the ensemble size (the paper's Figure 2(a)).
- :func:`entropy_histograms`: predictive entropy on known and unknown classes for a few ensemble sizes
  (Figure 3(a)).
- :func:`accuracy_vs_confidence`: accuracy against a confidence threshold on known + unknown inputs
  (Figure 6).
- :func:`reliability_diagrams`: accuracy against confidence per bin.
- :func:`nll_vs_training_cost`: test NLL against training seconds per method (``reproduce mimo``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from deepens.experiments import paper
from deepens.plots import save

__all__ = [
    "accuracy_vs_confidence",
    "entropy_histograms",
    "metrics_vs_members",
    "nll_vs_training_cost",
    "reliability_diagrams",
    "save",
    "uci_figure",
]

COLOURS = {"ensemble": "C0", "ensemble_at": "C1", "single": "C2", "single_at": "C3", "ensemble_mse": "C4"}
VARIANT_LABELS = {"ensemble": "Ensemble", "ensemble_at": "Ensemble + AT (FGSM)"}


def uci_figure(results: Mapping[str, Mapping[str, Any]]) -> Figure:
    """One column per data set: NLL (top) and RMSE (bottom) of each method as a point with its standard
    error, and the published value as a black cross. The MSE ensemble's NLL is often off the scale
    of the others; it is clipped to the panel and marked with an arrow."""
    names = list(results)
    figure = Figure(figsize=(2.6 * max(len(names), 1), 6.2))
    axes = figure.subplots(2, max(len(names), 1), squeeze=False)
    for column, name in enumerate(names):
        methods = [m for m in COLOURS if m in results[name]]
        for row, key in enumerate(("nll", "rmse")):
            ax = axes[row, column]
            values = {m: results[name][m][f"{key}_mean"] for m in methods}
            published = {m: paper.uci_entry(name, m) for m in methods}
            # The MSE ensemble's NLL can be 100 times the others': keep it out of the NLL panel's range.
            in_range = [m for m in methods if not (key == "nll" and m == "ensemble_mse")]
            proper = [
                values[m] + sign * (results[name][m].get(f"{key}_se") or 0.0)
                for m in in_range
                if values[m] is not None
                for sign in (-1, 1)
            ]
            proper += [
                (entry[2] if key == "nll" else entry[0]) for m in in_range if (entry := published[m]) is not None
            ]
            low, high = (min(proper), max(proper)) if proper else (0.0, 1.0)
            pad = 0.25 * (high - low or 1.0)
            for i, m in enumerate(methods):
                value, se = values[m], results[name][m].get(f"{key}_se") or 0.0
                if value is None:
                    continue
                shown = min(value, high + pad)
                ax.errorbar([i], [shown], yerr=[[se], [se]] if shown == value else None, fmt="o", color=COLOURS[m])
                if shown < value:
                    ax.annotate(
                        f"{value:.1f}",
                        (i, shown),
                        xytext=(i, shown - 0.6 * pad),
                        ha="center",
                        fontsize=7,
                        arrowprops={"arrowstyle": "->"},
                    )
                if (entry := published[m]) is not None:
                    ref = entry[2] if key == "nll" else entry[0]
                    if ref <= high + pad:
                        ax.plot([i], [ref], "kx", markersize=8)
            ax.set_ylim(low - pad, high + pad)
            ax.set_xticks(range(len(methods)))
            ax.set_xticklabels(methods, rotation=60, fontsize=7)
            ax.set_title(name if row == 0 else "", fontsize=9)
            ax.set_ylabel(f"test {key.upper()}" if column == 0 else "")
            ax.grid(alpha=0.3)
    figure.suptitle("UCI: ours (coloured, ± standard error) and the paper's Tables 1-2 (black x)", fontsize=10)
    figure.tight_layout()
    return figure


def metrics_vs_members(curves: Mapping[str, Mapping[int, Mapping[str, float]]]) -> Figure:
    """Error (%), NLL and Brier (divided by K, as the paper) against M for each variant (Figure 2(a)); the
    grey band is the y-range of the paper's own panels."""
    figure = Figure(figsize=(13, 3.8))
    axes = figure.subplots(1, 3)
    panels = (
        ("error", 100.0, "classification error (%)", "error_percent"),
        ("nll", 1.0, "NLL", "nll"),
        ("brier_per_class", 1.0, "Brier score / K", "brier_per_class"),
    )
    for ax, (key, factor, label, axis_key) in zip(axes, panels):
        for variant, by_m in curves.items():
            ms = sorted(by_m)
            ax.plot(
                ms,
                [by_m[m][key] * factor for m in ms],
                "o-",
                label=VARIANT_LABELS.get(variant, variant),
                color=COLOURS.get(variant),
            )
        low, high = paper.FIGURE2A_AXES[axis_key]
        ax.axhspan(low, high, color="0.85", alpha=0.5, zorder=0, label="paper's y-axis range")
        ax.set_xlabel("number of nets M")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("MNIST, MLP 3 x 200 with batch norm (cf. the paper's Figure 2(a))", fontsize=10)
    figure.tight_layout()
    return figure


def entropy_histograms(
    entropies: Mapping[str, Mapping[int, tuple[np.ndarray, np.ndarray]]],
    *,
    known: str = "MNIST test",
    unknown: str = "NotMNIST",
    auroc: Mapping[str, Mapping[int, float]] | None = None,
) -> Figure:
    """Predictive entropy histograms: one column per variant, known classes on top and unknown below,
    one curve per ensemble size (Figure 3(a)). ``entropies[variant][M] = (known, unknown)`` in nats."""
    variants = list(entropies)
    figure = Figure(figsize=(5.2 * len(variants), 6.5))
    axes = figure.subplots(2, len(variants), squeeze=False)
    bins = np.linspace(0.0, math.log(10) + 1e-9, 41)
    for column, variant in enumerate(variants):
        for m, (inside, outside) in sorted(entropies[variant].items()):
            for row, values in enumerate((inside, outside)):
                label = f"M = {m}"
                if row == 1 and auroc is not None:
                    label += f" (AUROC {auroc[variant][m]:.3f})"
                axes[row, column].hist(values, bins=bins, density=True, histtype="step", linewidth=1.5, label=label)
        for row, title in enumerate((known, unknown)):
            ax = axes[row, column]
            ax.set_title(f"{VARIANT_LABELS.get(variant, variant)}: {title}", fontsize=9)
            ax.set_xlabel("entropy (nats)")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
    figure.suptitle("Predictive entropy on known (top) and unknown (bottom) classes (cf. Figure 3(a))", fontsize=10)
    figure.tight_layout()
    return figure


def accuracy_vs_confidence(curves: Mapping[str, Any]) -> Figure:
    """Accuracy on examples with confidence >= tau against tau (Figure 6); ``curves[label]`` is a
    :class:`~deepens.metrics.SelectiveCurve`."""
    figure = Figure(figsize=(6.5, 4.5))
    ax = figure.subplots()
    for label, curve in curves.items():
        ax.plot(curve.thresholds, 100.0 * np.asarray(curve.accuracy), "-", label=label)
    ax.set_xlabel("confidence threshold τ")
    ax.set_ylabel("accuracy on examples with p(y|x) ≥ τ (%)")
    ax.set_title("MNIST test + NotMNIST (NotMNIST never correct); cf. Figure 6", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def reliability_diagrams(diagrams: Mapping[str, Any]) -> Figure:
    """Accuracy against mean confidence per bin, one panel per :class:`~deepens.metrics.Reliability`."""
    figure = Figure(figsize=(4 * len(diagrams), 4))
    axes = np.atleast_1d(figure.subplots(1, len(diagrams)))
    for ax, (label, r) in zip(axes, diagrams.items()):
        filled = r.counts > 0
        ax.bar(
            r.edges[:-1][filled],
            r.accuracy[filled],
            width=np.diff(r.edges)[filled],
            align="edge",
            alpha=0.6,
            edgecolor="k",
            label="accuracy",
        )
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set_title(f"{label}: ECE {r.ece:.4f}", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    figure.tight_layout()
    return figure


def nll_vs_training_cost(panels: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Figure:
    """One panel per benchmark: each method's test NLL (``nll`` or ``nll_mean``, with ``nll_se`` when
    given) against its training seconds relative to the single network's, labelled by name.
    ``panels[benchmark][method]`` is a record of ``mimo.json``."""
    names = list(panels)
    columns = min(4, max(len(names), 1))
    rows = -(-max(len(names), 1) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.6 * rows))
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        methods = panels[name]
        base = (methods.get("single") or {}).get("train_seconds") or 1.0
        for i, (method, r) in enumerate(methods.items()):
            nll = r.get("nll", r.get("nll_mean"))
            if nll is None:
                continue
            cost = max(r["train_seconds"], 1e-9) / base
            se = r.get("nll_se") or 0.0
            ax.errorbar([cost], [nll], yerr=[[se], [se]], fmt="o", color=f"C{i}", label=method)
            ax.annotate(method, (cost, nll), xytext=(4, 4), textcoords="offset points", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("training time / one network's")
        ax.set_ylabel("test NLL")
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    figure.suptitle("Test NLL against training cost: one network, deep ensemble, MIMO, BatchEnsemble", fontsize=10)
    figure.tight_layout()
    return figure
