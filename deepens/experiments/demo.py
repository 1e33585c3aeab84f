"""The practical's experiments (GUIDE section 3): the main job behind ``deepens demo``.

Regression on a noisy cubic with Gaussian and Laplace heads (one network, one with FGSM, an ensemble of
6 with and without FGSM), spiral classification (one network, an ensemble of 4 with and without
FGSM) and the practical's Part II: MIMO and BatchEnsemble with 4 members inside one network on the same
spirals, compared with one network and the deep ensemble of 4 (parameters, training and prediction
seconds, accuracy, NLL). Writes the figures, ``metrics.json`` (one record per run, with its ``method``)
and ``part2.md``, and prints a table with the time of each stage.

:data:`FULL` trains Part II for the practical's 10,000 epochs; :data:`PRACTICAL` is the practical's
regression exactly (no gradient clipping), written to a ``practical`` subfolder by ``deepens demo --practical``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from scipy.spatial import cKDTree  # pyright: ignore[reportAttributeAccessIssue]  # compiled _ckdtree, no stub

from deepens import plots
from deepens.adversarial import FGSM
from deepens.data import toy
from deepens.ensemble import Ensemble
from deepens.io import write_json
from deepens.prediction import ClassificationPrediction, RegressionPrediction
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
    clip_norm: float | str | None = "auto"  # None: the practical's unclipped Adam (regression heads)
    part_two_members: int = 4
    part_two_epochs: int = 300  # the practical trains MIMO for 10,000 (FULL)
    # MIMO's rho: with 0 (the library's default) the 4 subnetworks of this small trunk stay noisy after
    # 300 epochs (test NLL 0.117, worse than one network's 0.053, and knowledge uncertainty in streaks
    # through the data); sharing half of each batch, as Havasi et al. do for small networks, gives 0.067.
    input_repetition: float = 0.5
    batch_repetition: int = 1
    experiments: tuple[str, ...] = ("regression", "classification", "part2")


FULL = Settings(part_two_epochs=10_000)
PRACTICAL = Settings(clip_norm=None, experiments=("regression",))
EXPERIMENTS = ("regression", "classification", "part2")
METHOD_LABELS = {"ensemble": "deep ensemble", "mimo": "MIMO", "batchensemble": "BatchEnsemble"}


@dataclasses.dataclass(frozen=True)
class Run:
    members: int
    adversarial: str
    method: str = "ensemble"

    @property
    def label(self) -> str:
        if self.method != "ensemble":
            return f"{METHOD_LABELS[self.method]} {self.members}"
        kind = "one network" if self.members == 1 else f"ensemble of {self.members}"
        return kind + (" + FGSM" if self.adversarial == "fgsm" else "")


def _record(experiment: str, head: str, run: Run, ensemble: Ensemble, **metrics: float) -> dict[str, Any]:
    assert ensemble.timings is not None
    return {
        "experiment": experiment,
        "head": head,
        "method": run.method,
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
    runs = [
        Run(1, "none"),
        Run(1, "fgsm"),
        Run(settings.regression_members, "none"),
        Run(settings.regression_members, "fgsm"),
    ]
    records, histories = [], {}
    for head in ("gaussian", "laplace"):
        figure = Figure(figsize=(12, 8.5))
        for ax, run in zip(figure.subplots(2, 2).ravel(), runs):
            ensemble = fit(
                x,
                y,
                head=head,
                hidden=settings.regression_hidden,
                members=run.members,
                epochs=settings.regression_steps,
                learning_rate=settings.regression_lr,
                adversarial=FGSM(settings.regression_eps, relative=False) if run.adversarial == "fgsm" else None,
                clip_norm=settings.clip_norm,
                seed=settings.seed,
                progress=False,
            )
            prediction = cast(RegressionPrediction, ensemble.predict(x_test))  # a regression head
            nll = float(np.mean(prediction.nll(jnp.asarray(y_test))))
            rmse = float(np.sqrt(np.mean((np.asarray(prediction.mean) - y_test) ** 2)))
            records.append(_record("regression", head, run, ensemble, nll=nll, rmse=rmse))
            histories[f"{head}, {run.label}"] = ensemble.history
            plots.regression_panel(
                ax,
                ensemble,
                x,
                y,
                truth=toy.cubic_truth,
                title=f"{head}, {run.label}: test NLL {nll:.2f}, RMSE {rmse:.2f}",
            )
        figure.axes[0].legend(fontsize=8, loc="upper left")
        figure.tight_layout()
        plots.save(figure, out / f"regression_{head}.png")
    return records, histories


def parameter_count(ensemble: Ensemble) -> int:
    """Trained parameters of all networks (batch-norm statistics not counted)."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(ensemble.params)))


