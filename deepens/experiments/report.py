"""``deepens reproduce all``: the paper's two benchmarks, the dataset-shift study (into ``shift/``) and the
MIMO / BatchEnsemble comparison (into ``mimo/``), then ``report.md`` with their tables and figures next to the published values."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import jax

from deepens.experiments import mnist, paper, uci


def _summary(uci_run: dict[str, Any] | None, mnist_run: dict[str, Any] | None) -> list[str]:
    lines = ["## Targets at a glance", ""]
    if uci_run is not None:
        checks = uci_run["targets"]
        nll_met = [name for name, c in checks.items() if c["nll_met"]]
        rmse_met = [name for name, c in checks.items() if c["rmse_met"]]
        lines.append(
            f"- UCI deep ensemble, NLL at or below the paper's mean: {len(nll_met)} of {len(checks)} data sets"
            + (f" (not: {', '.join(sorted(set(checks) - set(nll_met)))})" if len(nll_met) < len(checks) else "")
        )
        lines.append(
            f"- UCI deep ensemble, RMSE within the paper's standard error or better: {len(rmse_met)} of "
            f"{len(checks)}"
            + (f" (not: {', '.join(sorted(set(checks) - set(rmse_met)))})" if len(rmse_met) < len(checks) else "")
        )
        covered = uci_run.get("calibrated_coverage_met", {})
        if covered:
            lines.append(
                f"- UCI conformal 90% interval coverage (mean over splits) in [0.87, 0.95]: "
                f"{sum(covered.values())} of {len(covered)} data sets"
                + (
                    f" (not: {', '.join(sorted(n for n, ok in covered.items() if not ok))})"
                    if not all(covered.values())
                    else ""
                )
            )
        lines.append(f"- UCI run time: {uci_run['total_seconds']:.1f} s (target: under 15 minutes on 2 cores)")
    if mnist_run is not None:
        described = {
            "error_at_5_fgsm": "test error at M = 5 with FGSM at most 1.5%",
            "ensemble_nll_falls": "NLL falls from M = 1 to the largest M (ensemble)",
            "ensemble_at_nll_falls": "NLL falls from M = 1 to the largest M (ensemble + FGSM)",
            "ensemble_auroc_rises": "NotMNIST AUROC rises from M = 1 to the largest M (ensemble)",
            "ensemble_at_auroc_rises": "NotMNIST AUROC rises from M = 1 to the largest M (ensemble + FGSM)",
        }
        for key, t in mnist_run["targets"].items():
            value = (
                f"{100 * t['value']:.2f}%"
                if "value" in t
                else f"{t['first']:.4f} -> {t['last']:.4f}{'' if t['monotone'] else ', not monotone'}"
            )
            lines.append(f"- MNIST {described.get(key, key)}: {'met' if t['met'] else '**not met**'} ({value})")
        lines.append(f"- MNIST run time: {mnist_run['timings']['total_seconds']:.1f} s (target: under 30 minutes)")
    return lines + [""]


def write(out: str | Path, uci_result: dict[str, Any] | None, mnist_result: dict[str, Any] | None) -> Path:
    """Write ``out/report.md`` from the results of :func:`uci.run` and :func:`mnist.run` (either may be None),
    reusing the sections they wrote (``uci.md``, ``mnist.md``)."""
    out = Path(out)
    lines = [
        "# deepens: the Deep Ensembles paper's benchmarks, reproduced",
        "",
        f"Reference: {paper.CITATION}.",
        "",
        f"Machine: {platform.machine()}, {platform.system()}, JAX {jax.__version__} on "
        f"{jax.device_count()} {jax.devices()[0].platform.upper()} device(s); written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.",
        "",
    ]
    lines += _summary(uci_result["run"] if uci_result else None, mnist_result["run"] if mnist_result else None)
    for name in ("uci.md", "mnist.md"):
        if (out / name).is_file() and ((name == "uci.md" and uci_result) or (name == "mnist.md" and mnist_result)):
            lines.append((out / name).read_text())
    if (out / "shift" / "shift.md").is_file():
        lines += ["## Dataset shift", "", "Ovadia et al. (2019) on MNIST: [shift/shift.md](shift/shift.md).", ""]
    if (out / "mimo" / "mimo.md").is_file():
        lines += [
            "## Ensembles inside one network",
            "",
            "MIMO and BatchEnsemble against deep ensembles on MNIST and UCI: [mimo/mimo.md](mimo/mimo.md).",
            "",
        ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def rebuild(out: str | Path) -> Path:
    """Re-render ``uci.md``, ``mnist.md`` and ``report.md`` from the JSON files a run left in ``out``,
    without training anything (e.g. after a change to the tables' layout)."""
    out = Path(out)
    found: dict[str, dict[str, Any] | None] = {}
    for name, module in (("uci", uci), ("mnist", mnist)):
        if (out / f"{name}.json").is_file() and (out / f"{name}_run.json").is_file():
            result = {
                "results": json.loads((out / f"{name}.json").read_text()),
                "run": json.loads((out / f"{name}_run.json").read_text()),
            }
            (out / f"{name}.md").write_text(module.markdown(result["results"], result["run"]))
            found[name] = result
        else:
            found[name] = None
    if not any(found.values()):
        raise FileNotFoundError(f"no uci.json/uci_run.json or mnist.json/mnist_run.json in {out}")
    return write(out, found["uci"], found["mnist"])


def run(
    out: str | Path,
    uci_settings: uci.Settings,
    mnist_settings: mnist.Settings,
    *,
    echo: bool = True,
    shift_settings: Any = None,
    mimo_settings: Any = None,
) -> Path:
    """Run both benchmarks into ``out`` and, with ``shift_settings`` (a
    :class:`deepens.experiments.shift.Settings`), the dataset-shift study into ``out/shift``, and with
    ``mimo_settings`` (a :class:`deepens.experiments.mimo.Settings`), the MIMO / BatchEnsemble comparison
    into ``out/mimo``; write the report."""
    uci_result = uci.run(out, uci_settings, echo=echo)
    mnist_result = mnist.run(out, mnist_settings, echo=echo)
    if shift_settings is not None:
        from deepens.experiments import shift

        shift.run(Path(out) / "shift", shift_settings, echo=echo)
    if mimo_settings is not None:
        from deepens.experiments import mimo

        mimo.run(Path(out) / "mimo", mimo_settings, echo=echo)
    return write(out, uci_result, mnist_result)
