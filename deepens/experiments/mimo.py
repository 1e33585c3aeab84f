"""Ensembles inside one network against deep ensembles (issue 8): the job behind ``deepens reproduce mimo``.

Methods (names as in ``mimo.json``), all with the same network per member and the same optimiser:

- ``single``            one network (deep-ensemble member 0, trained alone so that its time is its own)
- ``ensemble``          the deep ensemble of M networks
- ``mimo2`` ... ``mimoM`` MIMO with k = 2 ... M subnetworks in one network (Havasi et al. 2021)
- ``batchensembleM``    BatchEnsemble with M members (Wen et al. 2020)

Benchmarks:

- MNIST: the MLP 3 x 200 with batch normalisation of ``reproduce mnist`` (:mod:`deepens.experiments.mnist`),
  Adam 1e-3 cosine-decayed, 20 epochs, minibatches of 100; error, NLL, Brier / K, ECE, NotMNIST AUROC
  (predictive entropy) and the mean knowledge uncertainty on MNIST test and on NotMNIST. BatchEnsemble
  has no batch-norm variant here, so its MLP has none (said in the table).
- UCI: the 7 shared sets with the protocol of ``reproduce uci`` (:mod:`deepens.experiments.uci`: its
  splits and standardisation, one hidden layer of 50 units (100 for protein), Gaussian head, 40 epochs,
  minibatches of 100), one fixed Adam learning rate for every method (``uci_learning_rate``, no
  per-data-set selection, no clipping); test RMSE and NLL in original units, mean and standard error
  over the splits.

Diversity (:func:`error_correlation`): MIMO's subnetworks are only independent when the network has capacity
to spare (Havasi et al., section 3). We measure it by the mean pairwise Pearson correlation, over test
examples, of the members' errors: each member's probability of a wrong answer ``1 - p_m(y | x)``
(classification) or its residual ``mean_m(x) - y`` (regression). Independently trained networks give
the reference value (the deep ensemble's); 1 means the members make the same errors, as one network would.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import jax
import numpy as np

from deepens import metrics
from deepens.data import mnist as mnist_data
from deepens.data import paths
from deepens.data import uci as uci_data
from deepens.experiments import figures
from deepens.experiments import mnist as mnist_experiment
from deepens.experiments import uci as uci_experiment
from deepens.io import write_json
from deepens.models import MLP
from deepens.prediction import ClassificationPrediction, RegressionPrediction
from deepens.train import fit

BENCHMARKS = ("mnist", "uci")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The comparison's settings (tests shrink them).

    Attributes:
      members: M of the deep ensemble, the largest MIMO and BatchEnsemble.
      mimo_members: the MIMO sizes (each <= ``members``; ``members`` is always run).
      benchmarks: which of :data:`BENCHMARKS` to run.
      train_limit, test_limit: first that many MNIST training / test images (None: all).
      datasets, splits: UCI data set folders (None: all) and the first that many splits (None: all).
      uci_learning_rate: Adam's constant step size on UCI, for every method.
    """

    data_dir: str | None = None
    members: int = 4
    mimo_members: tuple[int, ...] = (2, 3, 4)
    benchmarks: tuple[str, ...] = BENCHMARKS
    mnist_epochs: int = 20
    mnist_hidden: tuple[int, ...] = (200, 200, 200)
    mnist_learning_rate: float = 1e-3
    train_limit: int | None = None
    test_limit: int | None = None
    datasets: tuple[str, ...] | None = None
    splits: int | None = None
    uci_epochs: int = 40
    uci_learning_rate: float = 0.01
    batch_size: int = 100
    seed: int = 0
    devices: int | None = None

    def __post_init__(self) -> None:
        if self.members < 1 or any(not 1 <= k <= self.members for k in self.mimo_members):
            raise ValueError(
                f"members must be >= 1 and every MIMO size in [1, members], got {self.members} and {self.mimo_members}"
            )
        unknown = [b for b in self.benchmarks if b not in BENCHMARKS]
        if unknown:
            raise ValueError(f"unknown benchmarks {unknown}; choose from {BENCHMARKS}")

    def methods(self) -> list[tuple[str, str, int]]:
        """``(name, method, members)`` in table order."""
        sizes = sorted(set(self.mimo_members) | {self.members})
        return (
            [("single", "ensemble", 1), ("ensemble", "ensemble", self.members)]
            + [(f"mimo{k}", "mimo", k) for k in sizes]
            + [(f"batchensemble{self.members}", "batchensemble", self.members)]
        )


