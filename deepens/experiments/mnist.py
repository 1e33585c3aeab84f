"""The paper's MNIST experiments (sections 3.4-3.6): the main job behind ``deepens reproduce mnist``.

- Figure 2(a): an MLP with 3 hidden layers of 200 ReLU units and batch normalisation, softmax
  cross-entropy, ensembles of M = 1..10 with and without adversarial training (FGSM, eps = 1% of the input
  range: 0.01 on pixels scaled to [0, 1]); test error, NLL and Brier score against M.
- Figure 3(a): histograms of the predictive entropy on the MNIST test set (known classes) and on
  NotMNIST (unknown classes) for M = 1, 5, 10, with the AUROC of entropy as an OOD detector.
- Figure 6: accuracy against a confidence threshold on MNIST test + NotMNIST together, where a NotMNIST
  image is never correct.

Ten members are trained once per variant, together; member i is the same network whatever M (see
:mod:`deepens.train`), so the ensemble of M is the first M members and every M is scored from one set
of member outputs.

Beside the paper's columns (unchanged), the calibrated columns of
:mod:`deepens.experiments.mnist_calibration`: each variant retrained on 90% of the training rows, with one
temperature fitted by NLL on the other 10%, for M = 1 and the largest M (``Settings.calibrated``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optax

from deepens import metrics
from deepens.adversarial import FGSM
from deepens.data import mnist as mnist_data
from deepens.ensemble import Ensemble
from deepens.experiments import figures, mnist_calibration, paper
from deepens.io import write_json
from deepens.models import MLP
from deepens.prediction import ClassificationPrediction
from deepens.train import fit

VARIANTS = ("ensemble", "ensemble_at")
OOD_SETS = ("notmnist", "fashion-mnist")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The experiment's settings (tests shrink them).

    Attributes:
      members: the largest ensemble (M = 1..members are all scored).
      learning_rate, schedule: Adam's step size, constant or cosine-decayed to 0 over training.
      eps: FGSM step on pixels in [0, 1] (0.01 = 1% of the input range, the paper's setting).
      train_limit, test_limit: use only the first that many training / test images (None: all).
      histogram_members: the ensemble sizes of the entropy histograms and selective curves.
      devices: train on the first that many devices (None: all, on every host).
      calibrated: also retrain each variant on ``1 - calibration_fraction`` of the training rows and fit a
        temperature on the rest (the calibrated columns; about doubles the training time). Not used by
        the dataset-shift study, which holds out its own validation rows.
      calibration_fraction: the held-out fraction of the training rows (stratified) for the temperature.
    """

    data_dir: str | None = None
    members: int = 10
    epochs: int = 20
    batch_size: int = 100
    hidden: tuple[int, ...] = (200, 200, 200)
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    eps: float = 0.01
    train_limit: int | None = None
    test_limit: int | None = None
    variants: tuple[str, ...] = VARIANTS
    histogram_members: tuple[int, ...] = (1, 5, 10)
    seed: int = 0
    devices: int | None = None
    calibrated: bool = True
    calibration_fraction: float = 0.1

    def __post_init__(self) -> None:
        # Checked here, not only before training: ``reproduce all`` runs UCI first.
        fraction = self.calibration_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
            raise ValueError(f"calibration_fraction must lie strictly inside (0, 1), got {fraction!r}")

    def optimizer(self, total_steps: int) -> optax.GradientTransformation:
        if self.schedule == "cosine":
            return optax.adam(optax.cosine_decay_schedule(self.learning_rate, total_steps))
        if self.schedule == "constant":
            return optax.adam(self.learning_rate)
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")


def _scores(labels: np.ndarray, outputs: np.ndarray, ood_outputs: dict[str, np.ndarray]) -> dict[str, float]:
    """Every score of one ensemble (member logits ``(M, N, K)``) on the test set and the OOD sets."""
    prediction = ClassificationPrediction(outputs)
    summary = metrics.evaluate(prediction, labels)
    record = {
        "error": summary["error"],
        "nll": summary["nll"],
        "brier": summary["brier_per_class"],
        "brier_per_class": summary["brier_per_class"],
        "brier_summed": summary["brier_summed"],
        "ece": summary["ece"],
        "mce": summary["mce"],
    }
    inside = metrics.uncertainty_scores(prediction)
    for name, out in ood_outputs.items():
        outside = metrics.uncertainty_scores(ClassificationPrediction(out))
        prefix = "ood" if name == "notmnist" else name.replace("-", "_")
        result = metrics.ood_detection(inside["entropy"], outside["entropy"])
        record[f"{prefix}_auroc"] = result.auroc
        record[f"{prefix}_aupr"] = result.aupr
        record[f"{prefix}_fpr_at_95_tpr"] = result.fpr_at_95_tpr
        record[f"{prefix}_auroc_mutual_information"] = metrics.ood_detection(
            inside["mutual_information"], outside["mutual_information"]
        ).auroc
        record[f"{prefix}_auroc_max_probability"] = metrics.ood_detection(
            inside["one_minus_max_probability"], outside["one_minus_max_probability"]
        ).auroc
    return {k: float(v) for k, v in record.items()}


