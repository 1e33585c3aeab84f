"""The command line end to end on small CSV and Parquet files made here: train, predict, bad input
(one line on stderr, exit code 2, nothing written), and a real kill and resume."""

import contextlib
import io as io_module
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import deepens
from deepens import cli, io, tables

TRAIN = ["--members", "2", "--hidden", "8", "--epochs", "8", "--batch-size", "32", "--learning-rate", "0.03", "--quiet"]


def _regression_frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame(
        {
            "key": [f"id{i:03d}" for i in range(n)],
            "a": x[:, 0],
            "b": x[:, 1],
            "c": x[:, 2],
            "city": rng.choice(["Oslo", "Lima"], n),
            "price": 3.0 * x[:, 0] - x[:, 1] + 0.2 * rng.normal(size=n) + 100.0,
        }
    )


def _classification_frame(n=120, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    species = np.where(x[:, 0] > 0.3, "setosa", np.where(x[:, 1] > 0, "virginica", "versicolor"))
    return pd.DataFrame({"u": x[:, 0], "v": x[:, 1], "flag": x[:, 0] > 1.0, "species": species})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    _regression_frame().to_csv(folder / "houses.csv", index=False)
    _classification_frame().to_parquet(folder / "flowers.parquet", index=False)
    return folder


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def regression_model(files, tmp_path_factory):
    model = tmp_path_factory.mktemp("models") / "houses"
    argv = ["train", files / "houses.csv", "--target", "price", "-o", model, "--drop", "city", "--id", "key", *TRAIN]
    assert cli.main([str(a) for a in argv]) == 0
    return model


@pytest.fixture(scope="module")
def classification_model(files, tmp_path_factory):
    """A classifier trained by the command line on the Parquet file, and what training said on stderr."""
    model = tmp_path_factory.mktemp("models") / "flowers"
    said = io_module.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io_module.StringIO()):
        code = cli.main(
            [str(a) for a in ["train", files / "flowers.parquet", "--target", "species", "-o", model, *TRAIN]]
        )
    assert code == 0, said.getvalue()
    return model, said.getvalue()


