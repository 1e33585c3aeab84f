"""Figures: the toy regression, the classification grid and training curves.

Functions draw onto matplotlib ``Figure`` objects built without pyplot, so they work on machines with
no display and keep no global state; ``save`` writes one to a PNG.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from deepens.ensemble import Ensemble
from deepens.prediction import ClassificationPrediction, RegressionPrediction

MEMBER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
CLASS_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#999999")


def save(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``figure`` to ``path`` (PNG) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def regression_panel(
    ax: Axes,
    ensemble: Ensemble,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    x_range: tuple[float, float] = (-6.0, 6.0),
    truth: Callable[[np.ndarray], np.ndarray] | None = None,
    title: str = "",
    points: int = 400,
) -> None:
    """One-input regression: each member's mean with its +-1 std band (thin, coloured) and the ensemble's
    mean with +-1 and +-3 std bands (grey), the truth (dashed) and the training points."""
    grid = np.linspace(*x_range, points, dtype=np.float32)
    prediction = ensemble.predict(grid[:, None])
    assert isinstance(prediction, RegressionPrediction), "a regression ensemble is needed"
    if ensemble.members > 1:
        member_means = np.asarray(prediction.member_means)
        member_stds = np.sqrt(np.asarray(prediction.member_variances))
        for m in range(ensemble.members):
            colour = MEMBER_COLOURS[m % len(MEMBER_COLOURS)]
            ax.plot(grid, member_means[m], color=colour, lw=0.8, alpha=0.8)
            ax.fill_between(
                grid, member_means[m] - member_stds[m], member_means[m] + member_stds[m], color=colour, alpha=0.08
            )
    mean, std = np.asarray(prediction.mean), np.asarray(prediction.std)
    ax.fill_between(grid, mean - 3 * std, mean + 3 * std, color="0.6", alpha=0.25, label="ensemble +-3 std")
    ax.fill_between(grid, mean - std, mean + std, color="0.35", alpha=0.35, label="ensemble +-1 std")
    ax.plot(grid, mean, color="black", lw=1.8, label="ensemble mean")
    if truth is not None:
        ax.plot(grid, truth(grid), color="tab:red", lw=1.2, ls="--", label="truth")
    ax.scatter(np.asarray(x_train)[:, 0], y_train, s=12, color="black", zorder=5, label="training data")
    span = np.ptp(y_train)
    ax.set_ylim(np.min(y_train) - 0.75 * span, np.max(y_train) + 0.75 * span)
    ax.set_xlim(*x_range)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x")


def grid_over(x: np.ndarray, resolution: int = 150, margin: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``resolution x resolution`` grid covering 2-D points ``x`` plus a margin: ``(xx, yy, points)``."""
    low, high = x.min(axis=0), x.max(axis=0)
    pad = margin * (high - low)
    xs = np.linspace(low[0] - pad[0], high[0] + pad[0], resolution, dtype=np.float32)
    ys = np.linspace(low[1] - pad[1], high[1] + pad[1], resolution, dtype=np.float32)
    xx, yy = np.meshgrid(xs, ys)
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1)


def classification_figure(
    ensemble: Ensemble, x: np.ndarray, y: np.ndarray, *, title: str = "", resolution: int = 150, margin: float = 0.5
) -> Figure:
    """Four panels over a grid around 2-D data: the data, the ensemble's predicted class (shaded by its
    confidence), data uncertainty (expected entropy) and knowledge uncertainty (mutual information)."""
    xx, yy, points = grid_over(x, resolution, margin)
    prediction = ensemble.predict(points)
    assert isinstance(prediction, ClassificationPrediction), "a classification ensemble is needed"
    label = np.asarray(prediction.label).reshape(xx.shape)
    confidence = np.asarray(prediction.confidence).reshape(xx.shape)
    uncertainty = prediction.uncertainty
    classes = ensemble.target_size
    cmap = ListedColormap(CLASS_COLOURS[:classes])

    figure = Figure(figsize=(19, 4.6), layout="constrained")
    axes = figure.subplots(1, 4)
    axes[0].scatter(x[:, 0], x[:, 1], c=y, cmap=cmap, vmin=0, vmax=classes - 1, s=4)
    axes[0].set_title("data\n")
    axes[1].imshow(
        label, origin="lower", extent=_extent(xx, yy), cmap=cmap, vmin=0, vmax=classes - 1, alpha=None, aspect="auto"
    )
    axes[1].imshow(
        np.ones_like(confidence),
        origin="lower",
        extent=_extent(xx, yy),
        cmap="gray",
        vmin=0,
        vmax=1,
        alpha=np.clip(1.0 - confidence, 0, 1) * 0.9,
        aspect="auto",
    )
    axes[1].set_title("predicted class\n(faded where unsure)")
    for ax, values, name in (
        (axes[2], uncertainty.data, "data uncertainty\n(expected entropy)"),
        (axes[3], uncertainty.knowledge, "knowledge uncertainty\n(mutual information)"),
    ):
        values = np.asarray(values).reshape(xx.shape)
        peak = float(np.max(values))
        # An all-zero panel (knowledge of one member) would get a degenerate colour scale; say why it is flat.
        image = ax.imshow(
            values,
            origin="lower",
            extent=_extent(xx, yy),
            cmap="viridis",
            vmin=0.0,
            vmax=peak if peak > 0 else 1.0,
            aspect="auto",
        )
        figure.colorbar(image, ax=ax, label="nats")
        ax.set_title(name)
        if peak <= 0:
            note = "0 everywhere:\none member cannot\ndisagree with itself" if ensemble.members == 1 else "0 everywhere"
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="white", fontsize=11)
    for ax in axes:
        ax.set_xlim(xx.min(), xx.max())
        ax.set_ylim(yy.min(), yy.max())
        ax.set_aspect("equal")
    if title:
        figure.suptitle(title)
    return figure