def _train(x: np.ndarray, y: np.ndarray, variant: str, settings: Settings, *, echo: bool, description: str) -> Any:
    """One variant's ensemble of ``settings.members`` on ``(x, y)``; the schedule spans its own steps."""
    steps = settings.epochs * -(-len(x) // min(settings.batch_size, len(x)))
    return fit(
        x,
        y,
        head="categorical",
        model=MLP(tuple(settings.hidden), 10, batch_norm=True),
        members=settings.members,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        optimizer=settings.optimizer(steps),
        adversarial=FGSM(settings.eps, relative=False) if variant == "ensemble_at" else None,
        num_classes=10,
        seed=settings.seed,
        devices=settings.devices,
        progress=echo,
        description=description,
    )


def _paper_columns(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """The paper's columns of ``mnist.json`` (every key but ``calibrated``)."""
    return {v: r for v, r in results.items() if v in VARIANTS}


def _timings(ensemble: Ensemble, evaluate_began: float) -> dict[str, float]:
    """Compile, train and (since ``evaluate_began``, a ``perf_counter`` reading) evaluate seconds of a fit."""
    assert ensemble.timings is not None  # fit always records them
    return {
        "compile_seconds": round(ensemble.timings.compile_s, 2),
        "train_seconds": round(ensemble.timings.train_s, 2),
        "evaluate_seconds": round(time.perf_counter() - evaluate_began, 2),
    }


def run(out: str | Path, settings: Settings = Settings(), *, echo: bool = True) -> dict[str, Any]:
    """Train, score and draw; write ``mnist.json``, ``mnist_run.json``, ``mnist.md`` and the figures."""
    from rich.console import Console

    console = Console(quiet=not echo, width=None if sys.stdout.isatty() else 120)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = [v for v in settings.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {VARIANTS}")
    started = time.perf_counter()
    train, test = mnist_data.load_mnist(settings.data_dir)
    train, test = train.take(settings.train_limit), test.take(settings.test_limit)
    ood_sets = {}
    for name in OOD_SETS:
        try:
            ood_sets[name] = mnist_data.load_test_set(name, settings.data_dir).take(settings.test_limit)
        except FileNotFoundError:
            if name == "notmnist":
                raise
    x_train, y_train = train.features(), train.labels
    x_test, y_test = test.features(), test.labels
    # Checked before anything trains: a bad fraction or too few held-out rows fails here.
    fit_rows, cal_rows = (
        mnist_calibration.holdout(y_train, settings.calibration_fraction, settings.seed)
        if settings.calibrated
        else (None, None)
    )
    load_s = time.perf_counter() - started

    results: dict[str, dict[str, dict[str, float]]] = {}
    timings: dict[str, dict[str, float]] = {}
    histograms: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    hist_auroc: dict[str, dict[int, float]] = {}
    selective: dict[str, Any] = {}
    diagrams: dict[str, Any] = {}
    for variant in settings.variants:
        ensemble = _train(x_train, y_train, variant, settings, echo=echo, description=f"MNIST {variant}")
        begin = time.perf_counter()
        outputs = np.asarray(ensemble.member_outputs(x_test))
        ood_outputs = {name: np.asarray(ensemble.member_outputs(s.features())) for name, s in ood_sets.items()}
        results[variant] = {
            str(m): _scores(y_test, outputs[:m], {k: v[:m] for k, v in ood_outputs.items()})
            for m in range(1, settings.members + 1)
        }
        sizes = sorted({m for m in settings.histogram_members if m <= settings.members} | {settings.members})
        histograms[variant], hist_auroc[variant] = {}, {}
        for m in sizes:
            p_in = ClassificationPrediction(outputs[:m])
            p_out = ClassificationPrediction(ood_outputs["notmnist"][:m])
            histograms[variant][m] = (np.asarray(p_in.entropy), np.asarray(p_out.entropy))
            hist_auroc[variant][m] = results[variant][str(m)]["ood_auroc"]
            correct = np.r_[np.asarray(p_in.label) == y_test, np.zeros(len(np.asarray(p_out.label)), bool)]
            confidence = np.r_[np.asarray(p_in.confidence), np.asarray(p_out.confidence)]
            selective[f"{figures.VARIANT_LABELS[variant]}, M = {m}"] = metrics.accuracy_vs_confidence(
                correct, confidence, np.linspace(0.0, 0.99, 100)
            )
        for m in (1, settings.members):
            diagrams[f"{variant}, M = {m}"] = metrics.reliability_diagram(
                y_test, np.asarray(ClassificationPrediction(outputs[:m]).probs, np.float64)
            )
        timings[variant] = _timings(ensemble, begin)
        final = results[variant][str(settings.members)]
        console.print(
            f"{variant}: M = {settings.members}: error {100 * final['error']:.2f}%, NLL {final['nll']:.4f}, "
            f"NotMNIST AUROC {final['ood_auroc']:.3f}; compile {timings[variant]['compile_seconds']:.1f} s, "
            f"train {timings[variant]['train_seconds']:.1f} s"
        )

    calibrated: dict[str, dict[str, dict[str, Any]]] = {}
    if fit_rows is not None and cal_rows is not None:
        for variant in settings.variants:
            ensemble = _train(
                x_train[fit_rows],
                y_train[fit_rows],
                variant,
                settings,
                echo=echo,
                description=f"MNIST {variant}, held-out rows",
            )
            begin = time.perf_counter()
            calibrated[variant] = mnist_calibration.score(
                np.asarray(ensemble.member_outputs(x_train[cal_rows])),
                y_train[cal_rows],
                np.asarray(ensemble.member_outputs(x_test)),
                y_test,
                {name: np.asarray(ensemble.member_outputs(s.features())) for name, s in ood_sets.items()},
                sorted({1, settings.members}),
            )
            timings[f"{variant}_calibrated"] = _timings(ensemble, begin)
            last = calibrated[variant][str(settings.members)]
            console.print(
                f"{variant}, held-out rows: M = {settings.members}: T = {last['temperature']:.3f}, NLL "
                f"{last['before']['nll']:.4f} -> {last['after']['nll']:.4f}, ECE {last['before']['ece']:.4f} -> "
                f"{last['after']['ece']:.4f}"
            )

    begin = time.perf_counter()
    figures.save(
        figures.metrics_vs_members({v: {int(m): r for m, r in results[v].items()} for v in results}),
        out / "mnist_vs_members.png",
    )
    figures.save(figures.entropy_histograms(histograms, auroc=hist_auroc), out / "mnist_entropy.png")
    figures.save(figures.accuracy_vs_confidence(selective), out / "mnist_accuracy_vs_confidence.png")
    figures.save(figures.reliability_diagrams(diagrams), out / "mnist_reliability.png")
    figure_s = time.perf_counter() - begin
    total = time.perf_counter() - started
    run_info = {
        "settings": dataclasses.asdict(settings),
        "data": {
            "train": list(train.files),
            "train_images_approximate": train.approximate,
            "train_rows": len(train),
            "test_rows": len(test),
            "ood_sets": {k: len(v) for k, v in ood_sets.items()},
        }
        | (
            {"calibration": {"fit_rows": len(fit_rows), "calibration_rows": len(cal_rows)}}
            if fit_rows is not None and cal_rows is not None
            else {}
        ),
        "timings": timings
        | {"load_seconds": round(load_s, 2), "figures_seconds": round(figure_s, 2), "total_seconds": round(total, 2)},
        "targets": targets(results, settings.members),
        "selective_accuracy": {
            label: {
                "thresholds": [round(t, 3) for t in c.thresholds[::10]],
                "accuracy": [None if np.isnan(a) else round(float(a), 5) for a in c.accuracy[::10]],
            }
            for label, c in selective.items()
        },
    }
    written: dict[str, Any] = dict(results) | ({"calibrated": calibrated} if calibrated else {})
    write_json(out / "mnist.json", written)
    write_json(out / "mnist_run.json", run_info)
    (out / "mnist.md").write_text(markdown(written, run_info))
    console.print(f"MNIST done in {total:.1f} s; results in {out.resolve()}")
    return {"results": written, "run": run_info}


def targets(results: dict[str, Any], members: int) -> dict[str, Any]:
    """The issue's targets: error <= 1.5% at M = 5 with FGSM; NLL falling with M; NotMNIST AUROC rising
    with M (each variant, from M = 1 to the largest M, and never by more than noise in between)."""
    results = _paper_columns(results)
    out: dict[str, Any] = {}
    if "ensemble_at" in results and "5" in results["ensemble_at"]:
        error = results["ensemble_at"]["5"]["error"]
        out["error_at_5_fgsm"] = {"value": error, "met": error <= 0.015}
    for variant, by_m in results.items():
        nll = [by_m[str(m)]["nll"] for m in range(1, members + 1)]
        auroc = [by_m[str(m)]["ood_auroc"] for m in range(1, members + 1)]
        out[f"{variant}_nll_falls"] = {
            "first": nll[0],
            "last": nll[-1],
            "met": nll[-1] < nll[0],
            "monotone": bool(np.all(np.diff(nll) <= 1e-4)),
        }
        out[f"{variant}_auroc_rises"] = {
            "first": auroc[0],
            "last": auroc[-1],
            "met": auroc[-1] > auroc[0],
            "monotone": bool(np.all(np.diff(auroc) >= -1e-3)),
        }
    return out


def markdown(written: dict[str, Any], run_info: dict[str, Any]) -> str:
    """The MNIST tables and figures (``written``: the contents of ``mnist.json``)."""
    results = _paper_columns(written)
    s = run_info["settings"]
    lines = [
        "## MNIST: ensemble size, adversarial training and out-of-distribution inputs",
        "",
        f"MLP {' x '.join(map(str, s['hidden']))} ReLU with batch normalisation, softmax cross-entropy, "
        f"{s['epochs']} epochs, batch {s['batch_size']}, Adam {s['learning_rate']:g} ({s['schedule']}), "
        f"FGSM eps {s['eps']:g} on pixels in [0, 1], seed {s['seed']}. Training images: "
        f"{', '.join(run_info['data']['train'])} ({run_info['data']['train_rows']} rows"
        f"{'; an approximate reconstruction of the official file, within one grey level' if run_info['data']['train_images_approximate'] else ''}); "
        f"{run_info['data']['test_rows']} test images; OOD sets {run_info['data']['ood_sets']}.",
        "",
        "Brier is divided by K = 10, as the paper reports it (`brier_summed` in mnist.json is the sum over "
        "classes). OOD AUROC: predictive entropy as the score, MNIST test against NotMNIST.",
        "",
    ]
    lo_e, hi_e = paper.FIGURE2A_AXES["error_percent"]
    lo_n, hi_n = paper.FIGURE2A_AXES["nll"]
    lines += [
        f"The paper prints no values for Figure 2(a); its panels span error {lo_e}-{hi_e}%, NLL {lo_n}-{hi_n} "
        f"and Brier/K {paper.FIGURE2A_AXES['brier_per_class'][0]}-{paper.FIGURE2A_AXES['brier_per_class'][1]} "
        "for M = 1..15 (all methods).",
        "",
    ]
    variants = list(results)
    header = "| M | " + " | ".join(f"{v} error % | {v} NLL | {v} Brier/K | {v} AUROC" for v in variants) + " |"
    lines += [header, "|---|" + "---|---|---|---|" * len(variants)]
    for m in sorted({int(k) for v in variants for k in results[v]}):
        cells = []
        for v in variants:
            r = results[v][str(m)]
            cells.append(f"{100 * r['error']:.2f} | {r['nll']:.4f} | {r['brier']:.5f} | {r['ood_auroc']:.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| variant, M | ECE | AUPR | FPR at 95% TPR | AUROC (mutual information) | AUROC (1 - max prob) | Fashion-MNIST AUROC |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        for m in sorted({1, 5, max(int(k) for k in results[v])} & {int(k) for k in results[v]}):
            r = results[v][str(m)]
            fashion = f"{r['fashion_mnist_auroc']:.3f}" if "fashion_mnist_auroc" in r else "n/a"
            lines.append(
                f"| {v}, {m} | {r['ece']:.4f} | {r['ood_aupr']:.3f} | {r['ood_fpr_at_95_tpr']:.3f} | "
                f"{r['ood_auroc_mutual_information']:.3f} | {r['ood_auroc_max_probability']:.3f} | {fashion} |"
            )
    lines += ["", "Targets:", ""]
    for key, t in run_info["targets"].items():
        extra = (
            f" (value {100 * t['value']:.2f}%)"
            if "value" in t
            else f" ({t['first']:.4f} -> {t['last']:.4f}, monotone: {t['monotone']})"
        )
        lines.append(f"- {key}: {'met' if t['met'] else '**not met**'}{extra}")
    lines += ["", *mnist_calibration.markdown(written.get("calibrated", {}), results, run_info)]
    t = run_info["timings"]
    lines += [
        "",
        "Time: "
        + "; ".join(
            f"{v}: compile {t[v]['compile_seconds']:.1f} s, train {t[v]['train_seconds']:.1f} s, evaluate "
            f"{t[v]['evaluate_seconds']:.1f} s"
            for v in variants
        )
        + "".join(
            f"; {v} on the held-out split: train {t[k]['train_seconds']:.1f} s, evaluate {t[k]['evaluate_seconds']:.1f} s"
            for v in variants
            if (k := f"{v}_calibrated") in t
        )
        + f"; total {t['total_seconds']:.1f} s.",
        "",
        "![error, NLL and Brier against M](mnist_vs_members.png)",
        "",
        "![entropy histograms](mnist_entropy.png)",
        "",
        "![accuracy against confidence](mnist_accuracy_vs_confidence.png)",
        "",
        "![reliability](mnist_reliability.png)",
        "",
    ]
    return "\n".join(lines)
