"""The main job, shrunk: files, the metrics schema, and the command line."""

import json
import math

import pytest

from deepens import cli
from deepens.experiments import demo

SMALL = demo.Settings(
    regression_points=30, regression_hidden=(8,), regression_steps=25, regression_members=2,
    spiral_points=40, classification_hidden=(16,), classification_epochs=25, classification_members=2,
    test_points=90,
)


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    records = demo.run(out, SMALL, echo=False)
    return out, records


def test_demo_writes_the_figures_and_metrics(demo_output):
    out, records = demo_output
    for name in ("regression_gaussian", "regression_laplace", "classification_single", "classification_ensemble2",
                 "classification_ensemble2_fgsm", "training_curves"):
        assert (out / f"{name}.png").stat().st_size > 10_000
    assert json.loads((out / "metrics.json").read_text()) == records


def test_metrics_records_follow_the_schema(demo_output):
    _, records = demo_output
    runs = {(r["experiment"], r["head"], r["members"], r["adversarial"]) for r in records}
    expected = {("regression", head, m, adv) for head in ("gaussian", "laplace") for m in (1, 2) for adv in ("none", "fgsm")}
    expected |= {("classification", "categorical", 1, "none"), ("classification", "categorical", 2, "none"),
                 ("classification", "categorical", 2, "fgsm")}
    assert runs == expected and len(records) == len(expected)
    for r in records:
        score = "rmse" if r["experiment"] == "regression" else "accuracy"
        assert set(r) == {"experiment", "head", "members", "adversarial", "nll", score, "train_seconds", "compile_seconds"}
        assert r["train_seconds"] >= 0
        # A finite score: the demo writes a non-finite one as null, which is not a number at all.
        assert isinstance(r["nll"], float) and math.isfinite(r["nll"]), r
        assert isinstance(r[score], float) and math.isfinite(r[score]), r
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in records if r["experiment"] == "classification")


def test_cli_demo_parses_its_arguments(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(demo, "run", lambda out, settings: seen.update(out=out, seed=settings.seed))
    assert cli.main(["demo", "--out", str(tmp_path), "--seed", "3"]) == 0
    assert seen == {"out": str(tmp_path), "seed": 3}
