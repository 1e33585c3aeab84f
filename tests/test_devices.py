"""Members sharded over devices and hosts give the same ensemble as one device."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

import deepens
from deepens import devices

HERE = Path(__file__).parent
REPO = HERE.parent


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=37)).astype(np.float32)
    return x, y


SETTINGS = dict(hidden=(8,), epochs=3, batch_size=8, learning_rate=0.01, seed=7, adversarial="fgsm", progress=False)


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def _assert_same(a, b, **tol):
    for u, v in zip(_leaves(a.params), _leaves(b.params), strict=True):
        np.testing.assert_allclose(u, v, **tol)
    np.testing.assert_allclose(a.history, b.history, rtol=1e-5)


def _fresh_python(script: str, **env: str) -> str:
    """Run ``script`` in a new Python with no device count configured (plus ``env``); its stdout."""
    clean = {
        k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "DEEPENS_CPU_DEVICES")
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_use_cpu_cores_gives_one_cpu_device_per_core_and_import_changes_nothing():
    script = "import deepens, jax; {}print(jax.device_count())"
    assert _fresh_python(script.format("")) == "1"  # importing deepens leaves JAX's default alone
    cores = len(os.sched_getaffinity(0))
    assert _fresh_python(script.format("deepens.devices.use_cpu_cores(); ")) == str(cores)
    assert _fresh_python(script.format("deepens.devices.use_cpu_cores(); "), DEEPENS_CPU_DEVICES="3") == "3"
    # Once JAX has started it cannot change the count, and says so by returning False.
    late = "import deepens, jax; jax.devices(); print(deepens.devices.use_cpu_cores(3), jax.device_count())"
    assert _fresh_python(late) == "False 1"


@pytest.fixture
def two_devices():
    """The sharding tests need the two fake CPU devices tests/conftest.py asks for: fail loudly without them."""
    assert jax.device_count() >= 2, (
        f"only {jax.device_count()} JAX device(s): tests/conftest.py must configure two CPU devices before "
        "deepens or JAX is imported"
    )


def test_sharded_members_equal_one_device(data, two_devices):
    x, y = data
    one = deepens.fit(x, y, members=4, devices=1, **SETTINGS)
    two = deepens.fit(x, y, members=4, devices=2, **SETTINGS)
    assert len(jax.tree.leaves(two.params)[0].sharding.device_set) == 2
    _assert_same(one, two, rtol=1e-5, atol=1e-6)


def test_members_padded_to_fill_the_devices_are_dropped(data, two_devices):
    x, y = data
    one = deepens.fit(x, y, members=3, devices=1, **SETTINGS)
    two = deepens.fit(x, y, members=3, devices=2, **SETTINGS)
    assert two.members == 3 and two.history.shape == (3, 3) and two.member_ids == (0, 1, 2)
    _assert_same(one, two, rtol=1e-5, atol=1e-6)


def test_data_axis_splits_each_batch(data, two_devices):
    x, y = data
    mesh = Mesh(np.array(jax.devices()[:2]).reshape(1, 2), (devices.MEMBERS, devices.DATA))
    one = deepens.fit(x, y, members=2, devices=1, **{**SETTINGS, "batch_size": 10})
    split = deepens.fit(x, y, members=2, devices=mesh, **{**SETTINGS, "batch_size": 10})
    _assert_same(one, split, rtol=1e-5, atol=1e-6)
    full = deepens.fit(x[:36], y[:36], members=1, devices=1, **{**SETTINGS, "batch_size": None})
    full_split = deepens.fit(x[:36], y[:36], members=1, devices=mesh, **{**SETTINGS, "batch_size": None})
    _assert_same(full, full_split, rtol=1e-5, atol=1e-6)


def test_plan_mesh_on_cpu():
    cpus = jax.devices()
    mesh = devices.plan_mesh(5, 100, None)
    assert mesh.shape == {"members": len(cpus), "data": 1}
    assert devices.padded_size(5, mesh) == -(-5 // len(cpus)) * len(cpus)
    assert devices.plan_mesh(1, 100, None).shape == {"members": 1, "data": 1}  # CPU: no data axis
    with pytest.raises(ValueError, match="between 1 and"):
        devices.plan_mesh(2, 100, len(cpus) + 1)
    with pytest.raises(ValueError, match="axes"):
        devices.plan_mesh(2, 100, Mesh(np.array(cpus), ("x",)))


def test_member_plan_pads_with_fresh_streams_trims_and_places(two_devices):
    plan = devices.MemberPlan.make([4, 0, 2], 8, devices=2)
    assert plan.trained_ids == (4, 0, 2, 5) and plan.padding == 1 and plan.members == 3
    assert plan.note() == " (3 members + 1 to fill 2 devices)"
    assert plan.training_mesh is plan.mesh
    history = np.arange(12.0).reshape(3, 4)  # (epochs, trained members)
    stacked = {"w": np.arange(8.0).reshape(4, 2)}
    np.testing.assert_array_equal(plan.trim(history, axis=1), history[:, :3])
    trimmed = plan.trim(stacked)
    np.testing.assert_array_equal(trimmed["w"], stacked["w"][:3])
    placed = plan.place_for_prediction(trimmed)
    assert len(placed["w"].sharding.device_set) == 1  # 3 members do not split evenly over 2 devices
    even = devices.MemberPlan.make([0, 1], 8, devices=2)
    assert even.padding == 0 and even.note() == "" and even.trim(stacked) is stacked
    assert len(even.place_for_prediction({"w": stacked["w"][:2]})["w"].sharding.device_set) == 2
    assert devices.MemberPlan.make([0, 1, 2], 8, devices=1).training_mesh is None  # one device: no placement
    # Repeated ids (the splits program) pad after the largest.
    assert devices.MemberPlan.make([0, 1, 0, 1, 0, 1], 8, devices=2).trained_ids == (0, 1, 0, 1, 0, 1)
    assert devices.MemberPlan.make([0, 1, 0], 8, devices=2).trained_ids == (0, 1, 0, 2)


def test_initialize_distributed_needs_all_three_settings(monkeypatch):
    for name in (
        "DEEPENS_COORDINATOR",
        "DEEPENS_NUM_PROCESSES",
        "DEEPENS_PROCESS_ID",
        "JAX_COORDINATOR_ADDRESS",
        "JAX_NUM_PROCESSES",
        "JAX_PROCESS_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    assert devices.initialize_distributed() is False
    with pytest.raises(ValueError, match="process id"):
        devices.initialize_distributed("127.0.0.1:1", 2, 5)
    monkeypatch.setenv("DEEPENS_COORDINATOR", "127.0.0.1:1")
    with pytest.raises(ValueError, match="needs the coordinator address, the number of processes"):
        devices.initialize_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_ensemble_like_one_process(data, tmp_path):
    x, y = data
    single = deepens.fit(x, y, members=4, devices=1, **SETTINGS)
    coordinator = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "DEEPENS_CPU_DEVICES": "1", "PYTHONPATH": str(REPO)}
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "distributed_worker.py"), coordinator, "2", str(i), str(outs[i])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    expected = _leaves(single.params)
    for out in outs:
        result = np.load(out)
        assert int(result["devices"]) == 2
        for i, leaf in enumerate(expected):
            np.testing.assert_allclose(result[f"leaf{i}"], leaf, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result["history"], single.history, rtol=1e-5)
        np.testing.assert_allclose(result["mean"], np.asarray(single.predict(x).mean), rtol=1e-5, atol=1e-5)


def test_four_fake_devices_with_a_data_axis_match_one_device(tmp_path):
    """A fresh process with four CPU devices: members over 2 of them x batches over 2."""
    script = """