def error_correlation(errors: Any) -> float | None:
    """Mean pairwise Pearson correlation of the members' per-example errors ``(M, N)`` (None for M < 2;
    a member with constant errors counts as uncorrelated with the others)."""
    errors = np.asarray(errors, np.float64)
    if errors.ndim != 2:
        raise ValueError(f"errors must be (members, examples), got shape {errors.shape}")
    m = errors.shape[0]
    if m < 2:
        return None
    centred = errors - errors.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    corr = (centred @ centred.T) / np.outer(safe, safe)
    corr[np.outer(norms, norms) == 0] = 0.0
    return float((corr.sum() - np.trace(corr)) / (m * (m - 1)))


def _devices(settings: Settings, method: str, members: int) -> int | None:
    """``settings.devices``, or by default one device for fits of one network: with several CPU devices a
    one-network fit splits its batches and all-reduces every step, and XLA's CPU all-reduce aborts the
    process when a device thread waits 40 s (seen on a loaded 2-core machine)."""
    if settings.devices is not None:
        return settings.devices
    return None if method == "ensemble" and members > 1 else 1


def parameter_count(ensemble: Any) -> int:
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(ensemble.params)))


def predict_seconds(ensemble: Any, x: np.ndarray, repeats: int = 3) -> float:
    """Best of ``repeats`` predictions with the uncertainty decomposition, after a warm-up call."""
    jax.block_until_ready(ensemble.predict(x).uncertainty)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(ensemble.predict(x).uncertainty)
        best = min(best, time.perf_counter() - start)
    return best


def _cost(ensemble: Any, x_test: np.ndarray) -> dict[str, Any]:
    assert ensemble.timings is not None
    return {
        "parameters": parameter_count(ensemble),
        "train_seconds": round(ensemble.timings.train_s, 4),
        "compile_seconds": round(ensemble.timings.compile_s, 4),
        "predict_seconds": round(predict_seconds(ensemble, x_test), 5),
    }


