"""``deepens reproduce mimo``, shrunk: the diversity measure by hand, the files, the schema, the command line."""

import json

import numpy as np
import pytest

from deepens import cli
from deepens.data import paths
from deepens.experiments import mimo

SHARED = paths.default_data_dir()
needs_data = pytest.mark.skipif(
    SHARED is None, reason="the shared benchmark data (../shared/data or $DEEPENS_DATA) is absent"
)
TINY = mimo.Settings(
    data_dir=None if SHARED is None else str(SHARED),
    members=2,
    mimo_members=(2,),
    mnist_epochs=1,
    mnist_hidden=(16,),
    train_limit=300,
    test_limit=100,
    datasets=("yacht",),
    splits=2,
    uci_epochs=2,
)


def test_error_correlation_by_hand():
    rng = np.random.default_rng(0)
    e = rng.normal(size=5000)
    assert mimo.error_correlation(np.stack([e, 2 * e + 1, e])) == pytest.approx(1.0)
    assert mimo.error_correlation(np.stack([e, -e])) == pytest.approx(-1.0)
    independent = mimo.error_correlation(rng.normal(size=(4, 5000)))
    assert abs(independent) < 0.05  # standard error of one pair's correlation: 1 / sqrt(5000) = 0.014
    # Two of three pairs share a common part with variance 1 of 2: correlation 1/2 each, the third pair 0.
    common, a, b, c = rng.normal(size=(4, 20000))
    value = mimo.error_correlation(np.stack([common + a, common + b, c * np.sqrt(2)]))
    assert value == pytest.approx((0.5 + 0 + 0) / 3, abs=0.02)
    assert mimo.error_correlation(np.ones((1, 10))) is None
    assert mimo.error_correlation(np.stack([np.ones(10), np.arange(10.0)])) == 0.0
    with pytest.raises(ValueError, match="members, examples"):
        mimo.error_correlation(np.ones(10))


def test_settings_refuse_bad_sizes():
    with pytest.raises(ValueError, match="MIMO size"):
        mimo.Settings(members=2, mimo_members=(3,))
    with pytest.raises(ValueError, match="unknown benchmarks"):
        mimo.Settings(benchmarks=("cifar",))
    assert [name for name, _, _ in mimo.Settings().methods()] == [
        "single",
        "ensemble",
        "mimo2",
        "mimo3",
        "mimo4",
        "batchensemble4",
    ]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mimo")
    return out, mimo.run(out, TINY, echo=False)


@needs_data
def test_run_writes_tables_json_and_figure(tiny_run):
    out, result = tiny_run
    for name in ("mimo.json", "mimo_run.json", "mimo.md"):
        assert (out / name).stat().st_size > 100
    assert (out / "mimo.png").stat().st_size > 10_000
    assert json.loads((out / "mimo.json").read_text()) == result["results"]
    text = (out / "mimo.md").read_text()
    assert "### MNIST" in text and "### UCI" in text and "| yacht | mimo2 |" in text
    assert "batchensemble2 (no batch norm)" in text and "Where MIMO does not reach the ensemble" in text


@needs_data
def test_every_method_is_scored(tiny_run):
    _, result = tiny_run
    names = ["single", "ensemble", "mimo2", "batchensemble2"]
    mnist_results, uci_results = result["results"]["mnist"], result["results"]["uci"]["yacht"]
    assert list(mnist_results) == names and list(uci_results) == names
    for name, e in mnist_results.items():
        assert 0 <= e["error"] <= 1 and np.isfinite(e["nll"]) and 0.5 <= e["ood_auroc"] + 0.5 <= 1.5
        assert e["train_seconds"] > 0 and e["predict_seconds"] > 0 and e["parameters"] > 0
        assert len(e["member_error"]) == e["members"]
        assert (e["error_correlation"] is None) == (name == "single")
        assert (e["knowledge_mnist"] == pytest.approx(0.0, abs=1e-5)) == (name == "single")
    # MIMO with 2 subnetworks: its trunk's first layer reads 2 x 784 inputs, so more parameters than one
    # network, far fewer than the ensemble of 2.
    assert (
        mnist_results["single"]["parameters"]
        < mnist_results["mimo2"]["parameters"]
        < mnist_results["ensemble"]["parameters"]
    )
    for name, e in uci_results.items():
        assert e["splits"] == 2 and e["nll_se"] is not None and e["rmse_mean"] > 0
        assert (e["error_correlation"] is None) == (name == "single")


def test_cli_reproduce_mimo_parses_its_arguments(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(mimo, "run", lambda out, settings: seen.update(out=out, settings=settings))
    argv = [
        "reproduce",
        "mimo",
        "--out",
        str(tmp_path),
        "--train-limit",
        "50",
        "--test-limit",
        "20",
        "--members",
        "3",
        "--epochs",
        "2",
        "--datasets",
        "yacht,energy",
        "--splits",
        "1",
        "--benchmarks",
        "uci",
    ]
    assert cli.main(argv) == 0
    s = seen["settings"]
    assert seen["out"] == str(tmp_path) and (s.train_limit, s.test_limit, s.members, s.splits) == (50, 20, 3, 1)
    assert s.mimo_members == (2, 3) and s.mnist_epochs == s.uci_epochs == 2
    assert s.datasets == ("yacht", "energy") and s.benchmarks == ("uci",)