def predict_seconds(ensemble: Ensemble, x: np.ndarray, repeats: int = 3) -> float:
    """Seconds for a prediction with its uncertainty decomposition on ``x``: the best of ``repeats`` after
    a warm-up call (which compiles)."""

    def once() -> None:
        jax.block_until_ready(ensemble.predict(x).uncertainty)

    once()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    return best


def knowledge_far_near(ensemble: Ensemble, x: np.ndarray, resolution: int = 60) -> float:
    """Mean knowledge uncertainty (mutual information) on the grid of the figures far from the data
    (farther than 0.5 from every training point) over its mean near the data (within 0.1): above 1 when
    the members disagree more away from the data, as they should."""
    _, _, points = plots.grid_over(x, resolution, 0.5)
    distance = cKDTree(x).query(points)[0]
    knowledge = np.asarray(cast(ClassificationPrediction, ensemble.predict(points)).uncertainty.knowledge)
    far, near = knowledge[distance > 0.5], knowledge[distance < 0.1]
    return float(np.mean(far) / max(np.mean(near), 1e-12)) if len(far) and len(near) else float("nan")


def _devices(run: Run) -> int | None:
    """One device for fits of one network (one member, MIMO, BatchEnsemble): several CPU devices would split
    its 100-row batches and all-reduce every step, which buys nothing at this size, and XLA's CPU
    all-reduce aborts the process when one device thread waits 40 s (seen twice on a 2-core machine at
    load 17). Deep ensembles keep every device (members are split, no all-reduce)."""
    return 1 if run.members == 1 or run.method != "ensemble" else None