def _extent(xx: np.ndarray, yy: np.ndarray) -> tuple[float, float, float, float]:
    return float(xx.min()), float(xx.max()), float(yy.min()), float(yy.max())


def training_curves(histories: Mapping[str, np.ndarray], *, columns: int = 4, log_scale: bool = False) -> Figure:
    """One panel per run: the members' mean training loss per epoch, with the band from the lowest to the
    highest member. ``histories`` maps a run's name to its ``(epochs, M)`` loss history."""
    names: Sequence[str] = list(histories)
    rows = -(-len(names) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows))
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        history = np.asarray(histories[name])
        epochs = np.arange(1, len(history) + 1)
        ax.fill_between(epochs, history.min(axis=1), history.max(axis=1), alpha=0.3)
        ax.plot(epochs, history.mean(axis=1), lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        if log_scale:
            ax.set_yscale("symlog")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    figure.tight_layout()
    return figure


def regression_calibration_figure(pit_values: np.ndarray, *, title: str = "", bins: int = 20) -> Figure:
    """Calibration of a regression model from its PIT values (the predictive CDF at each observation).

    Left: the quantile calibration curve, the fraction of observations at or below each predicted
    quantile against the quantile's level (a calibrated model lies on the diagonal; above it, the
    predictive distribution sits too high). Right: the central-interval curve, the fraction inside
    each central interval against its level (below the diagonal: intervals too narrow, overconfident),
    over a histogram of the PIT values (flat when calibrated).
    """
    from deepens.metrics import calibration_curve

    figure = Figure(figsize=(10, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    for ax, kind, xlabel, ylabel in (
        (left, "quantile", "predicted quantile level", "observed fraction below"),
        (right, "central", "central interval level", "observed fraction inside"),
    ):
        curve = calibration_curve(pit_values, kind=kind)
        ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="calibrated")
        ax.plot(curve.expected, curve.observed, marker="o", ms=3, color="tab:blue", label="model")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    histogram = right.twinx()  # (no equal aspect: a twin axis cannot keep one)
    histogram.hist(np.ravel(pit_values), bins=bins, range=(0, 1), color="tab:orange", alpha=0.25, density=True)
    histogram.set_ylabel("PIT density (orange)")
    left.legend(loc="upper left", fontsize=8)
    left.set_title("quantile calibration")
    right.set_title("interval calibration and PIT histogram")
    if title:
        figure.suptitle(title)
    return figure


def reliability_figure(reliability: Any, *, title: str = "") -> Figure:
    """A reliability diagram from :func:`deepens.metrics.reliability_diagram`: the accuracy in each
    confidence bin against the bin's mean confidence (bars below the diagonal: overconfident), with the
    number of examples per bin underneath."""
    figure = Figure(figsize=(5.2, 6.0), layout="constrained")
    top, bottom = figure.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    edges = np.asarray(reliability.edges)  # type: ignore[attr-defined]
    counts = np.asarray(reliability.counts)  # type: ignore[attr-defined]
    widths = np.diff(edges)
    filled = counts > 0
    accuracy = np.where(filled, reliability.accuracy, 0.0)  # type: ignore[attr-defined]
    top.bar(
        edges[:-1],
        accuracy,
        width=widths,
        align="edge",
        color="tab:blue",
        alpha=0.7,
        edgecolor="white",
        label="accuracy",
    )
    top.plot(
        np.asarray(reliability.confidence)[filled],
        accuracy[filled],
        "o",
        color="black",
        ms=3,  # type: ignore[attr-defined]
        label="bin: (mean confidence, accuracy)",
    )
    top.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="calibrated")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"reliability (ECE {reliability.ece:.3f})")  # type: ignore[attr-defined]
    bottom.bar(edges[:-1], counts, width=widths, align="edge", color="0.5", edgecolor="white")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("examples")
    if title:
        figure.suptitle(title)
    return figure


def coverage_figure(levels: Sequence[float], scores: Mapping[str, float], *, title: str = "") -> Figure:
    """Observed coverage of the central intervals against their level: the calibrated intervals and, when
    the model is calibrated, the uncalibrated mixture's (below the diagonal: intervals too narrow)."""

    figure = Figure(figsize=(5.2, 5.0), layout="constrained")
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="calibrated (ideal)")
    curves = [("_uncalibrated", "uncalibrated mixture", "tab:orange"), ("", "calibrated intervals", "tab:blue")]
    if not any(k.endswith("_uncalibrated") for k in scores):
        curves = [("", "model", "tab:blue")]
    for suffix, label, colour in curves:
        observed = [scores[f"coverage_{v:g}{suffix}"] for v in levels]
        ax.plot(levels, observed, marker="o", ms=3, color=colour, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("central interval level")
    ax.set_ylabel("observed fraction inside")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "interval calibration", fontsize=10)
    return figure


def reliability_comparison_figure(diagrams: Mapping[str, Any], *, title: str = "") -> Figure:
    """Accuracy against confidence per bin for each of ``diagrams`` (name -> Reliability), ECE in the legend."""

    figure = Figure(figsize=(5.2, 5.0), layout="constrained")
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="calibrated (ideal)")
    colours = {"uncalibrated": "tab:orange"}
    for name, diagram in diagrams.items():
        filled = np.asarray(diagram.counts) > 0
        ax.plot(
            np.asarray(diagram.confidence)[filled],
            np.asarray(diagram.accuracy)[filled],
            marker="o",
            ms=3,
            color=colours.get(name, "tab:blue"),
            label=f"{name} (ECE {diagram.ece:.3f})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "reliability", fontsize=10)
    return figure
