"""The practical's experiments (GUIDE section 3): the main job behind ``deepens demo``.

Regression on a noisy cubic with Gaussian and Laplace heads (one network, one with FGSM, an ensemble of
6 with and without FGSM) and spiral classification (one network, an ensemble of 4 with and without
FGSM). Writes the figures, ``metrics.json`` and prints a table with the time of each stage.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from deepens import plots
from deepens.adversarial import FGSM
from deepens.data import toy
from deepens.ensemble import Ensemble
from deepens.io import write_json
from deepens.train import fit


@dataclasses.dataclass(frozen=True)
class Settings:
    """The practical's settings; tests shrink them."""

    regression_points: int = 40
    regression_hidden: tuple[int, ...] = (10, 6, 30)
    regression_lr: float = 0.08
    regression_steps: int = 600
    regression_members: int = 6
    regression_eps: float = 0.08
    spiral_points: int = 1000
    spiral_noise: float = 0.3
    classification_hidden: tuple[int, ...] = (150, 150)
    classification_lr: float = 0.1
    classification_weight_decay: float = 1e-3
    classification_epochs: int = 300
    classification_members: int = 4
    classification_eps: float = 0.02
    test_points: int = 2000
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Run:
    members: int
    adversarial: str

    @property
    def label(self) -> str:
        kind = "one network" if self.members == 1 else f"ensemble of {self.members}"
        return kind + (" + FGSM" if self.adversarial == "fgsm" else "")


def _record(experiment: str, head: str, run: Run, ensemble: Ensemble, **metrics: float) -> dict[str, Any]:
    assert ensemble.timings is not None
    return {
        "experiment": experiment,
        "head": head,
        "members": run.members,
        "adversarial": run.adversarial,
        # A diverged network can score inf or NaN; strict JSON records that as null.
        **{k: float(v) if np.isfinite(v) else None for k, v in metrics.items()},
        "train_seconds": round(ensemble.timings.train_s, 4),
        "compile_seconds": round(ensemble.timings.compile_s, 4),
    }


def regression(settings: Settings, out: Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Both regression heads, four runs each; one 2 x 2 figure per head."""
    x, y = toy.cubic(settings.regression_points, seed=settings.seed)
    x_test, y_test = toy.cubic(settings.test_points, seed=settings.seed + 1)
    runs = [Run(1, "none"), Run(1, "fgsm"), Run(settings.regression_members, "none"), Run(settings.regression_members, "fgsm")]
    records, histories = [], {}
    for head in ("gaussian", "laplace"):
        figure = Figure(figsize=(12, 8.5))
        for ax, run in zip(figure.subplots(2, 2).ravel(), runs):
            ensemble = fit(
                x, y, head=head, hidden=settings.regression_hidden, members=run.members,
                epochs=settings.regression_steps, learning_rate=settings.regression_lr,
                adversarial=FGSM(settings.regression_eps, relative=False) if run.adversarial == "fgsm" else None,
                seed=settings.seed, progress=False,
            )
            prediction = ensemble.predict(x_test)
            nll = float(np.mean(prediction.nll(y_test)))
            rmse = float(np.sqrt(np.mean((np.asarray(prediction.mean) - y_test) ** 2)))
            records.append(_record("regression", head, run, ensemble, nll=nll, rmse=rmse))
            histories[f"{head}, {run.label}"] = ensemble.history
            plots.regression_panel(ax, ensemble, x, y, truth=toy.cubic_truth,
                                   title=f"{head}, {run.label}: test NLL {nll:.2f}, RMSE {rmse:.2f}")
        figure.axes[0].legend(fontsize=8, loc="upper left")
        figure.tight_layout()
        plots.save(figure, out / f"regression_{head}.png")
    return records, histories


def classification(settings: Settings, out: Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Spirals: one network, an ensemble, and an ensemble with FGSM; one four-panel figure each."""
    x, y = toy.spirals(settings.spiral_points, noise=settings.spiral_noise, seed=settings.seed)
    x_test, y_test = toy.spirals(max(settings.test_points // 3, 1), noise=settings.spiral_noise, seed=settings.seed + 1)
    m = settings.classification_members
    records, histories = [], {}
    for run in (Run(1, "none"), Run(m, "none"), Run(m, "fgsm")):
        ensemble = fit(
            x, y, head="categorical", hidden=settings.classification_hidden, members=run.members,
            epochs=settings.classification_epochs, learning_rate=settings.classification_lr,
            weight_decay=settings.classification_weight_decay,
            adversarial=FGSM(settings.classification_eps, relative=False) if run.adversarial == "fgsm" else None,
            seed=settings.seed, progress=False,
        )
        prediction = ensemble.predict(x_test)
        nll = float(np.mean(prediction.nll(y_test)))
        accuracy = float(np.mean(np.asarray(prediction.label) == y_test))
        records.append(_record("classification", "categorical", run, ensemble, nll=nll, accuracy=accuracy))
        histories[f"spirals, {run.label}"] = ensemble.history
        name = f"classification_{'single' if run.members == 1 else f'ensemble{run.members}'}"
        name += "_fgsm" if run.adversarial == "fgsm" else ""
        figure = plots.classification_figure(ensemble, x, y, title=f"spirals, {run.label}: test NLL {nll:.3f}, accuracy {accuracy:.3f}")
        plots.save(figure, out / f"{name}.png")
    return records, histories


def run(out: str | Path, settings: Settings = Settings(), *, echo: bool = True) -> list[dict[str, Any]]:
    """Run every experiment, write figures and ``metrics.json`` into ``out``, and return the records."""
    from rich.console import Console
    from rich.table import Table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console(quiet=not echo, width=None if sys.stdout.isatty() else 110)
    stages: dict[str, float] = {}
    started = time.perf_counter()

    begin = time.perf_counter()
    regression_records, regression_histories = regression(settings, out)
    stages["regression (8 runs, 2 figures)"] = time.perf_counter() - begin
    console.print(f"regression done in {stages['regression (8 runs, 2 figures)']:.1f} s")

    begin = time.perf_counter()
    classification_records, classification_histories = classification(settings, out)
    stages["classification (3 runs, 3 figures)"] = time.perf_counter() - begin
    console.print(f"classification done in {stages['classification (3 runs, 3 figures)']:.1f} s")

    begin = time.perf_counter()
    plots.save(plots.training_curves({**regression_histories, **classification_histories}, log_scale=True), out / "training_curves.png")
    records = regression_records + classification_records
    write_json(out / "metrics.json", records)
    stages["training curves and metrics.json"] = time.perf_counter() - begin
    stages["total"] = time.perf_counter() - started

    table = Table(title="deepens demo: test metrics on a fresh sample from each generator")
    for column in ("experiment", "head", "members", "adversarial", "NLL", "RMSE / acc.", "compile s", "train s"):
        table.add_column(column, justify="left" if column in ("experiment", "head", "adversarial") else "right")
    for r in records:
        score = _number(r["rmse"], ".3f") if "rmse" in r else _number(r["accuracy"], ".4f")
        table.add_row(r["experiment"], r["head"], str(r["members"]), r["adversarial"], _number(r["nll"], ".3f"), score,
                      f"{r['compile_seconds']:.2f}", f"{r['train_seconds']:.2f}")
    console.print(table)
    for stage, seconds in stages.items():
        console.print(f"  {stage:<40} {seconds:6.1f} s")
    console.print(f"figures and metrics.json in {out.resolve()}")
    return records


def _number(value: float | None, spec: str) -> str:
    return "not finite" if value is None else format(value, spec)
