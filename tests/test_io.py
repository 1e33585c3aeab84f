"""Saving and loading without pickle: identical predictions, refusal of tampered files, atomic writes,
and checkpoints that resume to the uninterrupted result."""

import dataclasses
import json
import os
import pickle
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

import deepens
from deepens import io, serialization
from deepens.io import FormatError
from deepens.models import MLP

FILES = (io.MANIFEST, io.CONFIG, io.ARRAYS)


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(48, 3)).astype(np.float32)
    y = (np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * rng.normal(size=48)).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def regressor(data):
    return deepens.DeepEnsembleRegressor(members=2, hidden_layer_sizes=(8,), epochs=5, random_state=0).fit(*data)


@pytest.fixture
def saved(tmp_path, regressor):
    return regressor.save(tmp_path / "model")


@pytest.mark.parametrize("members", [1, 2, 3])  # one device; split over two; replicated (3 over 2 devices)
def test_an_ensemble_loads_back_predicting_bitwise_the_same(tmp_path, data, members):
    x, y = data
    ensemble = deepens.fit(x, y, hidden=(8,), members=members, epochs=3, progress=False)
    deepens.save(ensemble, tmp_path / "e")
    loaded = deepens.load(tmp_path / "e")
    assert isinstance(loaded, deepens.Ensemble)
    for a, b in zip(_leaves(ensemble.params), _leaves(loaded.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.history, ensemble.history)
    assert (loaded.member_ids, loaded.seed, loaded.head, loaded.model) == (
        ensemble.member_ids,
        ensemble.seed,
        ensemble.head,
        ensemble.model,
    )
    before, after = ensemble.predict(x), loaded.predict(x)
    np.testing.assert_array_equal(np.asarray(after.mean), np.asarray(before.mean))
    np.testing.assert_array_equal(np.asarray(after.std), np.asarray(before.std))


def test_batch_norm_state_and_classifier_heads_round_trip(tmp_path, data):
    x, _ = data
    labels = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1)
    model = MLP((8,), 3, batch_norm=True)
    ensemble = deepens.fit(x, labels, head="categorical", model=model, members=2, epochs=3, progress=False)
    assert jax.tree.leaves(ensemble.state)  # batch statistics are state, and must be saved too
    loaded = deepens.load(deepens.save(ensemble, tmp_path / "bn"))
    for a, b in zip(_leaves(ensemble.state), _leaves(loaded.state), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(loaded.predict(x).probs), np.asarray(ensemble.predict(x).probs))


def test_estimators_load_back_predicting_bitwise_the_same(tmp_path, data, regressor, saved):
    x, y = data
    loaded = deepens.load(saved)
    assert type(loaded) is deepens.DeepEnsembleRegressor
    assert loaded.get_params() == regressor.get_params()
    mean, std = regressor.predict(x, return_std=True)
    loaded_mean, loaded_std = loaded.predict(x, return_std=True)
    np.testing.assert_array_equal(loaded_mean, mean)
    np.testing.assert_array_equal(loaded_std, std)
    np.testing.assert_array_equal(loaded.predict_interval(x)[1], regressor.predict_interval(x)[1])
    np.testing.assert_array_equal(loaded.nll(x, y), regressor.nll(x, y))

    labels = np.array(["low", "mid", "high"], dtype=object)[np.digitize(y, [-0.5, 0.5])]
    classifier = deepens.DeepEnsembleClassifier(members=2, hidden_layer_sizes=(8,), epochs=5, random_state=0)
    classifier.fit(x, labels)
    back = deepens.load(classifier.save(tmp_path / "c", metadata={"note": "labels"}))
    assert list(back.classes_) == ["high", "low", "mid"] and back.classes_.dtype == object
    np.testing.assert_array_equal(back.predict_proba(x), classifier.predict_proba(x))
    np.testing.assert_array_equal(back.predict(x), classifier.predict(x))
    assert io.read_metadata(tmp_path / "c")["note"] == "labels"
    # Each estimator class loads its own kind, and refuses the other's.
    direct = deepens.DeepEnsembleClassifier.load(tmp_path / "c")
    np.testing.assert_array_equal(direct.predict_proba(x), classifier.predict_proba(x))
    with pytest.raises(FormatError, match="holds a DeepEnsembleClassifier, not a DeepEnsembleRegressor"):
        deepens.DeepEnsembleRegressor.load(tmp_path / "c")