def run_mnist(settings: Settings, echo: bool = True) -> dict[str, Any]:
    """Every method on MNIST: scores, costs and diversity per method."""
    train, test = mnist_data.load_mnist(settings.data_dir)
    train, test = train.take(settings.train_limit), test.take(settings.test_limit)
    notmnist = mnist_data.load_test_set("notmnist", settings.data_dir).take(settings.test_limit)
    x, y, x_test, y_test, x_ood = train.features(), train.labels, test.features(), test.labels, notmnist.features()
    steps = settings.mnist_epochs * -(-len(x) // min(settings.batch_size, len(x)))
    optimizer = mnist_experiment.Settings(learning_rate=settings.mnist_learning_rate).optimizer(steps)
    results: dict[str, Any] = {}
    for name, method, members in settings.methods():
        batch_norm = method != "batchensemble"  # BatchEnsemble has no batch-norm variant here
        ensemble = fit(
            x,
            y,
            head="categorical",
            model=MLP(tuple(settings.mnist_hidden), 10, batch_norm=batch_norm),
            members=members,
            method=method,
            epochs=settings.mnist_epochs,
            batch_size=settings.batch_size,
            optimizer=optimizer,
            num_classes=10,
            seed=settings.seed,
            devices=_devices(settings, method, members),
            progress=echo,
            description=f"MNIST {name}",
        )
        outputs = np.asarray(ensemble.member_outputs(x_test))
        ood = np.asarray(ensemble.member_outputs(x_ood))
        scores = mnist_experiment._scores(y_test, outputs, {"notmnist": ood})
        probs = np.asarray(jax.nn.softmax(outputs, axis=-1))
        entry = {k: scores[k] for k in ("error", "nll", "brier", "ece", "ood_auroc")}
        entry |= {
            "knowledge_mnist": float(np.mean(np.asarray(ClassificationPrediction(outputs).uncertainty.knowledge))),
            "knowledge_notmnist": float(np.mean(np.asarray(ClassificationPrediction(ood).uncertainty.knowledge))),
            "error_correlation": error_correlation(1.0 - probs[:, np.arange(len(y_test)), y_test]),
            "member_error": [float(np.mean(o.argmax(-1) != y_test)) for o in outputs],
            "method": method,
            "members": members,
            "batch_norm": batch_norm,
        } | _cost(ensemble, x_test)
        results[name] = entry
        _say(
            echo,
            f"MNIST {name}: error {100 * entry['error']:.2f}%, NLL {entry['nll']:.4f}, "
            f"train {entry['train_seconds']:.1f} s",
        )
    return results


def _standard_error(values: Sequence[float]) -> float | None:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def run_uci_dataset(dataset: uci_data.UCIDataset, settings: Settings) -> dict[str, Any]:
    """Every method on every split of one UCI set; means and standard errors over the splits."""
    data = uci_experiment.prepare(dataset)
    hidden = uci_experiment.Settings().hidden_for(dataset.name)
    results: dict[str, Any] = {}
    for name, method, members in settings.methods():
        per_split: dict[str, list[float]] = {}
        ensemble = None
        for x, y, x_test, y_test, sy in zip(data.x_train, data.y_train, data.x_test, data.y_test, data.y_scaler):
            ensemble = fit(
                x,
                y,
                head="gaussian",
                hidden=(hidden,),
                members=members,
                method=method,
                epochs=settings.uci_epochs,
                batch_size=settings.batch_size,
                learning_rate=settings.uci_learning_rate,
                clip_norm=None,
                seed=settings.seed,
                devices=_devices(settings, method, members),
                progress=False,
            )
            prediction = cast(RegressionPrediction, ensemble.predict(x_test))  # a gaussian head
            scores = metrics.evaluate(prediction, y_test, target_shift=sy.mean, target_scale=sy.std)
            residuals = np.asarray(prediction.member_means).reshape(members, len(x_test)) - sy.transform(y_test)[None]
            cost = _cost(ensemble, x_test)
            for key, value in (
                ("nll", scores["nll"]),
                ("rmse", scores["rmse"]),
                ("error_correlation", error_correlation(residuals)),
                ("train_seconds", cost["train_seconds"]),
                ("predict_seconds", cost["predict_seconds"]),
            ):
                if value is not None:
                    per_split.setdefault(key, []).append(float(value))
        if ensemble is None:
            raise ValueError(f"{dataset.name}: no train/test splits to run {name} on")
        entry: dict[str, Any] = {
            "method": method,
            "members": members,
            "splits": len(data.x_train),
            "parameters": parameter_count(ensemble),
        }
        for key in ("nll", "rmse"):
            entry[f"{key}_mean"] = _finite(float(np.mean(per_split[key])))
            entry[f"{key}_se"] = _standard_error(per_split[key])
        entry["error_correlation"] = (
            float(np.mean(per_split["error_correlation"])) if "error_correlation" in per_split else None
        )
        entry["train_seconds"] = round(float(np.sum(per_split["train_seconds"])), 3)  # all splits
        entry["predict_seconds"] = round(float(np.mean(per_split["predict_seconds"])), 5)  # one test set
        results[name] = entry
    return results


def run_uci(settings: Settings, echo: bool = True) -> dict[str, Any]:
    root = paths.resolve(settings.data_dir, "uci", accept_given=True)
    names = list(settings.datasets) if settings.datasets else uci_data.list_datasets(root)
    if not names:
        raise FileNotFoundError(f"no UCI data set folders in {root}")
    results = {}
    for name in names:
        begin = time.perf_counter()
        results[name] = run_uci_dataset(uci_data.load(root / name, splits=settings.splits), settings)
        e, k = results[name]["ensemble"], results[name][f"mimo{settings.members}"]
        _say(
            echo,
            f"UCI {name}: ensemble NLL {e['nll_mean']:.3f}, MIMO {settings.members} NLL {k['nll_mean']:.3f}; "
            f"{time.perf_counter() - begin:.1f} s",
        )
    return results


def _say(echo: bool, text: str) -> None:
    if echo:
        print(text, file=sys.stderr, flush=True)


def run(out: str | Path, settings: Settings = Settings(), *, echo: bool = True) -> dict[str, Any]:
    """Run the benchmarks; write ``mimo.json``, ``mimo_run.json``, ``mimo.md`` and ``mimo.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    if "mnist" in settings.benchmarks:
        results["mnist"] = run_mnist(settings, echo)
    if "uci" in settings.benchmarks:
        results["uci"] = run_uci(settings, echo)
    run_info = {"settings": dataclasses.asdict(settings), "total_seconds": round(time.perf_counter() - started, 2)}
    write_json(out / "mimo.json", results)
    write_json(out / "mimo_run.json", run_info)
    (out / "mimo.md").write_text(markdown(results, run_info))
    panels = ({"MNIST": results["mnist"]} if "mnist" in results else {}) | results.get("uci", {})
    figures.save(figures.nll_vs_training_cost(panels), out / "mimo.png")
    _say(echo, f"MIMO comparison done in {run_info['total_seconds']:.1f} s; results in {out.resolve()}")
    return {"results": results, "run": run_info}


def _fmt(value: float | None, spec: str = ".3f", se: float | None = None) -> str:
    if value is None:
        return "n/a"
    return format(value, spec) + (f" ± {format(se, spec)}" if se is not None else "")


def markdown(results: dict[str, Any], run_info: dict[str, Any]) -> str:
    """The comparison tables and what they say about diversity."""
    s = run_info["settings"]
    lines = [
        "## Ensembles inside one network: MIMO and BatchEnsemble against deep ensembles",
        "",
        f"M = {s['members']}; MIMO sizes {sorted(set(s['mimo_members']) | {s['members']})}; seed {s['seed']}. "
        "Error correlation: mean pairwise correlation of the members' per-example errors on the test set "
        "(1 - p(y|x) on MNIST, residuals on UCI); the deep ensemble's is the value of independently trained "
        "networks. Train / one: training seconds over the single network's.",
        "",
    ]
    if "mnist" in results:
        r = results["mnist"]
        base = r["single"]["train_seconds"] or float("nan")
        base_predict = r["single"]["predict_seconds"] or float("nan")
        lines += [
            f"### MNIST (MLP {' x '.join(map(str, s['mnist_hidden']))}, {s['mnist_epochs']} epochs, "
            f"train limit {s['train_limit']}, test limit {s['test_limit']})",
            "",
            "| method | parameters | error % | NLL | Brier / K | ECE | NotMNIST AUROC | knowledge MNIST / NotMNIST | "
            "error correlation | train s | train / one | predict s | predict / one |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, e in r.items():
            label = name + ("" if e["batch_norm"] else " (no batch norm)")
            lines.append(
                f"| {label} | {e['parameters']:,} | {100 * e['error']:.2f} | {e['nll']:.4f} | {e['brier']:.5f} | "
                f"{e['ece']:.4f} | {e['ood_auroc']:.3f} | {e['knowledge_mnist']:.4f} / {e['knowledge_notmnist']:.4f} | "
                f"{_fmt(e['error_correlation'])} | {e['train_seconds']:.2f} | {e['train_seconds'] / base:.2f} | "
                f"{e['predict_seconds']:.4f} | {e['predict_seconds'] / base_predict:.2f} |"
            )
        lines.append("")
    if "uci" in results:
        lines += [
            f"### UCI ({s['uci_epochs']} epochs, Adam {s['uci_learning_rate']:g}, splits {s['splits'] or 'all'})",
            "",
            "NLL and RMSE in original units, mean ± standard error over the splits; train s: all splits together.",
            "",
            "| data set | method | parameters | NLL | RMSE | error correlation | train s | train / one | predict s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for dataset, by_method in results["uci"].items():
            base = by_method["single"]["train_seconds"] or float("nan")
            for name, e in by_method.items():
                lines.append(
                    f"| {dataset} | {name} | {e['parameters']:,} | {_fmt(e['nll_mean'], '.3f', e['nll_se'])} | "
                    f"{_fmt(e['rmse_mean'], '.3f', e['rmse_se'])} | {_fmt(e['error_correlation'])} | "
                    f"{e['train_seconds']:.2f} | {e['train_seconds'] / base:.2f} | {e['predict_seconds']:.4f} |"
                )
        lines.append("")
    lines += [
        "### Where MIMO does not reach the ensemble",
        "",
        *_verdicts(results, s["members"]),
        "",
        f"Whole run: {run_info['total_seconds']:.1f} s.",
        "",
        "![NLL against training cost](mimo.png)",
        "",
    ]
    return "\n".join(lines)


def _verdicts(results: dict[str, Any], members: int) -> list[str]:
    """One line per benchmark: MIMO's NLL against the ensemble's and one network's, and the diversity."""
    rows = [("MNIST", results["mnist"], "nll")] if "mnist" in results else []
    rows += [(name, r, "nll_mean") for name, r in results.get("uci", {}).items()]
    lines = []
    for name, r, key in rows:
        e, one, k = r["ensemble"], r["single"], r[f"mimo{members}"]
        if None in (e[key], one[key], k[key]):
            lines.append(f"- {name}: a non-finite NLL; see the table.")
            continue
        verdict = (
            "reaches the ensemble"
            if k[key] <= e[key]
            else "between one network and the ensemble"
            if k[key] < one[key]
            else "no better than one network"
        )
        lines.append(
            f"- {name}: MIMO {members} NLL {k[key]:.4f} ({verdict}; ensemble {e[key]:.4f}, one network "
            f"{one[key]:.4f}); error correlation MIMO {_fmt(k['error_correlation'])}, ensemble "
            f"{_fmt(e['error_correlation'])}."
        )
    return lines
