"""The speed benchmark suite: every workload of ``deepens bench``, scaling in members and devices.

    python benchmarks/speed.py [--out results/bench] [--quick]

Each measurement runs in a fresh process (``deepens bench ... --json``), so peak memory is per run and
every device count is a real process configuration (``DEEPENS_CPU_DEVICES=n``: one CPU device per core,
or n fake devices on the same cores beyond that). Prints:

1. w1, w2, w3 at their default sizes against the sequential loops (see deepens/experiments/bench.py);
2. members scaling, M = 1, 4, 16, 64, for w1 and w2 (cost relative to one member);
3. device-count scaling, 1, 2, 4 devices, for all three workloads;
and writes every record to OUT/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def measure(workload: str, members: int | None = None, devices: int | None = None, sequential: bool = False) -> dict[str, Any]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/bench", help="folder for bench.json")
    parser.add_argument("--quick", action="store_true", help="only the three default runs")
    args = parser.parse_args()
    console = Console(width=130)
    records: dict[str, Any] = {"default": [], "members": [], "devices": []}

    table = Table(title="workloads at their default sizes (deepens on one CPU device per core)")
    for column in ("workload", "M", "compile s", "train s", "member-ex/s", "peak RSS MB", "matmul peak",
                   "vs practical loop", "vs host loop", "predict rows/s"):
        table.add_column(column, justify="right")
    for workload in ("w1", "w2", "w3"):
        r = measure(workload, sequential=True)
        records["default"].append(r)
        table.add_row(workload, str(r["members"]), f"{r['compile_s']:.2f}", f"{r['train_s']:.3f}",
                      f"{r['member_examples_per_s']:,.0f}", f"{r['peak_rss_mb']:.0f}",
                      f"{100 * r['matmul_peak_fraction']:.1f}% of {r['matmul_peak_gflops']:.0f} GFLOP/s",
                      f"{r['sequential_practical_ratio']:.1f}x", f"{r['sequential_host_ratio']:.1f}x",
                      f"{r['predict_rows_per_s']:,.0f}")
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
                table.add_row(workload, str(members), f"{r['compile_s']:.2f}", f"{r['train_s']:.3f}",
                              f"{r['train_s'] / base:.2f}", f"{r['member_examples_per_s']:,.0f}")
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
                table.add_row(workload, str(count), str(r["members"]), f"{r['train_s']:.3f}",
                              f"{r['member_examples_per_s']:,.0f}", f"{base / r['train_s']:.2f}x")
        console.print(table)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(records, indent=2) + "\n")
    console.print(f"records in {out / 'bench.json'}")


if __name__ == "__main__":
    main()