def test_loading_never_unpickles(monkeypatch, saved, data):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(np, "load", refuse)
    assert deepens.load(saved).predict(data[0]).shape == (48,)


@pytest.mark.parametrize("name", FILES)
def test_a_flipped_byte_is_refused(saved, name):
    path = saved / name
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="modified|corrupt|not valid|unknown|lists files|not a saved"):
        deepens.load(saved)


@pytest.mark.parametrize("name", FILES)
def test_a_truncated_file_is_refused(saved, name):
    path = saved / name
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(FormatError, match="truncated|corrupt"):
        deepens.load(saved)


@pytest.mark.parametrize("name", FILES)
def test_a_missing_file_is_refused(saved, name):
    (saved / name).unlink()
    with pytest.raises(FormatError, match="missing"):
        deepens.load(saved)


def test_an_unknown_format_version_is_refused(saved):
    manifest = json.loads((saved / io.MANIFEST).read_bytes())
    manifest.pop("manifest_sha256")
    manifest["format_version"] = io.FORMAT_VERSION + 1
    manifest["manifest_sha256"] = io._sha256(io._canonical(manifest))  # a well-formed file from the future
    (saved / io.MANIFEST).write_bytes(io._canonical(manifest))
    with pytest.raises(FormatError, match=f"format version {io.FORMAT_VERSION + 1}.*reads version {io.FORMAT_VERSION}"):
        deepens.load(saved)


def test_nothing_at_the_path_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved model"):
        deepens.load(tmp_path / "nothing")


