"""Dataset shift on MNIST (Ovadia et al. 2019): the job behind ``deepens reproduce shift``.

The MLP of :mod:`deepens.experiments.mnist` is trained on the MNIST training rows minus a held-out
validation slice, as a deep ensemble of M members (plain, and with FGSM adversarial training). Methods:

- ``single``: the ensemble's first member alone (member i is the same network whatever M);
- ``temperature``: that network with its logits divided by a temperature fitted on the validation rows;
- ``ensemble``: all M members; ``ensemble_at``: all M members trained with FGSM;
- ``mimo`` and ``batchensemble``: M members inside one network (:mod:`deepens.methods`), the same MLP
  without batch normalisation (neither widens it).

Each is scored by :func:`deepens.metrics.shift_curve` on the test images rotated by 0..180 degrees,
translated by 0..14 pixels and under every corruption of :mod:`deepens.data.shift` at intensity 0..5.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import special

from deepens.adversarial import FGSM
from deepens.calibration import fit_temperature
from deepens.data import mnist as mnist_data
from deepens.data import shift as shift_data
from deepens.experiments import mnist
from deepens.io import write_json
from deepens.metrics import accuracy_vs_confidence, shift_curve
from deepens.models import MLP
from deepens.plots import save
from deepens.prediction import ClassificationPrediction
from deepens.train import fit

METHODS = ("single", "temperature", "ensemble", "ensemble_at", "mimo", "batchensemble")
TRAINED = {"ensemble": "ensemble", "ensemble_at": "ensemble", "mimo": "mimo", "batchensemble": "batchensemble"}
ROTATIONS = tuple(range(0, 181, 15))
TRANSLATIONS = tuple(range(0, 15))


@dataclasses.dataclass(frozen=True)
class Settings(mnist.Settings):
    """:class:`deepens.experiments.mnist.Settings` with M = 5 and a validation slice.

    Attributes:
      validation_fraction: the last that fraction of the training rows, held out to fit the temperature.
      methods: which of :data:`METHODS` to train and score (``single`` and ``temperature`` need ``ensemble``).
    """

    members: int = 5
    validation_fraction: float = 1 / 12
    methods: tuple[str, ...] = METHODS

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"shift methods must be some of {METHODS}, got {self.methods!r}")
        if {"single", "temperature"} & set(self.methods) and "ensemble" not in self.methods:
            raise ValueError("the single and temperature methods are the ensemble's first member: add 'ensemble'")


def default_shifts() -> list[tuple[str, float]]:
    """Rotations 0..180 by 15 degrees, translations 0..14 pixels, every corruption at 1..5 (0 is the
    unshifted set, already rotation 0)."""
    rotations: list[tuple[str, float]] = [("rotate", a) for a in ROTATIONS]
    translations: list[tuple[str, float]] = [("translate", p) for p in TRANSLATIONS]
    shifts = rotations + translations
    return shifts + [(name, i) for name in shift_data.CORRUPTIONS for i in range(1, 6)]


class _CachedOutputs:
    """Member logits of one ensemble on shifted images, computed once per distinct image batch (the
    methods sharing an ensemble see the same shifted sets)."""

    def __init__(self, ensemble: Any) -> None:
        self.ensemble = ensemble
        self.cache: dict[bytes, np.ndarray] = {}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        key = hashlib.blake2b(np.ascontiguousarray(images).tobytes(), digest_size=16).digest()
        if key not in self.cache:
            self.cache[key] = np.asarray(self.ensemble.member_outputs(images), np.float32)
        return self.cache[key]


def run(out: str | Path, settings: Settings = Settings(), *, echo: bool = True) -> dict[str, Any]:
    """Train, shift, score and draw; write ``shift.json`` (one record per method, shift kind and
    intensity), ``shift_run.json`` (settings, temperature, timings, findings), ``shift.md`` and four figures."""
    say = print if echo else (lambda *a, **k: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not 0.0 < settings.validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {settings.validation_fraction}")
    started = time.perf_counter()
    train, test = mnist_data.load_mnist(settings.data_dir)
    train, test = train.take(settings.train_limit), test.take(settings.test_limit)
    x_all, y_all = train.features(), train.labels
    n_val = max(1, int(round(settings.validation_fraction * len(x_all))))
    x_train, y_train, x_val, y_val = x_all[:-n_val], y_all[:-n_val], x_all[-n_val:], y_all[-n_val:]
    x_test, y_test = test.features(), test.labels
    timings: dict[str, float] = {"load_seconds": round(time.perf_counter() - started, 2)}
    say(
        f"loaded {len(x_train)} training, {n_val} validation, {len(x_test)} test images "
        f"in {timings['load_seconds']:.1f} s"
    )

    steps = settings.epochs * -(-len(x_train) // min(settings.batch_size, len(x_train)))
    ensembles = {}
    for variant in (v for v in TRAINED if v in settings.methods):
        begin = time.perf_counter()
        adversarial = FGSM(settings.eps, relative=False) if variant == "ensemble_at" else None
        slotted = variant in ("mimo", "batchensemble")
        ensembles[variant] = _CachedOutputs(
            fit(
                x_train,
                y_train,
                head="categorical",
                model=MLP(tuple(settings.hidden), 10, batch_norm=not slotted),
                members=settings.members,
                epochs=settings.epochs,
                batch_size=settings.batch_size,
                optimizer=settings.optimizer(steps),
                adversarial=adversarial,
                num_classes=10,
                seed=settings.seed,
                devices=settings.devices,
                progress=echo,
                description=f"shift: {variant}",
                method=variant if slotted else "ensemble",
            )
        )
        timings[f"train_{variant}_seconds"] = round(time.perf_counter() - begin, 2)
        say(f"trained {variant} (M = {settings.members}) in {timings[f'train_{variant}_seconds']:.1f} s")

    temperature = float("nan")
    if "temperature" in settings.methods:
        val_log_probs = special.log_softmax(ensembles["ensemble"](x_val)[0].astype(np.float64), axis=-1)
        temperature = fit_temperature(val_log_probs, y_val)
        say(f"temperature fitted on {n_val} validation rows: T = {temperature:.4f}")
    available = {
        "single": lambda x: ClassificationPrediction(ensembles["ensemble"](x)[:1]),
        "temperature": lambda x: ClassificationPrediction(ensembles["ensemble"](x)[:1] / temperature),
        **{v: (lambda x, v=v: ClassificationPrediction(ensembles[v](x))) for v in ensembles},
    }
    predictors = {m: available[m] for m in METHODS if m in settings.methods}
    shifts = default_shifts()
    results: dict[str, list[dict[str, Any]]] = {}
    for method, predict in predictors.items():
        begin = time.perf_counter()
        results[method] = shift_curve(predict, x_test, y_test, shifts=shifts, seed=settings.seed)
        timings[f"shift_{method}_seconds"] = round(time.perf_counter() - begin, 2)
        say(f"scored {method} on {len(shifts)} shifts in {timings[f'shift_{method}_seconds']:.1f} s")

    thresholds = np.linspace(0.0, 0.95, 20)
    selective = {}
    for method, predict in predictors.items():
        correct, confidence = [], []
        for angle in ROTATIONS:
            prediction = predict(shift_data.rotate(x_test, angle))  # cached: the same images as scored
            correct.append(np.asarray(prediction.label) == y_test)
            confidence.append(np.asarray(prediction.confidence))
        selective[method] = accuracy_vs_confidence(np.concatenate(correct), np.concatenate(confidence), thresholds)

    begin = time.perf_counter()
    save(confidence_figure(selective), out / "shift_confidence_vs_accuracy.png")
    save(curves_figure(results, "rotate", "rotation (degrees)"), out / "shift_rotation.png")
    save(curves_figure(results, "translate", "translation (pixels)"), out / "shift_translation.png")
    save(corruption_boxes(results), out / "shift_corruptions.png")
    timings["figures_seconds"] = round(time.perf_counter() - begin, 2)
    timings["total_seconds"] = round(time.perf_counter() - started, 2)
    run_info = {
        "settings": dataclasses.asdict(settings),
        "temperature": temperature,
        "data": {
            "train": list(train.files),
            "train_rows": len(x_train),
            "validation_rows": n_val,
            "test_rows": len(x_test),
            "train_images_approximate": train.approximate,
        },
        "timings": timings,
        "findings": findings(results),
        "rotated_accuracy_vs_confidence": {
            "thresholds": [round(float(t), 3) for t in thresholds],
            **{m: [None if np.isnan(a) else float(a) for a in c.accuracy] for m, c in selective.items()},
        },
    }
    records = [{"method": m, **r} for m, rs in results.items() for r in rs]
    write_json(out / "shift.json", records)
    write_json(out / "shift_run.json", run_info)
    (out / "shift.md").write_text(markdown(results, run_info))
    say(f"dataset shift done in {timings['total_seconds']:.1f} s; results in {out.resolve()}")
    return {"results": results, "run": run_info}


def _series(records: list[dict[str, Any]], kind: str, field: str) -> tuple[list[float], list[float]]:
    chosen = [r for r in records if r["kind"] == kind]
    return [r["intensity"] for r in chosen], [r[field] for r in chosen]


def curves_figure(results: dict[str, list[dict[str, Any]]], kind: str, xlabel: str) -> Figure:
    """Accuracy, Brier, ECE, confidence, entropy and knowledge against the shift, one line per method."""
    fields = ("accuracy", "brier", "ece", "mean_confidence", "entropy", "knowledge")
    figure = Figure(figsize=(13, 7))
    axes = figure.subplots(2, 3)
    for ax, field in zip(axes.ravel(), fields):
        for method, records in results.items():
            ax.plot(*_series(records, kind, field), marker="o", ms=3, label=method)
        ax.set_xlabel(xlabel)
        ax.set_title(field.replace("_", " ") + (" (summed over classes)" if field == "brier" else ""))
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    figure.tight_layout()
    return figure


def confidence_figure(curves: dict[str, Any]) -> Figure:
    """Accuracy on the examples with confidence >= tau against tau, every rotation pooled (Ovadia et al.)."""
    figure = Figure(figsize=(6.5, 4.5))
    ax = figure.subplots()
    for method, curve in curves.items():
        ax.plot(curve.thresholds, np.asarray(curve.accuracy), marker="o", ms=3, label=method)
    ax.set_xlabel("confidence threshold τ")
    ax.set_ylabel("accuracy on examples with p(y|x) ≥ τ")
    ax.set_title("MNIST rotated by 0..180 degrees, all angles pooled", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _by_intensity(records: list[dict[str, Any]], field: str) -> list[list[float]]:
    """Per intensity 0..5, the field over every corruption (intensity 0: the unshifted set)."""
    clean = [r[field] for r in records if r["kind"] == "rotate" and r["intensity"] == 0]
    return [clean] + [
        [r[field] for r in records if r["kind"] in shift_data.CORRUPTIONS and r["intensity"] == i] for i in range(1, 6)
    ]


def corruption_boxes(results: dict[str, list[dict[str, Any]]]) -> Figure:
    """Box plots of ECE and Brier over the corruptions, per intensity, methods side by side."""
    figure = Figure(figsize=(13, 5))
    axes = figure.subplots(1, 2)
    width = 0.8 / len(results)
    for ax, field in zip(axes, ("ece", "brier")):
        for j, (method, records) in enumerate(results.items()):
            positions = np.arange(6) + (j - (len(results) - 1) / 2) * width
            boxes = ax.boxplot(
                _by_intensity(records, field),
                positions=positions,
                widths=width * 0.9,
                patch_artist=True,
                showfliers=True,
            )
            for patch in boxes["boxes"]:
                patch.set_facecolor(f"C{j}")
            ax.plot([], [], color=f"C{j}", lw=6, label=method)
        ax.set_xticks(np.arange(6), [str(i) for i in range(6)])
        ax.set_xlabel("corruption intensity")
        name = "ECE" if field == "ece" else "Brier (summed)"
        ax.set_title(f"{name} over {len(shift_data.CORRUPTIONS)} corruptions")
        ax.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    return figure


def _value(records: list[dict[str, Any]], kind: str, intensity: float, field: str) -> float:
    return next(r[field] for r in records if r["kind"] == kind and r["intensity"] == intensity)


def findings(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The paper's claims, checked on these numbers."""
    out: dict[str, Any] = {}
    methods = list(results)
    angles = sorted({r["intensity"] for r in results[methods[0]] if r["kind"] == "rotate"})
    for field in ("brier", "ece"):
        best = {a: min(methods, key=lambda m: _value(results[m], "rotate", a, field)) for a in angles}
        out[f"lowest_{field}_by_angle"] = {str(a): m for a, m in best.items()}
        out[f"ensemble_lowest_{field}_share"] = float(np.mean([best[a].startswith("ensemble") for a in angles]))
    if "temperature" in results and "single" in results:
        far = [a for a in angles if a >= 60] or angles[-1:]
        out["temperature_ece_gain_at_0"] = _value(results["single"], "rotate", 0, "ece") - _value(
            results["temperature"], "rotate", 0, "ece"
        )
        out["temperature_ece_gain_beyond_60_mean"] = float(
            np.mean(
                [
                    _value(results["single"], "rotate", a, "ece") - _value(results["temperature"], "rotate", a, "ece")
                    for a in far
                ]
            )
        )
    for method in methods:
        entropy = [_value(results[method], "rotate", a, "entropy") for a in angles]
        out[f"{method}_entropy_rotate_0_to_max"] = [entropy[0], max(entropy)]
    return out


