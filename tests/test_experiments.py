"""The benchmarks end to end, shrunk: synthetic data in the real formats (UCI split folders, IDX files),
the splits trained together against separate fits, the command line, and one small run on the real data
when it is there."""

import json
import math

import jax
import numpy as np
import pytest

import deepens
from deepens import cli, metrics
from deepens.calibrated import CalibratedClassification
from deepens.calibration import Calibration
from deepens.data import idx, paths
from deepens.data import uci as uci_data
from deepens.experiments import mnist, mnist_calibration, report, uci, uci_calibration
from deepens.experiments.splits import group_by_size, train_splits
from deepens.prediction import ClassificationPrediction

SHARED = paths.default_data_dir()
UCI_KEYS = {"rmse_mean", "rmse_se", "nll_mean", "nll_se", "splits", "seconds"}
TWO_CANDIDATES = (uci.OptimizerConfig(0.01), uci.OptimizerConfig(0.03, "cosine"))


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


@pytest.mark.parametrize("adversarial", [None, deepens.FGSM(0.05, relative=True)])
def test_splits_trained_together_equal_separate_fits(rng, adversarial):
    # Two data sets of 40 rows with different feature ranges, two members each, minibatches with padding.
    x = np.stack([rng.normal(size=(40, 3)), 5.0 * rng.normal(size=(40, 3)) + 2.0]).astype(np.float32)
    y = np.stack([x[0, :, 0] - x[0, :, 1], np.sin(x[1, :, 2])]).astype(np.float32)
    together = train_splits(
        x,
        y,
        head=deepens.Gaussian(),
        loss="nll",
        hidden=(8,),
        members=2,
        epochs=3,
        batch_size=16,
        learning_rate=0.01,
        adversarial=adversarial,
        seed=4,
    )
    assert together.history.shape == (3, 2, 2)
    for s in range(2):
        alone = deepens.fit(
            x[s],
            y[s],
            hidden=(8,),
            members=2,
            epochs=3,
            batch_size=16,
            learning_rate=0.01,
            adversarial=adversarial,
            seed=4,
            clip_norm=None,
            progress=False,
        )
        for a, b in zip(_leaves(together.ensembles[s].params), _leaves(alone.params)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(together.history[:, s], alone.history, rtol=2e-5)


def test_group_by_size_keeps_split_order():
    assert group_by_size([5, 7, 5, 7, 9]) == [[0, 2], [1, 3], [4]]


def _synthetic_uci(root, rng):
    """Two small data sets in the split format, named like two of the paper's so its columns are filled."""
    for name, n, d in (("yacht", 60, 3), ("energy", 60, 3)):  # one shape: one compiled program
        x = rng.uniform(-2, 2, size=(n, d))
        y = np.sin(x[:, 0]) * 5 + x[:, -1] + rng.normal(0, 0.3, n) + 20
        order = [rng.permutation(n) for _ in range(3)]
        uci_data.write(root / name, x, y, [(o[: n - 10], o[n - 10 :]) for o in order])
    return root


@pytest.fixture(scope="module")
def uci_run(tmp_path_factory):
    rng = np.random.default_rng(0)
    data = _synthetic_uci(tmp_path_factory.mktemp("uci_data"), rng)
    out = tmp_path_factory.mktemp("uci_out")
    settings = uci.Settings(data_dir=str(data), splits=2, members=2, epochs=3, batch_size=16, candidates=TWO_CANDIDATES)
    return out, uci.run(out, settings, echo=False)


def test_uci_json_follows_the_schema(uci_run):
    out, result = uci_run
    written = json.loads((out / "uci.json").read_text())
    assert written == result["results"]
    assert set(written) == {"yacht", "energy"}
    for name, methods in written.items():
        assert set(methods) == set(uci.METHODS) | set(uci_calibration.CALIBRATED)
        for method, entry in methods.items():
            assert set(entry) >= UCI_KEYS, (name, method)
            assert entry["splits"] == 2 and entry["seconds"] >= 0
            assert math.isfinite(entry["rmse_mean"]) and math.isfinite(entry["nll_mean"])
            assert entry["rmse_se"] >= 0 and entry["nll_se"] >= 0
            assert len(entry["per_split_nll"]) == 2
            assert entry["nll_mean"] == pytest.approx(np.mean(entry["per_split_nll"]), abs=1e-4)


def test_uci_single_network_is_member_zero_of_the_ensemble(uci_run, tmp_path):
    out, result = uci_run
    # Recompute split 0 of yacht by hand with the optimiser the run chose: member 0 alone, scored on the
    # original scale, must give the reported single-network NLL.
    run_info = json.loads((out / "uci_run.json").read_text())
    chosen = next(c for c in TWO_CANDIDATES if c.label == run_info["datasets"]["yacht"]["optimizer"])
    data = uci.prepare(uci_data.load(run_info["settings"]["data_dir"] + "/yacht", splits=2))
    settings = uci.Settings(members=2, epochs=3, batch_size=16)
    ensembles, _, _ = uci._train(data.x_train, data.y_train, "nll", settings, 50, chosen)
    sy = data.y_scaler[0]
    scores = metrics.evaluate(
        ensembles[0].select([0]).predict(data.x_test[0]), data.y_test[0], target_shift=sy.mean, target_scale=sy.std
    )
    assert scores["nll"] == pytest.approx(result["results"]["yacht"]["single"]["per_split_nll"][0], abs=1e-4)


def test_uci_run_records_the_choice_and_writes_the_report(uci_run):
    out, result = uci_run
    run_info = json.loads((out / "uci_run.json").read_text())
    for name in ("yacht", "energy"):
        selection = run_info["datasets"][name]["selection"]
        assert set(selection["validation_nll"]) == {c.label for c in TWO_CANDIDATES}
        assert selection["chosen"] == min(selection["validation_nll"], key=selection["validation_nll"].get)
    assert set(run_info["targets"]) == {"yacht", "energy"}
    text = (out / "uci.md").read_text()
    assert "| yacht | 2 |" in text and "1.18 ± 0.21" in text  # the paper's yacht NLL beside ours
    assert (out / "uci.png").stat().st_size > 10_000


def test_uci_calibrated_columns_only_add_to_the_paper_columns(uci_run, tmp_path):
    out, result = uci_run
    results = result["results"]
    for methods in results.values():
        calibrated = [methods[m] for m in uci_calibration.CALIBRATED]
        # The three columns are one set of networks: same means, so the same RMSE on every split.
        assert calibrated[0]["per_split_rmse"] == calibrated[1]["per_split_rmse"] == calibrated[2]["per_split_rmse"]
        assert calibrated[0]["stretch_mean"] == 1.0 and calibrated[1]["stretch_mean"] > 0
        for entry in (methods["ensemble"], *calibrated):
            for level in ("05", "08", "09", "095"):
                assert 0.0 <= entry[f"coverage_{level}_mean"] <= 1.0
    run_info = json.loads((out / "uci_run.json").read_text())
    assert set(run_info["calibrated_coverage_met"]) == {"yacht", "energy"}
    text = (out / "uci.md").read_text()
    assert "### Calibrated on held-out rows" in text and "| yacht | ensemble_conformal |" in text
    # Switching the calibrated columns off leaves the paper's columns exactly as they were.
    settings = uci.Settings(
        data_dir=run_info["settings"]["data_dir"],
        splits=2,
        members=2,
        epochs=3,
        batch_size=16,
        candidates=TWO_CANDIDATES,
        methods=("ensemble",),
        calibrated=False,
    )
    plain = uci.run(tmp_path, settings, echo=False)["results"]
    for name in results:
        assert set(plain[name]) == {"ensemble"}
        assert plain[name]["ensemble"]["per_split_nll"] == results[name]["ensemble"]["per_split_nll"]


def test_uci_holdout_is_a_partition_of_each_split():
    rng = np.random.default_rng(3)
    x = [rng.normal(size=(50, 2)), rng.normal(size=(60, 2))]
    y = [rng.normal(size=50), rng.normal(size=60)]
    x_fit, y_fit, x_cal, y_cal, scalers = uci_calibration.holdout(x, y, 0.2, seed=0)
    for i in range(2):
        assert len(x_cal[i]) == round(0.2 * len(x[i])) and len(x_fit[i]) + len(x_cal[i]) == len(x[i])
        sx, sy = scalers[i]
        np.testing.assert_allclose(np.mean(x_fit[i], axis=0), 0.0, atol=1e-12)  # standardised on the fit rows
        back = np.concatenate([x_fit[i], x_cal[i]]) * sx.std + sx.mean
        np.testing.assert_allclose(np.sort(back, axis=0), np.sort(x[i], axis=0))
        np.testing.assert_allclose(np.sort(np.concatenate([y_fit[i], y_cal[i]]) * sy.std + sy.mean), np.sort(y[i]))
    again = uci_calibration.holdout(x, y, 0.2, seed=0)
    np.testing.assert_array_equal(again[2][1], x_cal[1])


def test_uci_targets_compare_with_the_paper():
    fake = {
        "yacht": {"ensemble": {"nll_mean": 1.10, "rmse_mean": 2.06}},
        "Kin8nm": {"ensemble": {"nll_mean": -1.19, "rmse_mean": 0.09}},
        "mine": {"ensemble": {"nll_mean": 0.0, "rmse_mean": 0.0}},
    }
    checks = uci.targets(fake)
    assert checks == {"yacht": {"nll_met": True, "rmse_met": True}, "Kin8nm": {"nll_met": False, "rmse_met": True}}


def _synthetic_images(root, rng):
    """MNIST-like IDX files: each class is a bright square at its own place, plus noise; NotMNIST-like
    images are noise alone."""

    def images(labels):
        x = rng.integers(0, 60, size=(len(labels), 28, 28))
        for i, label in enumerate(labels):
            r, c = divmod(int(label), 4)
            x[i, 2 + 6 * r : 8 + 6 * r, 2 + 6 * c : 8 + 6 * c] = 250
        return x.astype(np.uint8)

    for folder, prefix, n in (("mnist", "train", 300), ("mnist", "t10k", 120)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (root / folder).mkdir(parents=True, exist_ok=True)
        idx.write(root / folder / f"{prefix}-images-idx3-ubyte.gz", images(labels))
        idx.write(root / folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    (root / "notmnist").mkdir()
    idx.write(root / "notmnist" / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (120, 28, 28)).astype(np.uint8))
    idx.write(root / "notmnist" / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 120).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def mnist_images(tmp_path_factory):
    return _synthetic_images(tmp_path_factory.mktemp("images"), np.random.default_rng(1))


def _tiny_mnist(data, **fields):
    return mnist.Settings(
        data_dir=str(data),
        members=3,
        epochs=3,
        batch_size=50,
        hidden=(32,),
        learning_rate=0.01,
        histogram_members=(1, 3),
        **fields,
    )


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, mnist_images):
    out = tmp_path_factory.mktemp("mnist_out")
    return out, mnist.run(out, _tiny_mnist(mnist_images), echo=False)  # calibrated columns on (the default)


def test_mnist_json_has_every_m_and_variant(mnist_run):
    out, result = mnist_run
    written = json.loads((out / "mnist.json").read_text())
    assert written == result["results"]
    assert set(written) == {"ensemble", "ensemble_at", "calibrated"}
    for by_m in (written["ensemble"], written["ensemble_at"]):
        assert set(by_m) == {"1", "2", "3"}
        for record in by_m.values():
            assert {"error", "nll", "brier", "ood_auroc", "brier_summed"} <= set(record)
            assert 0 <= record["error"] <= 1 and record["nll"] > 0 and 0 <= record["ood_auroc"] <= 1
            assert record["brier"] == pytest.approx(record["brier_summed"] / 10)
    # The synthetic task is easy: the ensemble learns it, and noise images look unfamiliar to it.
    assert written["ensemble"]["3"]["error"] < 0.2
    assert written["ensemble"]["3"]["ood_auroc"] > 0.8


def test_mnist_run_writes_figures_timings_and_targets(mnist_run):
    out, result = mnist_run
    for name in ("mnist_vs_members", "mnist_entropy", "mnist_accuracy_vs_confidence", "mnist_reliability"):
        assert (out / f"{name}.png").stat().st_size > 10_000
    run_info = json.loads((out / "mnist_run.json").read_text())
    assert run_info["data"]["train_rows"] == 300 and not run_info["data"]["train_images_approximate"]
    assert run_info["timings"]["ensemble"]["train_seconds"] > 0
    assert {"ensemble_nll_falls", "ensemble_auroc_rises", "ensemble_at_nll_falls"} <= set(run_info["targets"])
    assert "error_at_5_fgsm" not in run_info["targets"]  # only 3 members here
    assert "| 3 |" in (out / "mnist.md").read_text()


def test_mnist_calibrated_columns(mnist_run):
    out, result = mnist_run
    calibrated = result["results"]["calibrated"]
    run_info = result["run"]
    assert run_info["data"]["calibration"] == {"fit_rows": 270, "calibration_rows": 30}
    assert set(calibrated) == {"ensemble", "ensemble_at"}
    for by_m in calibrated.values():
        assert set(by_m) == {"1", "3"}  # the one network and the largest ensemble
        for c in by_m.values():
            assert c["temperature"] > 0
            # The fit minimises the held-out NLL, and T = 1 is one of the candidates.
            assert c["heldout_nll_after"] <= c["heldout_nll_before"] + 1e-9
            before, after = c["before"], c["after"]
            assert set(mnist_calibration.SCORES) <= set(before) and set(before) == set(after)
            assert after["error"] == before["error"]  # a temperature never moves the argmax
            if abs(c["temperature"] - 1.0) > 1e-3:
                assert after["entropy_test"] != pytest.approx(before["entropy_test"], rel=1e-6)
                # T > 1 flattens every row (more entropy), T < 1 sharpens it.
                assert (after["entropy_ood"] > before["entropy_ood"]) == (c["temperature"] > 1)
    text = (out / "mnist.md").read_text()
    assert "### Temperature scaling on held-out rows" in text and "| ensemble_at, 3 | held-out, T |" in text
    assert "ensemble_calibrated" in run_info["timings"]


def test_mnist_temperature_keeps_the_argmax_and_one_is_the_identity(rng):
    logits = 4.0 * rng.normal(size=(3, 50, 10))
    labels = rng.integers(0, 10, 50)
    held = mnist_calibration.score(logits, labels, logits, labels, {"notmnist": logits[:, :20]}, (1, 3))
    for c in held.values():
        prediction = ClassificationPrediction(logits)
        one = CalibratedClassification(prediction, Calibration("temperature", 1.0))
        t = CalibratedClassification(prediction, Calibration("temperature", c["temperature"]))
        np.testing.assert_array_equal(one.label, t.label)
        np.testing.assert_allclose(one.probs, np.asarray(prediction.probs, np.float64), atol=1e-6)
    # Overconfident random logits: the fitted temperature flattens them and lowers the held-out NLL.
    assert held["3"]["temperature"] > 1 and held["3"]["heldout_nll_after"] < held["3"]["heldout_nll_before"]


def test_mnist_paper_columns_unchanged_without_calibrated_columns(mnist_run, mnist_images, tmp_path):
    # One variant is enough: the variants train independently, with the same seed.
    off = mnist.run(tmp_path, _tiny_mnist(mnist_images, calibrated=False, variants=("ensemble",)), echo=False)
    assert set(off["results"]) == {"ensemble"} and "calibration" not in off["run"]["data"]
    assert off["results"]["ensemble"] == mnist_run[1]["results"]["ensemble"]
    assert "Temperature scaling" not in (tmp_path / "mnist.md").read_text()


def test_mnist_holdout_is_stratified_and_checked():
    labels = np.repeat(np.arange(10), 30)
    fit_rows, cal_rows = mnist_calibration.holdout(labels, 0.1, seed=0)
    assert len(cal_rows) == 30 and len(fit_rows) == 270 and not set(fit_rows) & set(cal_rows)
    np.testing.assert_array_equal(np.bincount(labels[cal_rows]), np.full(10, 3))
    np.testing.assert_array_equal(mnist_calibration.holdout(labels, 0.1, seed=0)[1], cal_rows)
    assert not np.array_equal(mnist_calibration.holdout(labels, 0.1, seed=1)[1], cal_rows)
    for fraction in (0.0, 1.0, 1.5, True):
        with pytest.raises(ValueError, match="calibration_fraction"):
            mnist_calibration.holdout(labels, fraction, seed=0)
    with pytest.raises(ValueError, match="at least 10 held-out rows"):
        mnist_calibration.holdout(labels[:50], 0.1, seed=0)
    with pytest.raises(ValueError, match="calibration_fraction"):
        mnist.Settings(calibration_fraction=1.0)


def test_report_combines_both_sections(uci_run, mnist_run, tmp_path):
    (tmp_path / "uci.md").write_text((uci_run[0] / "uci.md").read_text())
    (tmp_path / "mnist.md").write_text((mnist_run[0] / "mnist.md").read_text())
    text = report.write(tmp_path, uci_run[1], mnist_run[1]).read_text()
    assert "## Targets at a glance" in text and "## UCI regression" in text and "## MNIST" in text
    assert "Lakshminarayanan" in text


def test_report_rebuilds_from_the_json_files(uci_run, mnist_run, tmp_path):
    for name in ("uci.json", "uci_run.json", "mnist.json", "mnist_run.json"):
        source = uci_run[0] if name.startswith("uci") else mnist_run[0]
        (tmp_path / name).write_text((source / name).read_text())
    text = report.rebuild(tmp_path).read_text()
    assert (tmp_path / "uci.md").read_text() == (uci_run[0] / "uci.md").read_text()
    assert (tmp_path / "mnist.md").read_text() == (mnist_run[0] / "mnist.md").read_text()
    assert "## UCI regression" in text and "## MNIST" in text
    with pytest.raises(FileNotFoundError):
        report.rebuild(tmp_path / "nothing_here")


def test_cli_reproduce_parses_its_options(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(uci, "run", lambda out, settings: seen.update(uci=settings) or {"run": None})
    monkeypatch.setattr(mnist, "run", lambda out, settings: seen.update(mnist=settings) or {"run": None})
    monkeypatch.setattr(report, "write", lambda *a: None)
    cli.main(
        [
            "reproduce",
            "uci",
            "--out",
            str(tmp_path),
            "--datasets",
            "yacht, energy",
            "--splits",
            "2",
            "--members",
            "3",
            "--epochs",
            "4",
            "--learning-rate",
            "0.02",
            "--schedule",
            "cosine",
        ]
    )
    s = seen["uci"]
    assert (s.datasets, s.splits, s.members, s.epochs) == (("yacht", "energy"), 2, 3, 4)
    assert s.optimizer == uci.OptimizerConfig(0.02, "cosine")
    cli.main(["reproduce", "mnist", "--out", str(tmp_path), "--members", "4", "--epochs", "2", "--train-limit", "100"])
    assert (seen["mnist"].members, seen["mnist"].epochs, seen["mnist"].train_limit) == (4, 2, 100)
    assert seen["mnist"].calibrated and seen["mnist"].calibration_fraction == 0.1
    cli.main(["reproduce", "mnist", "--out", str(tmp_path), "--no-calibrated", "--calibration-fraction", "0.2"])
    assert not seen["mnist"].calibrated and seen["mnist"].calibration_fraction == 0.2
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "uci", "--splits", "0"])


