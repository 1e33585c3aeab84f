"""The benchmark workloads and their measurements (small versions; the real runs are benchmarks)."""

import dataclasses

import numpy as np
import pytest

from deepens import cli
from deepens.experiments import bench


def test_workloads_have_the_issue_shapes():
    for name, rows, width, members in (("w1", 40, 1, 6), ("w2", 40_000, 9, 5), ("w3", 10_000, 784, 5)):
        workload = bench.WORKLOADS[name]
        x, y = workload.data()
        assert x.shape == (rows, width) and len(y) == rows and workload.members == members
    x, y = bench.WORKLOADS["w3"].data()
    assert set(np.unique(y)) == set(range(10))


def test_flops_count_six_per_weight():
    w2 = bench.WORKLOADS["w2"]
    x, y = np.zeros((1, 9)), np.zeros(1)
    assert bench.flops_per_example(w2, x, y) == 6 * (9 * 100 + 100 * 2)


def test_run_reports_every_field(monkeypatch):
    tiny = dataclasses.replace(bench.WORKLOADS["w1"], epochs=4)
    monkeypatch.setitem(bench.WORKLOADS, "w1", tiny)
    monkeypatch.setattr(bench, "PREDICT_ROWS", 64)
    record = bench.run("w1", members=2, sequential=False)
    for key in (
        "workload",
        "members",
        "compile_s",
        "train_s",
        "member_examples_per_s",
        "peak_rss_mb",
        "matmul_peak_fraction",
        "sequential_ratio",
        "predict_rows_per_s",
    ):
        assert key in record
    assert record["members"] == 2 and record["train_s"] > 0 and record["peak_rss_mb"] > 10
    assert 0 < record["matmul_peak_fraction"] < 1.5
    with pytest.raises(ValueError, match="unknown workload"):
        bench.run("w9")


@pytest.mark.parametrize("style", ["practical", "host"])
def test_sequential_loops_train(style):
    x, y = bench.WORKLOADS["w2"].data()
    tiny = dataclasses.replace(bench.WORKLOADS["w2"], data=lambda: (x[:300], y[:300]), epochs=1)
    result = bench.sequential_loop(tiny, members=2, style=style)
    assert result["train_s"] > 0 and result["member_examples_per_s"] > 0


def test_cli_bench_writes_json(monkeypatch, tmp_path):
    monkeypatch.setattr(
        bench,
        "run",
        lambda name, members, sequential, methods: {
            "workload": name,
            "members": members,
            "sequential": sequential,
            "methods": methods,
        },
    )
    out = tmp_path / "r.json"
    assert cli.main(["bench", "--workload", "w2", "--members", "3", "--no-sequential", "--json", str(out)]) == 0
    assert '"members": 3' in out.read_text() and '"sequential": false' in out.read_text()
    assert '"methods": false' in out.read_text()
    assert cli.main(["bench", "--workload", "w3", "--methods", "--json", str(out)]) == 0
    assert '"methods": true' in out.read_text()


def test_methods_rows_time_every_method(monkeypatch):
    x, y = bench.WORKLOADS["w2"].data()
    tiny = dataclasses.replace(bench.WORKLOADS["w2"], data=lambda: (x[:200], y[:200]), epochs=2)
    monkeypatch.setitem(bench.WORKLOADS, "w2", tiny)
    monkeypatch.setattr(bench, "PREDICT_ROWS", 256)
    rows = bench.run("w2", members=3, sequential=False, predict=False, methods=True)["methods"]
    assert list(rows) == ["single", "ensemble", "mimo", "batchensemble"]
    for name, r in rows.items():
        assert r["train_s"] > 0 and r["predict_s"] > 0 and r["members"] == (1 if name == "single" else 3)
    assert rows["single"]["train_vs_single"] == 1.0 and rows["ensemble"]["predict_vs_ensemble"] == 1.0
    # Parameters by hand: 9-100-2 per network; MIMO reads 3 x 9 inputs and gives 3 x 2 outputs.
    assert rows["single"]["parameters"] == 9 * 100 + 100 + 100 * 2 + 2
    assert rows["ensemble"]["parameters"] == 3 * rows["single"]["parameters"]
    assert rows["mimo"]["parameters"] == 27 * 100 + 100 + 100 * 6 + 6
    assert set(rows["mimo"]["targets_met"]) == {"train_vs_single", "predict_vs_single"}
