"""The main job, shrunk: files, the metrics schema, and the command line."""

import dataclasses
import json
import math

import pytest

import deepens
from deepens import cli
from deepens.data import toy
from deepens.experiments import demo

SMALL = demo.Settings(
    regression_points=30,
    regression_hidden=(8,),
    regression_steps=25,
    regression_members=2,
    spiral_points=40,
    classification_hidden=(16,),
    classification_epochs=25,
    classification_members=2,
    test_points=90,
    part_two_members=2,
    part_two_epochs=25,
)


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    records = demo.run(out, SMALL, echo=False)
    return out, records


def test_demo_writes_the_figures_and_metrics(demo_output):
    out, records = demo_output
    for name in (
        "regression_gaussian",
        "regression_laplace",
        "classification_single",
        "classification_ensemble2",
        "classification_ensemble2_fgsm",
        "classification_mimo2",
        "classification_batchensemble2",
        "training_curves",
    ):
        assert (out / f"{name}.png").stat().st_size > 10_000
    assert json.loads((out / "metrics.json").read_text()) == records
    table = (out / "part2.md").read_text()
    for label in ("one network", "ensemble of 2", "MIMO 2", "BatchEnsemble 2"):
        assert f"| {label} |" in table


def test_metrics_records_follow_the_schema(demo_output):
    _, records = demo_output
    runs = {(r["experiment"], r["head"], r["method"], r["members"], r["adversarial"]) for r in records}
    expected = {
        ("regression", head, "ensemble", m, adv)
        for head in ("gaussian", "laplace")
        for m in (1, 2)
        for adv in ("none", "fgsm")
    }
    expected |= {
        ("classification", "categorical", "ensemble", 1, "none"),
        ("classification", "categorical", "ensemble", 2, "none"),
        ("classification", "categorical", "ensemble", 2, "fgsm"),
        ("classification", "categorical", "mimo", 2, "none"),
        ("classification", "categorical", "batchensemble", 2, "none"),
    }
    assert runs == expected and len(records) == len(expected)
    common = {"experiment", "head", "method", "members", "adversarial", "nll", "train_seconds", "compile_seconds"}
    for r in records:
        score = "rmse" if r["experiment"] == "regression" else "accuracy"
        extra = {"parameters", "predict_seconds", "knowledge_far_near"} if score == "accuracy" else set()
        assert set(r) == common | {score} | extra
        assert r["train_seconds"] >= 0
        # A finite score: the demo writes a non-finite one as null, which is not a number at all.
        assert isinstance(r["nll"], float) and math.isfinite(r["nll"]), r
        assert isinstance(r[score], float) and math.isfinite(r[score]), r
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in records if r["experiment"] == "classification")
    # Parameters by hand for the 2-16-2... networks: one network 2-16-3, the ensemble twice that, MIMO's
    # trunk 4-16-6, BatchEnsemble's shared kernels plus fast weights and biases per member.
    parameters = {
        (r["method"], r["members"], r["adversarial"]): r.get("parameters")
        for r in records
        if r["experiment"] == "classification"
    }
    one = 2 * 16 + 16 + 16 * 3 + 3
    assert parameters[("ensemble", 1, "none")] == one and parameters[("ensemble", 2, "none")] == 2 * one
    assert parameters[("mimo", 2, "none")] == 4 * 16 + 16 + 16 * 6 + 6
    assert parameters[("batchensemble", 2, "none")] == (2 * 16 + 2 * (2 + 16 + 16)) + (16 * 3 + 2 * (16 + 3 + 3))


def test_cli_demo_parses_its_arguments(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(demo, "run", lambda out, settings: seen.update(out=out, settings=settings))
    assert cli.main(["demo", "--out", str(tmp_path), "--seed", "3"]) == 0
    assert seen == {"out": str(tmp_path), "settings": demo.Settings(seed=3)}
    assert cli.main(["demo", "--out", str(tmp_path), "--full"]) == 0
    assert seen["settings"] == demo.FULL and seen["settings"].part_two_epochs == 10_000
    assert cli.main(["demo", "--out", str(tmp_path), "--practical"]) == 0
    assert seen["out"] == str(tmp_path / "practical")
    assert seen["settings"].clip_norm is None and seen["settings"].experiments == ("regression",)


def test_practical_regression_is_unclipped(tmp_path):
    small = dataclasses.replace(SMALL, regression_steps=5, clip_norm=None, experiments=("regression",))
    records = demo.run(tmp_path, small, echo=False)
    assert {r["experiment"] for r in records} == {"regression"} and not (tmp_path / "part2.md").exists()
    assert (tmp_path / "regression_gaussian.png").exists()
    with pytest.raises(ValueError, match="unknown demo experiments"):
        demo.run(tmp_path, dataclasses.replace(SMALL, experiments=("cubic",)), echo=False)


def test_knowledge_far_near_sees_members_disagree_away_from_the_data():
    x, y = toy.spirals(60, noise=0.3, seed=0)
    ensemble = deepens.fit(
        x, y, head="categorical", hidden=(32,), members=3, epochs=60, batch_size=60, learning_rate=0.02, progress=False
    )
    assert demo.knowledge_far_near(ensemble, x) > 1.0