@pytest.mark.skipif(SHARED is None, reason="the shared benchmark data (../shared/data or $DEEPENS_DATA) is absent")
def test_reproduce_all_on_the_real_data_small(tmp_path):
    # Two real data sets, two splits, a few epochs; a few hundred MNIST images: the whole command.
    assert (
        cli.main(
            [
                "reproduce",
                "all",
                "--out",
                str(tmp_path),
                "--datasets",
                "yacht,bostonHousing",
                "--splits",
                "2",
                "--uci-members",
                "2",
                "--uci-epochs",
                "3",
                "--learning-rate",
                "0.01",
                "--mnist-members",
                "2",
                "--mnist-epochs",
                "1",
                "--train-limit",
                "400",
                "--test-limit",
                "200",
                "--mimo-members",
                "2",
                "--mimo-epochs",
                "1",
            ]
        )
        == 0
    )
    uci_json = json.loads((tmp_path / "uci.json").read_text())
    assert set(uci_json) == {"yacht", "bostonHousing"} and uci_json["yacht"]["ensemble"]["splits"] == 2
    mnist_json = json.loads((tmp_path / "mnist.json").read_text())
    assert set(mnist_json["ensemble_at"]) == {"1", "2"}
    text = (tmp_path / "report.md").read_text()
    assert "| bostonHousing | 2 |" in text and "2.41 ± 0.25" in text  # ours beside the paper's Table 1
    assert "approximate reconstruction" in text  # the shared MNIST training images are flagged
    assert "shift/shift.md" in text and (tmp_path / "shift" / "shift.json").is_file()  # the shift study too
    mimo_json = json.loads((tmp_path / "mimo" / "mimo.json").read_text())  # and the MIMO comparison
    assert (
        "mimo/mimo.md" in text
        and set(mimo_json) == {"mnist", "uci"}
        and set(mimo_json["uci"])
        == {
            "yacht",
            "bostonHousing",
        }
    )