import sys, numpy as np
import deepens
from deepens import devices
devices.use_cpu_cores()  # DEEPENS_CPU_DEVICES=4, before JAX starts
import jax
from jax.sharding import Mesh
assert jax.device_count() == 4, jax.devices()
rng = np.random.default_rng(3)
x = rng.normal(size=(40, 3)).astype(np.float32); y = x.sum(1)
kw = dict(hidden=(8,), members=4, epochs=3, batch_size=10, learning_rate=0.01, seed=7, progress=False)
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), (devices.MEMBERS, devices.DATA))
a, b, c = deepens.fit(x, y, devices=1, **kw), deepens.fit(x, y, devices=mesh, **kw), deepens.fit(x, y, **kw)
for other in (b, c):
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(other.params)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)
print("ok")
"""
    env = {**os.environ, "DEEPENS_CPU_DEVICES": "4", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), (
        result.stdout[-2000:] + result.stderr[-3000:]
    )


def test_two_processes_train_from_the_command_line(tmp_path):
    """``deepens train`` on two hosts (two processes on 127.0.0.1): process 0 saves the model, which
    predicts what a single-process run's model does."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(64, 3)), columns=["a", "b", "c"])
    frame["y"] = frame["a"] - 2 * frame["b"] + 0.1 * rng.normal(size=64)
    data = tmp_path / "data.csv"
    frame.to_csv(data, index=False)
    common = [
        sys.executable,
        "-m",
        "deepens.cli",
        "train",
        str(data),
        "--target",
        "y",
        "--members",
        "2",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--quiet",
    ]
    env = {**os.environ, "DEEPENS_CPU_DEVICES": "1", "PYTHONPATH": str(REPO)}
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            [
                *common,
                "-o",
                str(tmp_path / "model"),
                "--coordinator",
                coordinator,
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        log = p.communicate(timeout=300)[0]
        assert p.returncode == 0, log[-3000:]
    single = subprocess.run([*common, "-o", str(tmp_path / "single")], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "model", "single"]
    two_hosts, one_host = deepens.load(tmp_path / "model"), deepens.load(tmp_path / "single")
    x = frame[["a", "b", "c"]]
    np.testing.assert_allclose(two_hosts.predict(x), one_host.predict(x), rtol=1e-5, atol=1e-5)