def _spirals(settings: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = toy.spirals(settings.spiral_points, noise=settings.spiral_noise, seed=settings.seed)
    x_test, y_test = toy.spirals(max(settings.test_points // 3, 1), noise=settings.spiral_noise, seed=settings.seed + 1)
    return x, y, x_test, y_test


def _classification_run(
    settings: Settings, out: Path, run: Run, name: str, **options: Any
) -> tuple[dict[str, Any], Ensemble]:
    """Train one spiral run with the practical's settings, score it, draw its four panels into ``name``."""
    x, y, x_test, y_test = _spirals(settings)
    ensemble = fit(
        x,
        y,
        head="categorical",
        hidden=settings.classification_hidden,
        members=run.members,
        method=run.method,
        learning_rate=settings.classification_lr,
        weight_decay=settings.classification_weight_decay,
        adversarial=FGSM(settings.classification_eps, relative=False) if run.adversarial == "fgsm" else None,
        clip_norm=settings.clip_norm,
        seed=settings.seed,
        progress=False,
        devices=_devices(run),
        **options,
    )
    prediction = cast(ClassificationPrediction, ensemble.predict(x_test))  # a categorical head
    nll = float(np.mean(prediction.nll(jnp.asarray(y_test))))
    accuracy = float(np.mean(np.asarray(prediction.label) == y_test))
    _, _, grid = plots.grid_over(x, 150, 0.5)  # the figure's grid: 22,500 points
    record = _record(
        "classification",
        "categorical",
        run,
        ensemble,
        nll=nll,
        accuracy=accuracy,
        knowledge_far_near=knowledge_far_near(ensemble, x),
    )
    record.update(parameters=parameter_count(ensemble), predict_seconds=round(predict_seconds(ensemble, grid), 4))
    figure = plots.classification_figure(
        ensemble, x, y, title=f"spirals, {run.label}: test NLL {nll:.3f}, accuracy {accuracy:.3f}"
    )
    plots.save(figure, out / f"{name}.png")
    return record, ensemble


def classification(settings: Settings, out: Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Spirals: one network, an ensemble, and an ensemble with FGSM; one four-panel figure each."""
    m = settings.classification_members
    records, histories = [], {}
    for run in (Run(1, "none"), Run(m, "none"), Run(m, "fgsm")):
        name = f"classification_{'single' if run.members == 1 else f'ensemble{run.members}'}"
        name += "_fgsm" if run.adversarial == "fgsm" else ""
        record, ensemble = _classification_run(settings, out, run, name, epochs=settings.classification_epochs)
        records.append(record)
        histories[f"spirals, {run.label}"] = ensemble.history
    return records, histories


def part_two(settings: Settings, out: Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The practical's Part II: MIMO and BatchEnsemble of ``part_two_members`` on the spirals, with the
    classification's network (2-150-150-3 per member), Adam and weight decay; one four-panel figure each."""
    m = settings.part_two_members
    records, histories = [], {}
    for method in ("mimo", "batchensemble"):
        options: dict[str, Any] = {"epochs": settings.part_two_epochs}
        if method == "mimo":
            options.update(input_repetition=settings.input_repetition, batch_repetition=settings.batch_repetition)
        run = Run(m, "none", method)
        record, ensemble = _classification_run(settings, out, run, f"classification_{method}{m}", **options)
        records.append(record)
        histories[f"spirals, {run.label}"] = ensemble.history
    return records, histories


def comparison_markdown(records: list[dict[str, Any]], settings: Settings) -> str:
    """The Part II table: one network, the deep ensemble, MIMO and BatchEnsemble on the spirals."""
    rows = [r for r in records if r["experiment"] == "classification" and r["adversarial"] == "none"]
    single = next((r for r in rows if r["method"] == "ensemble" and r["members"] == 1), None)
    lines = [
        f"## Part II: ensembles inside one network (spirals, 3 x {settings.spiral_points} points, "
        f"noise {settings.spiral_noise:g})",
        "",
        f"Network {'-'.join(map(str, (2, *settings.classification_hidden, 3)))} per member, Adam "
        f"{settings.classification_lr:g}, weight decay {settings.classification_weight_decay:g}, minibatches of 100; "
        f"one network and the deep ensemble {settings.classification_epochs} epochs, MIMO and BatchEnsemble "
        f"{settings.part_two_epochs} (MIMO input repetition {settings.input_repetition:g}, batch repetition "
        f"{settings.batch_repetition}). Prediction seconds: the figure's 150 x 150 grid with the uncertainty "
        "decomposition (best of 3). Knowledge far / near: mean mutual information far from the data over "
        "near it.",
        "",
        "| run | parameters | train s | train / one network | predict s | predict / one network | test accuracy | test NLL | knowledge far / near |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        train_ratio = (
            f"{r['train_seconds'] / single['train_seconds']:.2f}" if single and single["train_seconds"] else "n/a"
        )
        predict_ratio = (
            f"{r['predict_seconds'] / single['predict_seconds']:.2f}" if single and single["predict_seconds"] else "n/a"
        )
        label = Run(r["members"], r["adversarial"], r["method"]).label
        lines.append(
            f"| {label} | {r['parameters']:,} | {r['train_seconds']:.2f} | {train_ratio} | {r['predict_seconds']:.4f} | "
            f"{predict_ratio} | {_number(r['accuracy'], '.4f')} | {_number(r['nll'], '.4f')} | "
            f"{_number(r['knowledge_far_near'], '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def run(out: str | Path, settings: Settings = Settings(), *, echo: bool = True) -> list[dict[str, Any]]:
    """Run the experiments of ``settings.experiments``, write figures and ``metrics.json`` into ``out``, and
    return the records."""
    from rich.console import Console
    from rich.table import Table

    unknown = [e for e in settings.experiments if e not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown demo experiments {unknown}; choose from {EXPERIMENTS}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console(quiet=not echo, width=None if sys.stdout.isatty() else 110)
    stages: dict[str, float] = {}
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    histories: dict[str, np.ndarray] = {}
    jobs = {
        "regression": ("regression (8 runs, 2 figures)", regression),
        "classification": ("classification (3 runs, 3 figures)", classification),
        "part2": ("part II: MIMO, BatchEnsemble (2 runs, 2 figures)", part_two),
    }
    for experiment in EXPERIMENTS:
        if experiment not in settings.experiments:
            continue
        stage, job = jobs[experiment]
        begin = time.perf_counter()
        new_records, new_histories = job(settings, out)
        records += new_records
        histories.update(new_histories)
        stages[stage] = time.perf_counter() - begin
        console.print(f"{stage} done in {stages[stage]:.1f} s")

    begin = time.perf_counter()
    plots.save(plots.training_curves(histories, log_scale=True), out / "training_curves.png")
    write_json(out / "metrics.json", records)
    if "part2" in settings.experiments:
        (out / "part2.md").write_text(comparison_markdown(records, settings))
    stages["training curves and metrics.json"] = time.perf_counter() - begin
    stages["total"] = time.perf_counter() - started

    table = Table(title="deepens demo: test metrics on a fresh sample from each generator")
    for column in (
        "experiment",
        "head",
        "method",
        "members",
        "adversarial",
        "NLL",
        "RMSE / acc.",
        "compile s",
        "train s",
    ):
        table.add_column(
            column, justify="left" if column in ("experiment", "head", "method", "adversarial") else "right"
        )
    for r in records:
        score = _number(r["rmse"], ".3f") if "rmse" in r else _number(r["accuracy"], ".4f")
        table.add_row(
            r["experiment"],
            r["head"],
            r["method"],
            str(r["members"]),
            r["adversarial"],
            _number(r["nll"], ".3f"),
            score,
            f"{r['compile_seconds']:.2f}",
            f"{r['train_seconds']:.2f}",
        )
    console.print(table)
    if "part2" in settings.experiments:
        console.print(comparison_markdown(records, settings))
    for stage, seconds in stages.items():
        console.print(f"  {stage:<50} {seconds:6.1f} s")
    console.print(f"figures and metrics.json in {out.resolve()}")
    return records


def _number(value: float | None, spec: str) -> str:
    return "not finite" if value is None else format(value, spec)