def test_train_infers_regression_and_predict_writes_the_columns(capsys, files, regression_model, tmp_path):
    metadata = io.read_metadata(regression_model)
    assert metadata["task"] == "regression" and metadata["features"] == ["a", "b", "c"]
    model = deepens.load(regression_model)
    assert isinstance(model, deepens.DeepEnsembleRegressor) and model.members == 2
    code, out, err = _run(
        capsys,
        "predict",
        regression_model,
        files / "houses.csv",
        "-o",
        tmp_path / "p.csv",
        "--id",
        "key",
        "--level",
        "0.8",
    )
    assert code == 0, err
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.columns) == ["key", "mean", "std", "lower_80", "upper_80", "aleatoric_std", "epistemic_std"]
    frame = pd.read_csv(files / "houses.csv")
    assert list(table["key"]) == list(frame["key"])  # rows keep their order and their id
    x = frame[["a", "b", "c"]]
    mean, std = model.predict(x, return_std=True)
    np.testing.assert_allclose(table["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(table["std"], std, rtol=1e-12)
    np.testing.assert_allclose(table["aleatoric_std"] ** 2 + table["epistemic_std"] ** 2, std**2, rtol=1e-5)
    assert np.all(table["lower_80"] < table["mean"]) and np.all(table["mean"] < table["upper_80"])
    assert np.corrcoef(table["mean"], frame["price"])[0, 1] > 0.9  # it learned, in the user's units


def test_classification_on_parquet_with_text_labels(capsys, files, classification_model, tmp_path):
    model_dir, said = classification_model
    assert "task: classification" in said and "text labels" in said
    code, out, err = _run(capsys, "predict", model_dir, files / "flowers.parquet", "-o", tmp_path / "p.parquet")
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "p.parquet")
    classes = ["setosa", "versicolor", "virginica"]
    assert list(table.columns) == [*(f"prob_{c}" for c in classes), "predicted", "entropy", "knowledge"]
    probs = table[[f"prob_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)
    assert list(table["predicted"]) == [classes[k] for k in probs.argmax(axis=1)]
    assert np.all(table["knowledge"] >= 0) and np.all(table["entropy"] >= table["knowledge"] - 1e-9)
    truth = pd.read_parquet(files / "flowers.parquet")["species"]
    assert np.mean(table["predicted"] == truth) > 0.7


def test_evaluate_prints_the_metrics_and_writes_the_figure(capsys, files, regression_model, tmp_path):
    code, out, err = _run(capsys, "evaluate", regression_model, files / "houses.csv", "--out", tmp_path / "ev")
    assert code == 0, err
    for name in ("rmse", "nll", "crps", "coverage_0.9"):
        assert name in out
    record = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert record["task"] == "regression" and record["rows"] == 120 and record["target"] == "price"
    frame = pd.read_csv(files / "houses.csv")
    model = deepens.load(regression_model)
    assert record["metrics"] == pytest.approx(model.evaluate(frame[["a", "b", "c"]], frame["price"]), rel=1e-12)
    assert (tmp_path / "ev" / "calibration.png").stat().st_size > 10_000


def test_evaluate_a_classifier_and_refuse_unseen_classes(capsys, files, classification_model, tmp_path):
    model_dir, _ = classification_model
    code, out, err = _run(
        capsys, "evaluate", model_dir, files / "flowers.parquet", "--out", tmp_path / "ev", "--bins", "10"
    )
    assert code == 0, err
    for name in ("accuracy", "nll", "brier_per_class", "ece"):
        assert name in out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    frame = pd.read_parquet(files / "flowers.parquet")
    model = deepens.load(model_dir)
    assert metrics["accuracy"] == pytest.approx(model.score(frame[["u", "v", "flag"]], frame["species"]))
    assert (tmp_path / "ev" / "calibration.png").stat().st_size > 10_000
    frame.loc[[3, 8], "species"] = "rose"
    frame.to_csv(tmp_path / "new.csv", index=False)
    _assert_refused(
        capsys,
        tmp_path,
        ["evaluate", model_dir, tmp_path / "new.csv", "--out", tmp_path / "ev2"],
        "never saw in training: 'rose' in rows 4, 9",
        outputs=[tmp_path / "ev2"],
    )
    frame.drop(columns=["species"]).to_csv(tmp_path / "unlabelled.csv", index=False)
    _assert_refused(
        capsys, tmp_path, ["evaluate", model_dir, tmp_path / "unlabelled.csv"], "no target column 'species'"
    )


@pytest.mark.parametrize(
    "values, task, reason",
    [
        (["a", "b", "a", "b"], "classification", "text labels"),
        ([True, False, True, False], "classification", "boolean"),
        ([1, 2, 1, 2, 1, 2], "classification", "2 distinct whole numbers"),
        ([0.5, 1.5, 2.25, 3.0], "regression", "real numbers"),
        (list(range(50)), "regression", "too many"),
    ],
)
def test_task_inference(values, task, reason):
    inferred, said = tables.infer_task(pd.Series(values, name="t"))
    assert inferred == task and reason in said


def _assert_refused(capsys, tmp_path, argv, message, *, outputs=()):
    before = set(os.listdir(tmp_path))
    code, out, err = _run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepens "), err
    assert message in lines[0], lines[0]
    for path in outputs:
        assert not os.path.exists(path)
    assert set(os.listdir(tmp_path)) == before  # nothing written, no temporary files left


def test_train_refuses_bad_input_with_one_line(capsys, files, tmp_path):
    out = tmp_path / "m"
    houses = files / "houses.csv"
    refuse = lambda argv, message: _assert_refused(capsys, tmp_path, argv, message, outputs=[out])  # noqa: E731
    refuse(["train", tmp_path / "nope.csv", "--target", "price", "-o", out], "no such file")
    refuse(["train", houses, "--target", "cost", "-o", out], "no target column 'cost'")
    refuse(["train", houses, "--target", "price", "-o", out, "--drop", "city"], "non-numeric feature column 'key'")
    refuse(["train", houses, "--target", "price", "-o", out], "--drop key city")
    refuse(["train", houses, "--target", "price", "-o", out, "--drop", "city", "zip"], "no --drop column 'zip'")
    refuse(
        ["train", houses, "--target", "price", "-o", out, "--drop", "city", "key", "--activation", "swish"],
        "unknown activation 'swish'",
    )
    refuse(
        ["train", houses, "--target", "price", "-o", out, "--drop", "city", "key", "--epochs", "0"],
        "epochs must be an integer >= 1",
    )

    frame = _regression_frame()
    frame.loc[[4, 9], "b"] = np.nan
    frame.loc[6, "price"] = np.inf
    frame.drop(columns=["key", "city"]).to_csv(tmp_path / "holes.csv", index=False)
    refuse(
        ["train", tmp_path / "holes.csv", "--target", "price", "-o", out],
        "missing or infinite values in rows 5, 7, 10 (columns 'b', 'price')",
    )
    frame = _regression_frame()
    frame["price"] = frame["price"].astype(object)
    frame.loc[3, "price"] = "unknown"
    frame.drop(columns=["key", "city"]).to_csv(tmp_path / "text.csv", index=False)
    refuse(
        ["train", tmp_path / "text.csv", "--target", "price", "--task", "regression", "-o", out],
        "target 'price' is not numeric (row 4 holds 'unknown')",
    )


def test_drop_missing_skips_the_rows(capsys, tmp_path):
    frame = _regression_frame().drop(columns=["key", "city"])
    frame.loc[[4, 9], "b"] = np.nan
    frame.to_csv(tmp_path / "holes.csv", index=False)
    code, out, err = _run(
        capsys, "train", tmp_path / "holes.csv", "--target", "price", "-o", tmp_path / "m", "--drop-missing", *TRAIN
    )
    assert code == 0, err
    assert "dropped 2 rows" in err and io.read_metadata(tmp_path / "m")["training_rows"] == 118
    code, out, err = _run(
        capsys, "predict", tmp_path / "m", tmp_path / "holes.csv", "-o", tmp_path / "p.csv", "--drop-missing"
    )
    assert code == 0 and len(pd.read_csv(tmp_path / "p.csv")) == 118


def test_predict_refuses_bad_input_with_one_line(capsys, files, regression_model, tmp_path):
    out = tmp_path / "p.csv"
    refuse = lambda argv, message: _assert_refused(capsys, tmp_path, argv, message, outputs=[out])  # noqa: E731
    frame = pd.read_csv(files / "houses.csv")
    frame.drop(columns=["c"]).to_csv(tmp_path / "two.csv", index=False)
    refuse(["predict", regression_model, tmp_path / "two.csv", "-o", out], "no feature column 'c'")
    holes = frame.copy()
    holes.loc[2, "a"] = np.nan
    holes.to_csv(tmp_path / "holes.csv", index=False)
    refuse(["predict", regression_model, tmp_path / "holes.csv", "-o", out], "row 3 (column 'a')")
    text = frame.copy()
    text["b"] = text["b"].astype(object)
    text.loc[0, "b"] = "oops"
    text.to_csv(tmp_path / "text.csv", index=False)
    refuse(["predict", regression_model, tmp_path / "text.csv", "-o", out], "'b': row 1 holds 'oops'")
    refuse(["predict", tmp_path / "no-model", files / "houses.csv", "-o", out], "no saved model")
    refuse(["predict", regression_model, files / "houses.csv", "-o", tmp_path / "p.txt"], "must end in .csv")
    # A model of two features meeting data of three: the feature count differs.
    two = deepens.DeepEnsembleRegressor(members=1, hidden_layer_sizes=(4,), epochs=1, random_state=0)
    two.fit(frame[["a", "b"]].to_numpy(), frame["price"]).save(tmp_path / "two-features")
    refuse(
        ["predict", tmp_path / "two-features", files / "houses.csv", "-o", out, "--drop", "key", "city", "price"],
        "has 3 feature columns but the model was trained on 2",
    )
    # The existing output is untouched by a refused command.
    out.write_text("old")
    _assert_refused(capsys, tmp_path, ["predict", regression_model, tmp_path / "two.csv", "-o", out], "no feature")
    assert out.read_text() == "old"


def test_predict_refuses_classes_never_seen_in_training(capsys, classification_model, tmp_path):
    model_dir, _ = classification_model
    frame = _classification_frame()
    frame.loc[5, "species"] = "rose"
    frame.to_csv(tmp_path / "new.csv", index=False)
    _assert_refused(
        capsys,
        tmp_path,
        ["predict", model_dir, tmp_path / "new.csv", "-o", tmp_path / "p.csv"],
        "classes the model never saw in training: 'rose' in row 6",
    )


def test_a_killed_training_resumes_to_the_uninterrupted_result(tmp_path, capsys):
    """SIGKILL a real training process after its first checkpoint appears, resume it, and compare with an
    uninterrupted run of the same command: the parameters and the loss history are bitwise equal."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1200, 4))
    pd.DataFrame({**{f"x{i}": x[:, i] for i in range(4)}, "y": np.sin(x[:, 0]) + x[:, 1] * x[:, 2]}).to_csv(
        tmp_path / "data.csv", index=False
    )
    settings = [
        "--target",
        "y",
        "--members",
        "2",
        "--hidden",
        "16",
        "--epochs",
        "30",
        "--batch-size",
        "8",
        "--checkpoint-every",
        "2",
        "--quiet",
    ]
    killed = tmp_path / "killed"
    checkpoints = cli.checkpoint_dir_for(killed)
    process = subprocess.Popen(
        [sys.executable, "-m", "deepens.cli", "train", str(tmp_path / "data.csv"), "-o", str(killed), *settings],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while io.latest_checkpoint(checkpoints) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stderr = process.stderr.read().decode()
    assert process.returncode == -signal.SIGKILL, f"training ended before it could be killed: {stderr}"
    assert not killed.exists() and io.latest_checkpoint(checkpoints) is not None

    code, out, err = _run(capsys, "train", tmp_path / "data.csv", "-o", killed, *settings, "--resume")
    assert code == 0, err
    resumed_from = io.read_metadata(killed)["resumed_from"]
    assert resumed_from is not None and resumed_from != "epoch-000030"  # it really continued mid-way
    assert not checkpoints.exists()  # spent checkpoints are removed once the model is saved
    code, out, err = _run(capsys, "train", tmp_path / "data.csv", "-o", tmp_path / "straight", *settings)
    assert code == 0, err
    a, b = deepens.load(killed).ensemble_, deepens.load(tmp_path / "straight").ensemble_
    for name, leaf in io.flatten("params", a.params).items():
        np.testing.assert_array_equal(leaf, io.flatten("params", b.params)[name], err_msg=name)
    np.testing.assert_array_equal(a.history, b.history)


# --- hostile input (issue 14): task inference, paths that would lose data, the experiment commands -----


@pytest.mark.parametrize(
    "values, task, reason",
    [
        ([3.5] * 30, "regression", "constant"),
        ([2] * 30, "regression", "constant"),
        ([0, 1, 2] * 10, "classification", "3 distinct whole numbers"),
        (["x", "y", "1", "2"], "classification", "text labels"),  # half numbers: labels, not numbers with typos
        ([True] * 6, "classification", "boolean"),
    ],
)
def test_task_inference_of_edge_cases(values, task, reason):
    inferred, said = tables.infer_task(pd.Series(values, name="t"))
    assert inferred == task and reason in said, said


def test_a_numeric_target_with_stray_text_is_refused_naming_the_rows():
    values = pd.Series([*np.linspace(0.0, 1.0, 58), "n/a", "oops"], name="t", dtype=object)
    values.iloc[[3, 59]] = values.iloc[[58, 3]].to_numpy()  # stray text in rows 4 and 59 (counted from 1)
    with pytest.raises(ValueError, match=r"'t' is mostly numbers \(58 of 60 values\) but rows 4, 59 hold text"):
        tables.infer_task(values)


def test_train_refuses_stray_text_and_fits_a_constant_target_as_regression(capsys, tmp_path):
    frame = _regression_frame().drop(columns=["key", "city"])
    text = frame.copy()
    text["price"] = text["price"].astype(object)
    text.loc[7, "price"] = "unknown"
    text.to_csv(tmp_path / "text.csv", index=False)
    _assert_refused(
        capsys,
        tmp_path,
        ["train", tmp_path / "text.csv", "--target", "price", "-o", tmp_path / "m"],
        "row 8 holds text ('unknown')",
        outputs=[tmp_path / "m"],
    )
    frame["price"] = 5.0
    frame.to_csv(tmp_path / "constant.csv", index=False)
    code, out, err = _run(capsys, "train", tmp_path / "constant.csv", "--target", "price", "-o", tmp_path / "c", *TRAIN)
    assert code == 0, err
    assert "task: regression" in err and "constant" in err
    np.testing.assert_allclose(deepens.load(tmp_path / "c").predict(frame[["a", "b", "c"]]), 5.0, atol=0.5)


def test_values_too_large_for_float32_are_named_by_column_and_row(capsys, tmp_path):
    frame = _regression_frame().drop(columns=["key", "city"])
    frame.loc[9, "b"] = 1e39
    frame.to_csv(tmp_path / "huge.csv", index=False)
    _assert_refused(
        capsys,
        tmp_path,
        ["train", tmp_path / "huge.csv", "--target", "price", "-o", tmp_path / "m"],
        "column 'b' holds values too large for float32",
        outputs=[tmp_path / "m"],
    )
    frame = _regression_frame().drop(columns=["key", "city"])
    frame.loc[4, "price"] = -1e300
    frame.to_csv(tmp_path / "target.csv", index=False)
    _assert_refused(
        capsys,
        tmp_path,
        ["train", tmp_path / "target.csv", "--target", "price", "-o", tmp_path / "m"],
        "the target 'price' holds values too large for float32 (|value| > 3.4e+38) in row 5",
    )


def test_train_refuses_a_checkpoint_dir_that_is_a_file_or_the_model_folder(capsys, files, tmp_path):
    out = tmp_path / "m"
    houses = [
        "train",
        files / "houses.csv",
        "--target",
        "price",
        "--drop",
        "city",
        "key",
        "-o",
        out,
        *TRAIN,
        "--checkpoint-every",
        "1",
    ]
    (tmp_path / "note.txt").write_text("mine")
    _assert_refused(
        capsys, tmp_path, [*houses, "--checkpoint-dir", tmp_path / "note.txt"], "is a file, not a folder", outputs=[out]
    )
    for checkpoints in (out, tmp_path / "m" / "inner", tmp_path):
        _assert_refused(
            capsys,
            tmp_path,
            [*houses, "--checkpoint-dir", checkpoints],
            "must lie apart from the model folder",
            outputs=[out],
        )
    assert (tmp_path / "note.txt").read_text() == "mine"


def test_predict_refuses_to_write_over_its_input(capsys, files, regression_model, tmp_path):
    data = tmp_path / "houses.csv"
    data.write_bytes((files / "houses.csv").read_bytes())
    before = data.read_bytes()
    for output in (data, tmp_path / "." / "houses.csv"):
        _assert_refused(capsys, tmp_path, ["predict", regression_model, data, "-o", output], "is the input")
    assert data.read_bytes() == before
    code, out, err = _run(capsys, "predict", regression_model, data, "-o", regression_model / "p.csv")
    assert code == 2 and "inside the model folder" in err and not (regression_model / "p.csv").exists()


@pytest.fixture
def uci_folder(tmp_path_factory):
    from deepens.data import uci

    root = tmp_path_factory.mktemp("uci")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2))
    uci.write(root / "tiny", x, x.sum(1), [(np.arange(20), np.arange(20, 30))])
    uci.write(root / "broken", x, x.sum(1), [(np.arange(20), np.arange(20, 30))])
    (root / "broken" / "n_splits.txt").write_text("")
    return root


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reproduce", "uci", "--data-dir", "{tmp}/nowhere"], "data folder {tmp}/nowhere does not exist"),
        (["reproduce", "uci", "--data-dir", "{uci}", "--datasets", "tiny,nope"], "unknown data set 'nope'"),
        (["reproduce", "uci", "--data-dir", "{uci}"], "n_splits.txt must hold exactly one integer"),
        (
            ["reproduce", "uci", "--data-dir", "{uci}", "--datasets", "tiny", "--members", "1"],
            "members=1 leaves the MSE",
        ),
        (
            ["reproduce", "uci", "--data-dir", "{uci}", "--datasets", "tiny", "--out", "{tmp}/file"],
            "is a file, not a folder",
        ),
        (
            ["reproduce", "uci", "--data-dir", "{uci}", "--datasets", "tiny", "--seed", "-1"],
            "--seed must be an integer >= 0",
        ),
        (["reproduce", "uci", "--data-dir", "{uci}", "--schedule", "cosine"], "need --learning-rate"),
        (["reproduce", "mnist", "--data-dir", "{uci}"], "has no mnist/ folder"),
        (["reproduce", "all", "--data-dir", "{tmp}/nowhere"], "does not exist"),
        (["demo", "--seed", "-1"], "--seed must be an integer >= 0"),
        (["demo", "--out", "{tmp}/file/sub"], "{tmp}/file is a file, not a folder"),
        (["bench", "--workload", "w1", "--members", "0"], "--members must be an integer >= 1, got 0"),
        (["bench", "--workload", "w1", "--json", "{tmp}/nowhere/b.json"], "the folder {tmp}/nowhere does not exist"),
        (["bench", "--workload", "w1", "--json", "{tmp}"], "is a folder"),
    ],
)
def test_experiment_commands_refuse_bad_input_with_one_line_before_any_work(
    capsys, tmp_path, uci_folder, argv, message, monkeypatch
):
    from deepens.experiments import bench, demo, uci

    def started(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    for module in (bench, demo, uci):
        monkeypatch.setattr(module, "run" if module is not uci else "run_dataset", started)
    (tmp_path / "file").write_text("")
    argv = [a.format(tmp=tmp_path, uci=uci_folder) for a in argv]
    results = tmp_path / "elsewhere" / "results"
    (tmp_path / "elsewhere").mkdir()
    if "--out" not in argv and argv[0] != "bench":
        argv += ["--out", str(results)]
    _assert_refused(capsys, tmp_path, argv, message.format(tmp=tmp_path))
    # At most an empty output folder was made (the benchmarks make it, then read their data).
    assert not results.exists() or not any(results.iterdir())


def test_a_bad_deepens_cpu_devices_is_one_line_and_does_not_break_import(capsys, monkeypatch, tmp_path):
    for name in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEEPENS_CPU_DEVICES", "abc")
    code, out, err = _run(capsys, "demo", "--out", tmp_path / "d")
    assert code == 2 and err.strip() == (
        "deepens: error: DEEPENS_CPU_DEVICES must be a whole number of devices >= 1, "
        "got 'abc' (unset it for one device per core)"
    )
    assert not (tmp_path / "d").exists()
    env = {**os.environ, "DEEPENS_CPU_DEVICES": "abc"}
    done = subprocess.run(
        [sys.executable, "-c", "import deepens, deepens.sklearn; print('imported')"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr


def test_evaluate_refuses_a_one_member_point_ensemble_with_one_line(capsys, files, tmp_path):
    frame = pd.read_csv(files / "houses.csv")
    point = deepens.DeepEnsembleRegressor(
        members=1, head="point", hidden_layer_sizes=(4,), epochs=1, random_state=0, calibration=None
    )
    point.fit(frame[["a", "b", "c"]], frame["price"]).save(tmp_path / "point", metadata={"target": "price"})
    with pytest.raises(ValueError, match=r"zero variance in 120 of 120 rows \(point members, one member\)"):
        point.evaluate(frame[["a", "b", "c"]], frame["price"])
    _assert_refused(
        capsys,
        tmp_path,
        ["evaluate", tmp_path / "point", files / "houses.csv", "--drop", "key", "city"],
        "zero variance",
    )


def test_train_and_predict_on_values_near_the_float32_limit_give_finite_tables(capsys, tmp_path):
    # A feature and a target of magnitude 1e30 (their squares overflow float32): standardised, not NaN.
    frame = _regression_frame().drop(columns=["key", "city"])
    frame["a"] *= 1e30
    frame["price"] *= 1e30
    frame.to_csv(tmp_path / "huge.csv", index=False)
    code, out, err = _run(capsys, "train", tmp_path / "huge.csv", "--target", "price", "-o", tmp_path / "m", *TRAIN)
    assert code == 0, err
    code, out, err = _run(capsys, "predict", tmp_path / "m", tmp_path / "huge.csv", "-o", tmp_path / "p.csv")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "p.csv")
    assert np.all(np.isfinite(table.to_numpy())) and table["mean"].abs().median() > 1e29


def test_train_calibration_options_and_evaluate_before_and_after(capsys, files, tmp_path):
    houses, flowers = files / "houses.csv", files / "flowers.parquet"
    out = tmp_path / "m"
    refuse = lambda argv, message: _assert_refused(capsys, tmp_path, argv, message, outputs=[out])  # noqa: E731
    regression = ["train", houses, "--target", "price", "-o", out, "--drop", "city", "key"]
    refuse([*regression, "--calibration", "temperature"], "--calibration temperature is for classification")
    refuse([*regression, "--loss", "brier"], "--loss brier is for classification")
    refuse([*regression, "--head", "laplace", "--loss", "beta_nll"], "beta_nll")
    refuse(
        ["train", flowers, "--target", "species", "-o", out, "--calibration", "conformal"],
        "--calibration conformal is for regression",
    )
    refuse(["train", flowers, "--target", "species", "-o", out, "--loss", "beta_nll"], "beta_nll is for regression")
    code, _, err = _run(
        capsys, *regression, *TRAIN, "--calibration", "scale", "--calibration-fraction", "0.3", "--loss", "beta_nll"
    )
    assert code == 0, err
    model = deepens.load(out)
    assert model.calibration_.kind == "scale" and model.loss == "beta_nll" and model.calibration_fraction == 0.3
    code, shown, err = _run(capsys, "evaluate", out, houses, "--out", tmp_path / "ev")
    assert code == 0, err
    assert "uncalibrated" in shown and "coverage_0.8" in shown
    scores = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    for level in ("0.5", "0.8", "0.9", "0.95"):
        assert f"coverage_{level}" in scores and f"coverage_{level}_uncalibrated" in scores
    frame = pd.read_csv(houses)
    lower, upper = model.predict_interval(frame[["a", "b", "c"]], 0.8)
    inside = (frame["price"] >= lower) & (frame["price"] <= upper)
    assert scores["coverage_0.8"] == pytest.approx(inside.mean())
    code, _, err = _run(capsys, *regression, *TRAIN, "--calibration", "none")
    assert code == 0, err
    assert deepens.load(out).calibration_ is None


def test_evaluate_a_calibrated_classifier_shows_ece_before_and_after(capsys, files, classification_model, tmp_path):
    model_dir, said = classification_model
    assert "calibration: auto" in said
    code, shown, err = _run(capsys, "evaluate", model_dir, files / "flowers.parquet", "--out", tmp_path / "ev")
    assert code == 0, err
    scores = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    model = deepens.load(model_dir)
    assert model.calibration_.kind == "temperature"
    assert "ece_uncalibrated" in scores and scores["accuracy"] == scores["accuracy_uncalibrated"]
    frame = pd.read_parquet(files / "flowers.parquet")
    assert scores["nll"] == pytest.approx(np.mean(model.nll(frame[["u", "v", "flag"]], frame["species"])), rel=1e-5)
