"""The run identity of a checkpoint and the refusal of a resume that is not the same run (issue 14, item 10).

The unit tests call :func:`deepens.checkpoint.run_identity` and :func:`check_resume` directly; the
end-to-end tests go through ``deepens.fit(resume=)`` and the estimators.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deepens
from deepens import io, serialization
from deepens.checkpoint import Checkpoint, RunIdentity, check_resume, data_sha256, run_identity
from deepens.io import FormatError

SETTINGS = {"head": "gaussian", "seed": 0, "batch_size": 16, "optimizer": (0.01, 0.0, 1.0)}
LAYOUT = {"members": 1, "data": 1, "platform": "cpu"}


def _params(hidden=8, members=2, inputs=3):
    return {
        "Dense_0": {
            "kernel": np.zeros((members, inputs, hidden), np.float32),
            "bias": np.zeros((members, hidden), np.float32),
        },
        "Dense_1": {"kernel": np.zeros((members, hidden, 2), np.float32), "bias": np.zeros((members, 2), np.float32)},
    }


@pytest.fixture
def run():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.normal(size=(20, 1)).astype(np.float32)
    return x, y


def _identity(x, y, settings=SETTINGS, params=None, devices=LAYOUT):
    return run_identity(x, y, settings, params=_params() if params is None else params, devices=devices)


def _checkpoint(identity, params=None):
    params = _params() if params is None else params
    return Checkpoint(params, {}, {}, epoch=2, history=np.zeros((2, 2), np.float32), identity=identity)


def _refusal(checkpoint, identity):
    with pytest.raises(ValueError, match="^the checkpoint belongs to another run: ") as caught:
        check_resume(checkpoint, identity)
    return str(caught.value)


def test_the_same_run_resumes(run):
    x, y = run
    check_resume(_checkpoint(_identity(x, y)), _identity(x.copy(), y.copy()))


def test_other_inputs_or_targets_are_named(run):
    x, y = run
    saved = _checkpoint(_identity(x, y))
    other = x.copy()
    other[3, 1] += 1e-3
    message = _refusal(saved, _identity(other, y))
    assert "the data x differ (other values of the same shape 20x3)" in message and "data y" not in message
    message = _refusal(saved, _identity(x, y[:-1]))
    assert "the data y differ (shape 20x1 in the checkpoint, 19x1 now)" in message and "data x" not in message
    assert "data x" in _refusal(saved, _identity(x.astype(np.float64), y))  # the dtype is part of the data


def test_other_settings_are_named_with_both_values(run):
    x, y = run
    saved = _checkpoint(_identity(x, y))
    message = _refusal(saved, _identity(x, y, {**SETTINGS, "seed": 7, "optimizer": (0.1, 0.0, 1.0)}))
    assert (
        "settings differ: optimizer ((0.01, 0.0, 1.0) in the checkpoint, (0.1, 0.0, 1.0) now), seed (0 in the checkpoint, 7 now)"
        in message
    )
    assert "the data x" not in message and "shapes differ" not in message
    assert "adversarial (absent in the checkpoint, 'fgsm' now)" in _refusal(
        saved, _identity(x, y, {**SETTINGS, "adversarial": "fgsm"})
    )


def test_other_hidden_sizes_are_refused_by_parameter_shapes(run):
    x, y = run
    message = _refusal(_checkpoint(_identity(x, y)), _identity(x, y, params=_params(hidden=9)))
    assert "model parameter shapes differ (another model or hidden sizes)" in message
    assert "['Dense_0']['kernel'] [2, 3, 8] in the checkpoint, [2, 3, 9] now" in message
    assert "settings differ" not in message  # a custom model's settings look alike: the shapes tell them apart
    # The checkpoint's own parameters are compared too, whatever identity it carries.
    forged = _checkpoint(_identity(x, y), params=_params(hidden=5))
    assert "[2, 3, 5] in the checkpoint's parameters, [2, 3, 8] now" in _refusal(forged, _identity(x, y))


def test_a_device_layout_may_differ_only_in_the_number_of_devices(run):
    """The layout is the mesh a run trains on, not the device count: two members train on a (2, 1) mesh
    on two CPU devices and on four alike, and the same mesh runs the same program (bitwise the same)."""
    x, y = run
    saved = _checkpoint(_identity(x, y, devices={"members": 2, "data": 1, "platform": "cpu"}))
    check_resume(saved, _identity(x, y, devices={"platform": "cpu", "data": 1, "members": 2}))
    message = _refusal(saved, _identity(x, y, devices={"members": 1, "data": 1, "platform": "cpu"}))
    assert (
        "the device layout differs (data=1, members=2, platform=cpu in the checkpoint, data=1, members=1, platform=cpu now)"
        in message
    )
    assert "the number of devices may differ only when the mesh is the same" in message
    assert "layout differs" in _refusal(saved, _identity(x, y, devices={"members": 2, "data": 1, "platform": "gpu"}))


def test_every_differing_part_is_listed(run):
    x, y = run
    message = _refusal(
        _checkpoint(_identity(x, y)),
        _identity(x + 1, y + 1, {**SETTINGS, "seed": 1}, params=_params(hidden=4), devices={"members": 2}),
    )
    for part in ("data x", "data y", "settings differ: seed", "parameter shapes", "device layout"):
        assert part in message


def test_a_checkpoint_without_a_comparable_identity_is_refused(run):
    x, y = run
    for stored, why in (
        (None, "carries no run identity"),
        ("ab" * 32, "carries the single-digest run identity of an older deepens"),
    ):
        with pytest.raises(ValueError, match=f"cannot be shown to belong to this run: it {why}"):
            check_resume(_checkpoint(stored), _identity(x, y))


def test_the_identity_round_trips_through_json_and_the_checkpoint_file(tmp_path, run):
    x, y = run
    identity = _identity(x, y, params=jax.eval_shape(lambda: _params()))  # shapes alone suffice
    assert RunIdentity.from_json(identity.to_json()) == identity
    assert identity.digest == RunIdentity.from_json(identity.to_json()).digest == _identity(x, y).digest
    assert identity.digest != _identity(x, y, {**SETTINGS, "seed": 1}).digest
    assert identity.x == data_sha256(x)
    with pytest.raises(ValueError, match="not a run identity"):
        RunIdentity.from_json({"x": "00"})

    taken = []
    ensemble = deepens.fit(
        x,
        y,
        hidden=(4,),
        members=1,
        epochs=2,
        checkpoint_every=1,
        on_checkpoint=taken.append,
        learning_rate=0.01,
        progress=False,
    )
    saved = dataclasses.replace(taken[0], identity=dataclasses.replace(taken[0].identity, devices=(("members", 1),)))
    path = serialization.save_checkpoint(tmp_path / "ckpt", saved, {})
    assert io.checkpoint_run(path) == saved.identity.digest  # the manifest carries the run
    optimizer = deepens.train.make_optimizer(0.01, 0.0, 1.0)
    loaded, _ = serialization.load_checkpoint(path, ensemble.model, optimizer, (3,))
    assert loaded.identity == saved.identity

    config = io.read_bundle(path)[1]
    config["identity"] = {"x": 1}
    arrays = io.read_bundle(path)[2]
    io.write_bundle(path, "checkpoint", config, arrays, manifest_extra={"run": "forged"})
    with pytest.raises(FormatError, match="malformed run identity"):
        serialization.load_checkpoint(path, ensemble.model, optimizer, (3,))


# ---- end to end -----------------------------------------------------------------------------------------

COMMON = dict(hidden=(8,), epochs=4, batch_size=16, learning_rate=0.01, seed=3, checkpoint_every=2, progress=False)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    return x, (x[:, 0] - x[:, 1] * x[:, 2]).astype(np.float32)


def _pair(hidden):
    """A custom ``(init, apply)`` model: its settings look alike whatever its hidden size."""

    def init(key, x):
        k1, k2 = jax.random.split(key)
        return {
            "w1": jax.random.normal(k1, (x.shape[-1], hidden)) * 0.3,
            "w2": jax.random.normal(k2, (hidden, 2)) * 0.3,
        }

    def apply(params, x):
        return jnp.tanh(x @ params["w1"]) @ params["w2"]

    return init, apply


def test_a_resume_on_a_machine_with_more_devices_but_the_same_mesh_is_the_uninterrupted_run(data):
    x, y = data
    taken = []
    uninterrupted = deepens.fit(x, y, members=1, devices=1, on_checkpoint=taken.append, **COMMON)
    resumed = deepens.fit(x, y, members=1, devices=2, resume=taken[0], **COMMON)  # one member: a 1x1 mesh still
    for a, b in zip(jax.tree.leaves(uninterrupted.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_an_estimator_checkpoint_of_other_hidden_sizes_names_the_shapes(tmp_path, data):
    x, y = data
    settings = dict(members=2, epochs=4, batch_size=16, random_state=3)
    deepens.DeepEnsembleRegressor(hidden_layer_sizes=(8,), **settings).fit(
        x, y, checkpoint_dir=tmp_path, checkpoint_every=2
    )
    with pytest.raises(ValueError, match="belongs to another run: model parameter shapes differ"):
        deepens.DeepEnsembleRegressor(hidden_layer_sizes=(5,), **settings).fit(
            x, y, checkpoint_dir=tmp_path, checkpoint_every=2, resume=True
        )


def test_fit_resume_with_other_data_says_which(data):
    x, y = data
    taken = []
    deepens.fit(x, y, members=2, devices=1, on_checkpoint=taken.append, **COMMON)
    with pytest.raises(
        ValueError, match=r"belongs to another run: the data x differ \(other values of the same shape 32x3\)"
    ):
        deepens.fit(x + 1.0, y, members=2, devices=1, resume=taken[0], **COMMON)
    with pytest.raises(ValueError, match=r"belongs to another run: the data y differ"):
        deepens.fit(x, y + 1.0, members=2, devices=1, resume=taken[0], **COMMON)


def test_fit_resume_with_a_custom_model_of_other_hidden_sizes_is_a_value_error(data):
    x, y = data
    taken = []
    deepens.fit(x, y, model=_pair(8), members=2, devices=1, on_checkpoint=taken.append, **COMMON)
    with pytest.raises(ValueError, match="belongs to another run: model parameter shapes differ"):
        deepens.fit(x, y, model=_pair(5), members=2, devices=1, resume=taken[0], **COMMON)


def test_fit_resume_on_another_mesh_is_refused(data):
    x, y = data
    taken = []
    deepens.fit(x, y, members=2, devices=1, on_checkpoint=taken.append, **COMMON)
    with pytest.raises(ValueError, match="belongs to another run: the device layout differs"):
        deepens.fit(x, y, members=2, devices=2, resume=taken[0], **COMMON)  # members split over two devices


def test_an_estimator_resume_on_another_mesh_is_refused(tmp_path, data):
    x, y = data
    settings = dict(members=2, hidden_layer_sizes=(8,), epochs=4, batch_size=16, random_state=3)
    deepens.DeepEnsembleRegressor(devices=1, **settings).fit(x, y, checkpoint_dir=tmp_path, checkpoint_every=2)
    with pytest.raises(ValueError, match="belongs to another run.*the device layout differs"):
        deepens.DeepEnsembleRegressor(devices=2, **settings).fit(
            x, y, checkpoint_dir=tmp_path, checkpoint_every=2, resume=True
        )
