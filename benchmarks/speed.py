"""The speed benchmark suite: every workload of ``deepens bench``, scaling in members and devices.

    python benchmarks/speed.py [--out results/bench] [--quick]

Each measurement runs in a fresh process (``deepens bench ... --json``), so peak memory is per run and
every device count is a real process configuration (``DEEPENS_CPU_DEVICES=n``: one CPU device per core,
or n fake devices on the same cores beyond that). Prints:

1. w1, w2, w3 at their default sizes against the sequential loops (see deepens/experiments/bench.py);
2. members scaling, M = 1, 4, 16, 64, for w1 and w2 (cost relative to one member);
3. device-count scaling, 1, 2, 4 devices, for all three workloads;
4. whole-process wall times a user feels on a 442-row, 10-column CSV (scikit-learn's diabetes data):
   ``deepens --help``, the first ``deepens train`` (empty compilation cache), the second (cache filled),
   ``deepens predict``, and a script that trains five scikit-learn MLPRegressor networks on the same file;
and writes every record to OUT/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def measure(
    workload: str, members: int | None = None, devices: int | None = None, sequential: bool = False
) -> dict[str, Any]:
    env = dict(os.environ)
    if devices is not None:
        env["DEEPENS_CPU_DEVICES"] = str(devices)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.json"
        command = [sys.executable, "-m", "deepens.cli", "bench", "--workload", workload, "--json", str(out)]
        if members is not None:
            command += ["--members", str(members)]
        if not sequential:
            command.append("--no-sequential")
        subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


SKLEARN_SCRIPT = """
import sys
import pandas as pd
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler
frame = pd.read_csv(sys.argv[1])
x = StandardScaler().fit_transform(frame.drop(columns="target"))
y = frame["target"].to_numpy()
for seed in range(5):
    MLPRegressor(hidden_layer_sizes=(50,), max_iter=200, random_state=seed).fit(x, (y - y.mean()) / y.std())
"""


def _wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def cli_timings(repeats: int = 3) -> dict[str, list[float]]:
    """Whole-process wall seconds of each user-facing call, ``repeats`` times each (a fresh process each)."""
    from sklearn.datasets import load_diabetes

    deepens_cli = [sys.executable, "-m", "deepens.cli"]
    times: dict[str, list[float]] = {
        k: []
        for k in (
            "deepens --help",
            "deepens train (first)",
            "deepens train (second)",
            "deepens predict",
            "5 x sklearn MLPRegressor",
        )
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "diabetes.csv"
        load_diabetes(as_frame=True).frame.to_csv(data, index=False)
        env = dict(os.environ)
        env.pop("DEEPENS_NO_CACHE", None)
        train = [*deepens_cli, "train", str(data), "--target", "target", "--quiet", "-o"]
        for i in range(repeats):
            env["DEEPENS_CACHE_DIR"] = str(Path(tmp) / f"cache{i}")  # empty: the first call compiles
            times["deepens --help"].append(_wall([*deepens_cli, "--help"], env))
            times["deepens train (first)"].append(_wall([*train, str(Path(tmp) / f"a{i}")], env))
            times["deepens train (second)"].append(_wall([*train, str(Path(tmp) / f"b{i}")], env))
            times["deepens predict"].append(
                _wall(
                    [*deepens_cli, "predict", str(Path(tmp) / f"b{i}"), str(data), "-o", str(Path(tmp) / f"p{i}.csv")],
                    env,
                )
            )
            times["5 x sklearn MLPRegressor"].append(_wall([sys.executable, "-c", SKLEARN_SCRIPT, str(data)], env))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/bench", help="folder for bench.json")
    parser.add_argument("--quick", action="store_true", help="only the three default runs")
    args = parser.parse_args()
    console = Console(width=130)
    records: dict[str, Any] = {"default": [], "members": [], "devices": []}

    table = Table(title="workloads at their default sizes (deepens on one CPU device per core)")
    for column in (
        "workload",
        "M",
        "compile s",
        "train s",
        "member-ex/s",
        "peak RSS MB",
        "matmul peak",
        "vs practical loop",
        "vs host loop",
        "predict rows/s",
    ):
        table.add_column(column, justify="right")
    for workload in ("w1", "w2", "w3"):
        r = measure(workload, sequential=True)
        records["default"].append(r)
        table.add_row(
            workload,
            str(r["members"]),
            f"{r['compile_s']:.2f}",
            f"{r['train_s']:.3f}",
            f"{r['member_examples_per_s']:,.0f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{100 * r['matmul_peak_fraction']:.1f}% of {r['matmul_peak_gflops']:.0f} GFLOP/s",
            f"{r['sequential_practical_ratio']:.1f}x",
            f"{r['sequential_host_ratio']:.1f}x",
            f"{r['predict_rows_per_s']:,.0f}",
        )
    console.print(table)

    if not args.quick:
        table = Table(title="members scaling (train seconds, and relative to one member)")
        for column in ("workload", "M", "compile s", "train s", "x one member", "member-ex/s"):
            table.add_column(column, justify="right")
        for workload in ("w1", "w2"):
            base = None
            for members in (1, 4, 16, 64):
                r = measure(workload, members=members)
                records["members"].append(r)
                base = base or r["train_s"]
                table.add_row(
                    workload,
                    str(members),
                    f"{r['compile_s']:.2f}",
                    f"{r['train_s']:.3f}",
                    f"{r['train_s'] / base:.2f}",
                    f"{r['member_examples_per_s']:,.0f}",
                )
        console.print(table)

        table = Table(title="device scaling (fake CPU devices on this machine's cores)")
        for column in ("workload", "devices", "M", "train s", "member-ex/s", "speed-up"):
            table.add_column(column, justify="right")
        for workload in ("w1", "w2", "w3"):
            base = None
            for count in (1, 2, 4):
                r = measure(workload, devices=count)
                records["devices"].append(r)
                base = base or r["train_s"]
                table.add_row(
                    workload,
                    str(count),
                    str(r["members"]),
                    f"{r['train_s']:.3f}",
                    f"{r['member_examples_per_s']:,.0f}",
                    f"{base / r['train_s']:.2f}x",
                )
        console.print(table)

    table = Table(title="whole-process wall time on a 442 x 10 CSV (median of 3 fresh processes)")
    for column in ("call", "median s", "runs s", "x sklearn script"):
        table.add_column(column, justify="right")
    timings = cli_timings()
    records["cli"] = timings
    sklearn_s = statistics.median(timings["5 x sklearn MLPRegressor"])
    for call, runs in timings.items():
        table.add_row(
            call,
            f"{statistics.median(runs):.2f}",
            " ".join(f"{t:.2f}" for t in runs),
            f"{statistics.median(runs) / sklearn_s:.2f}",
        )
    console.print(table)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(records, indent=2) + "\n")
    console.print(f"records in {out / 'bench.json'}")


if __name__ == "__main__":
    main()