def test_custom_models_are_refused_rather_than_pickled(tmp_path, data):
    class Custom(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(x)

    ensemble = deepens.fit(*data, model=Custom(), members=1, epochs=1, progress=False)
    with pytest.raises(ValueError, match="only the built-in deepens.MLP"):
        deepens.save(ensemble, tmp_path / "custom")
    assert not (tmp_path / "custom").exists()
    with pytest.raises(ValueError, match="fitted"):
        deepens.save(deepens.DeepEnsembleRegressor(), tmp_path / "unfitted")


def test_saving_never_overwrites_other_folders(tmp_path, regressor, saved):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        regressor.save(precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    (saved / "notes.txt").write_text("mine")  # a model folder the user added a file to is not replaced either
    with pytest.raises(ValueError, match="refusing to overwrite"):
        regressor.save(saved)
    assert (saved / "notes.txt").read_text() == "mine"


def _dead_pid():
    """The id of a process that has exited (what a ``kill -9`` leaves in a temporary's name)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_removing_checkpoints_touches_nothing_else(tmp_path, data):
    folder = tmp_path / "mixed"
    taken = []
    deepens.fit(*data, hidden=(4,), members=1, epochs=2, checkpoint_every=1, on_checkpoint=taken.append, progress=False)
    serialization.save_checkpoint(folder, taken[1], {})
    (folder / f".epoch-000001.tmp-{_dead_pid()}-0123456789ab").mkdir()  # what a kill during a save leaves
    (folder / "results.csv").write_text("keep")
    io.remove_checkpoints(folder)
    assert sorted(os.listdir(folder)) == ["results.csv"]
    (folder / "results.csv").unlink()
    serialization.save_checkpoint(folder, taken[1], {})
    io.remove_checkpoints(folder)
    assert not folder.exists()


def test_checkpoint_cleanup_keeps_the_users_folders_named_like_checkpoints(tmp_path, data, regressor):
    folder = tmp_path / "ckpt"
    taken = []
    deepens.fit(*data, hidden=(4,), members=1, epochs=3, checkpoint_every=1, on_checkpoint=taken.append, progress=False)
    users = folder / "epoch-000001"
    users.mkdir(parents=True)
    (users / "notes.txt").write_text("mine")
    regressor.save(folder / "epoch-000002")  # a deepens object, but not a checkpoint
    forged = folder / "epoch-000000"  # a bundle of kind checkpoint without a run in its manifest
    io.write_bundle(forged, "checkpoint", {"epoch": 0}, {"a": np.zeros(2, np.float32)})
    serialization.save_checkpoint(folder, taken[2], {})  # epoch 3: removes older checkpoints of its run only
    assert sorted(os.listdir(folder)) == ["epoch-000000", "epoch-000001", "epoch-000002", "epoch-000003"]
    assert io.latest_checkpoint(folder).name == "epoch-000003"
    io.remove_checkpoints(folder)
    assert sorted(os.listdir(folder)) == ["epoch-000000", "epoch-000001", "epoch-000002"]
    assert (users / "notes.txt").read_text() == "mine"
    assert deepens.load(folder / "epoch-000002").predict(data[0]).shape == (48,)
    assert io.latest_checkpoint(folder) is None  # folders named like checkpoints are passed over
    # A checkpoint save never replaces what is not a checkpoint.
    with pytest.raises(ValueError, match="refusing to overwrite.*not a checkpoint deepens wrote"):
        serialization.save_checkpoint(folder, taken[1], {})  # epoch 2: the user's saved regressor
    with pytest.raises(ValueError, match="refusing to overwrite"):
        serialization.save_checkpoint(folder, taken[0], {})
    assert (users / "notes.txt").read_text() == "mine"
    # Another run's checkpoints in a shared folder survive this run's saves and its cleanup.
    other = dataclasses.replace(taken[2], epoch=4, identity=dataclasses.replace(taken[2].identity, x="0" * 64))
    serialization.save_checkpoint(folder, taken[2], {})
    serialization.save_checkpoint(folder, other, {})
    serialization.save_checkpoint(folder, dataclasses.replace(taken[2], epoch=5), {})
    assert {"epoch-000004", "epoch-000005"} <= set(os.listdir(folder)) and "epoch-000003" not in os.listdir(folder)
    io.remove_checkpoints(folder, run=taken[2].identity.digest)
    assert "epoch-000004" in os.listdir(folder) and "epoch-000005" not in os.listdir(folder)


def test_a_checkpoint_dir_that_is_a_file_is_a_clear_error(tmp_path, data):
    taken = []
    deepens.fit(*data, hidden=(4,), members=1, epochs=1, checkpoint_every=1, on_checkpoint=taken.append, progress=False)
    file = tmp_path / "ckpt"
    file.write_text("not a folder")
    for call in (
        lambda: io.check_checkpoint_dir(file),
        lambda: io.latest_checkpoint(file),
        lambda: serialization.save_checkpoint(file, taken[0], {}),
    ):
        with pytest.raises(ValueError, match="is a file, not a folder"):
            call()
    with pytest.raises(ValueError, match="is a file, not a folder"):
        serialization.save_checkpoint(file / "below", taken[0], {})
    io.remove_checkpoints(file)  # cleanup never touches a file
    assert file.read_text() == "not a folder"
    with pytest.raises(ValueError, match="is the model folder"):
        io.check_checkpoint_dir(tmp_path / "m", model=tmp_path / "m")


def test_a_crash_while_saving_leaves_no_half_written_model(tmp_path, monkeypatch, data, regressor, saved):
    writes = []

    def crash_on_second_file(path, data):
        writes.append(path.name)
        if len(writes) == 2:
            raise OSError("disk full")
        with open(path, "wb") as f:
            f.write(data)

    monkeypatch.setattr(io, "_write_file", crash_on_second_file)
    with pytest.raises(OSError, match="disk full"):
        regressor.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    # Replacing an existing model: the crash leaves the old one intact and loadable.
    before = deepens.load(saved).predict(data[0])
    writes.clear()
    other = deepens.DeepEnsembleRegressor(members=2, hidden_layer_sizes=(8,), epochs=5, random_state=1).fit(*data)
    with pytest.raises(OSError, match="disk full"):
        other.save(saved)
    np.testing.assert_array_equal(deepens.load(saved).predict(data[0]), before)
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no temporary folders left behind
    monkeypatch.undo()
    other.save(saved)  # a successful replace
    np.testing.assert_array_equal(deepens.load(saved).predict(data[0]), other.predict(data[0]))
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_a_checkpoint_on_disk_resumes_to_the_uninterrupted_result(tmp_path, data):
    x, y = data
    settings = dict(
        hidden=(8,),
        members=3,
        epochs=6,
        batch_size=16,
        learning_rate=0.01,
        seed=4,
        adversarial="fgsm",
        checkpoint_every=2,
        progress=False,
    )
    taken = []
    uninterrupted = deepens.fit(x, y, on_checkpoint=taken.append, **settings)
    serialization.save_checkpoint(tmp_path / "ckpt", taken[0], {"run": "a"})
    serialization.save_checkpoint(tmp_path / "ckpt", taken[1], {"run": "a"})
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["epoch-000004"]  # older ones are removed
    latest = io.latest_checkpoint(tmp_path / "ckpt")
    model = uninterrupted.model
    optimizer = deepens.train.make_optimizer(0.01, 0.0, 1.0)  # fit clips Gaussian heads at norm 1
    checkpoint, info = serialization.load_checkpoint(latest, model, optimizer, (3,))
    assert info == {"run": "a"} and checkpoint.epoch == 4
    resumed = deepens.fit(x, y, resume=checkpoint, **settings)
    for a, b in zip(_leaves(uninterrupted.params), _leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(uninterrupted.history, resumed.history)
    # A checkpoint read with another model is refused as another run's, naming the shapes, not misread.
    with pytest.raises(
        ValueError, match=r"belongs to another run: model parameter shapes differ.*\['Dense_0'\]\['bias'\]"
    ):
        serialization.load_checkpoint(
            latest, deepens.as_model(MLP((9,), 2)), deepens.train.make_optimizer(0.01, 0.0, 1.0), (3,)
        )


def test_estimator_checkpoints_resume_and_refuse_another_run(tmp_path, data):
    x, y = data
    settings = dict(members=2, hidden_layer_sizes=(8,), epochs=6, batch_size=16, random_state=3)
    reference = deepens.DeepEnsembleRegressor(**settings).fit(x, y)
    folder = tmp_path / "ckpt"
    first = deepens.DeepEnsembleRegressor(**settings).fit(x, y, checkpoint_dir=folder, checkpoint_every=3)
    np.testing.assert_array_equal(first.predict(x), reference.predict(x))
    assert io.latest_checkpoint(folder).name == "epoch-000006"
    # Resuming from the last checkpoint trains nothing more and gives the same model.
    again = deepens.DeepEnsembleRegressor(**settings).fit(x, y, checkpoint_dir=folder, checkpoint_every=3, resume=True)
    np.testing.assert_array_equal(again.predict(x), reference.predict(x))
    with pytest.raises(ValueError, match="belongs to another run.*data_sha256"):
        deepens.DeepEnsembleRegressor(**settings).fit(
            x + 1.0, y, checkpoint_dir=folder, checkpoint_every=3, resume=True
        )
    with pytest.raises(ValueError, match="belongs to another run.*params"):
        deepens.DeepEnsembleRegressor(**dict(settings, learning_rate=0.1)).fit(
            x, y, checkpoint_dir=folder, checkpoint_every=3, resume=True
        )