def markdown(results: dict[str, list[dict[str, Any]]], run_info: dict[str, Any]) -> str:
    """Tables of the rotation curve and of the corruption means, and the findings."""
    s = run_info["settings"]
    lines = [
        "## Dataset shift on MNIST (Ovadia et al. 2019)",
        "",
        f"MLP {' x '.join(map(str, s['hidden']))} ReLU with batch normalisation, {s['epochs']} epochs, "
        f"M = {s['members']}, FGSM eps {s['eps']:g}, seed {s['seed']}; {run_info['data']['train_rows']} training, "
        f"{run_info['data']['validation_rows']} validation, {run_info['data']['test_rows']} test images. "
        f"Temperature T = {run_info['temperature']:.4f} (fitted on the validation rows; the softmax of one "
        "network's logits divided by T). MIMO and BatchEnsemble use the MLP without batch normalisation. Brier is summed over "
        "classes (in [0, 2]); NLL, entropy and knowledge in nats.",
        "",
        "![rotation](shift_rotation.png)",
        "",
        "![translation](shift_translation.png)",
        "",
        "![corruptions](shift_corruptions.png)",
        "",
        "![confidence vs accuracy](shift_confidence_vs_accuracy.png)",
        "",
    ]
    methods = list(results)
    lines += [
        "| rotation | " + " | ".join(f"{m} acc / Brier / ECE / entropy" for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for angle in ROTATIONS:
        cells = []
        for m in methods:
            r = next((r for r in results[m] if r["kind"] == "rotate" and r["intensity"] == angle), None)
            cells.append(
                "" if r is None else f"{r['accuracy']:.3f} / {r['brier']:.3f} / {r['ece']:.3f} / {r['entropy']:.3f}"
            )
        lines.append(f"| {angle} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Means over the corruptions per intensity:",
        "",
        "| intensity | " + " | ".join(f"{m} acc / Brier / ECE" for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for i in range(6):
        cells = []
        for m in methods:
            stats = [
                np.mean(v[i]) if v[i] else float("nan")
                for v in (_by_intensity(results[m], f) for f in ("accuracy", "brier", "ece"))
            ]
            cells.append(" / ".join(f"{v:.3f}" for v in stats))
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    f = run_info["findings"]
    lines += [
        "",
        "Findings:",
        "",
        f"- an ensemble has the lowest Brier at {100 * f['ensemble_lowest_brier_share']:.0f}% and the lowest "
        f"ECE at {100 * f['ensemble_lowest_ece_share']:.0f}% of the rotation angles.",
    ]
    if "temperature_ece_gain_at_0" in f:
        lines.append(
            f"- temperature scaling lowers ECE by {f['temperature_ece_gain_at_0']:.4f} at 0 degrees and by "
            f"{f['temperature_ece_gain_beyond_60_mean']:.4f} on average at 60 degrees and beyond."
        )
    for m in methods:
        lo, hi = f[f"{m}_entropy_rotate_0_to_max"]
        lines.append(f"- {m}: mean predictive entropy {lo:.3f} nats unrotated, up to {hi:.3f} under rotation.")
    lines += [
        "",
        "Timings (s): " + ", ".join(f"{k.removesuffix('_seconds')} {v:.1f}" for k, v in run_info["timings"].items()),
        "",
    ]
    return "\n".join(lines)
