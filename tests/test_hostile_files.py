"""Hostile model folders, leftovers of killed saves, concurrent saves and the modes of replaced files.

Each test reproduces what a fuzzing session found (issue 14, items 11, 13, 14 and 15): loading follows no
link and opens no FIFO, sizes are checked before a byte is read, killed saves leave nothing that stays,
three threads saving to one path end with one intact model, and a ``chmod 600`` file stays 600.
"""

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import deepens
from deepens import files, io, tables
from deepens.io import FormatError

REPO = Path(__file__).resolve().parent.parent
FILES = (io.MANIFEST, io.CONFIG, io.ARRAYS)


@pytest.fixture(scope="module")
def saved_ensemble(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 2)).astype(np.float32)
    ensemble = deepens.fit(x, x.sum(1), hidden=(4,), members=1, epochs=1, progress=False)
    return deepens.save(ensemble, tmp_path_factory.mktemp("saved") / "model"), x


@pytest.fixture
def model(tmp_path, saved_ensemble):
    return Path(shutil.copytree(saved_ensemble[0], tmp_path / "model"))


def _bundle(path, value=0.0, size=4):
    return io.write_bundle(path, "test", {"value": value}, {"a": np.full(size, value, np.float32)})


def _peak_bytes(call):
    """The peak of Python's allocations while ``call`` runs (a file read whole shows as its size)."""
    tracemalloc.start()
    try:
        call()
    except Exception as err:
        error = err
    else:
        error = None
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, error


# ---- item 11: hostile model folders -----------------------------------------------------------------


@pytest.mark.parametrize("name", [io.ARRAYS, io.MANIFEST])
def test_a_file_linked_to_dev_zero_is_refused_without_reading(model, name):
    (model / name).unlink()
    (model / name).symlink_to("/dev/zero")
    peak, error = _peak_bytes(lambda: deepens.load(model))
    assert isinstance(error, FormatError) and "symbolic link" in str(error), error
    assert peak < 8 << 20


@pytest.mark.parametrize("name", FILES)
def test_a_file_linked_out_of_the_folder_is_refused(tmp_path, model, name):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(model, elsewhere)  # the very same bytes: only the link is wrong
    (model / name).unlink()
    (model / name).symlink_to(elsewhere / name)
    with pytest.raises(FormatError, match="is a symbolic link, not a regular file"):
        deepens.load(model)


def _returns_within(call, seconds=20.0):
    """Run ``call`` in a thread; whether it ended in time, and its exception."""
    outcome = {}

    def run():
        try:
            call()
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), outcome.get("error")


@pytest.mark.parametrize("name", FILES)
def test_a_fifo_is_refused_without_being_opened(model, name):
    (model / name).unlink()
    os.mkfifo(model / name)
    try:
        ended, error = _returns_within(lambda: deepens.load(model))
    finally:  # unblock a reader stuck in open() (what happened before the fix), so the test can end
        with contextlib.suppress(OSError):
            os.close(os.open(model / name, os.O_WRONLY | os.O_NONBLOCK))
    assert ended, f"deepens.load hung on a FIFO in place of {name}"
    assert isinstance(error, FormatError) and "a FIFO, not a regular file" in str(error), error
    # Saving over such a folder does not hang either: it is not a saved model, so it is refused.
    ended, error = _returns_within(lambda: _bundle(model))
    assert ended and isinstance(error, ValueError) and "refusing to overwrite" in str(error), error


def test_a_device_node_is_refused(model):
    (model / io.CONFIG).unlink()
    try:
        os.mknod(model / io.CONFIG, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null
    except PermissionError:
        pytest.skip("creating a device node needs privileges")
    with pytest.raises(FormatError, match="a character device, not a regular file"):
        deepens.load(model)


def test_sizes_are_checked_before_reading(model):
    with open(model / io.ARRAYS, "r+b") as f:
        f.truncate(256 << 20)  # a sparse 256 MiB file: reading it would allocate that much
    peak, error = _peak_bytes(lambda: deepens.load(model))
    assert isinstance(error, FormatError) and "longer than written" in str(error), error
    assert peak < 8 << 20


def test_the_manifest_itself_is_bounded(model):
    with open(model / io.MANIFEST, "r+b") as f:
        f.truncate(256 << 20)
    peak, error = _peak_bytes(lambda: deepens.load(model))
    assert isinstance(error, FormatError) and f"more than the {io.MAX_MANIFEST_BYTES}" in str(error), error
    assert peak < 8 << 20


def test_a_model_path_that_is_a_link_to_a_model_folder_loads(tmp_path, model, saved_ensemble):
    link = tmp_path / "link"
    link.symlink_to(model, target_is_directory=True)
    x = saved_ensemble[1]
    np.testing.assert_array_equal(
        np.asarray(deepens.load(link).predict(x).mean), np.asarray(deepens.load(model).predict(x).mean)
    )


def test_a_manifest_with_a_malformed_file_entry_is_a_format_error(tmp_path):
    path = _bundle(tmp_path / "b")
    manifest = io.json.loads((path / io.MANIFEST).read_bytes())
    manifest.pop("manifest_sha256")
    manifest["files"][io.ARRAYS]["bytes"] = "many"
    manifest["manifest_sha256"] = io._sha256(io._canonical(manifest))  # well-formed, self-consistent
    (path / io.MANIFEST).write_bytes(io._canonical(manifest))
    with pytest.raises(FormatError, match="without a size and sha256"):
        io.read_bundle(path)


# ---- item 15: leftovers of killed saves, concurrent saves ---------------------------------------------

_KILLED_SAVE = """
import os, signal, sys
import numpy as np
from deepens import io
real = io._write_file
def die_after_the_first_file(path, data):
    real(path, data)
    os.kill(os.getpid(), signal.SIGKILL)
io._write_file = die_after_the_first_file
io.write_bundle(sys.argv[1], "test", {"value": 1.0}, {"a": np.ones(4, np.float32)})
"""


def test_a_killed_save_leaves_nothing_the_next_save_keeps(tmp_path):
    path = tmp_path / "model"
    _bundle(path, 0.0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(path)], env=env, timeout=120, check=False)
    assert result.returncode == -signal.SIGKILL
    left = sorted(os.listdir(tmp_path))
    assert any(name.startswith(".model.tmp-") for name in left), left  # what kill -9 leaves
    assert io.read_bundle(path)[1] == {"value": 0.0}  # the model it was replacing is intact
    _bundle(path, 2.0)
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert io.read_bundle(path)[1] == {"value": 2.0}


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    path = tmp_path / "model"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f".model.tmp-{live.pid}-0123456789ab"
        busy.mkdir()
        (busy / io.CONFIG).write_text("{}")
        legacy = tmp_path / ".model.tmp-0123456789ab"  # an earlier version's name, without a pid: age decides
        legacy.mkdir()
        _bundle(path)
        assert busy.exists() and legacy.exists()
        os.utime(legacy, (0, 0))
        users = tmp_path / ".model.tmp-1-0123456789ab"  # named like ours, but holding the user's file
        users.mkdir()
        (users / "mine.txt").write_text("keep")
        os.utime(users, (0, 0))
        _bundle(path)
        assert busy.exists() and not legacy.exists() and (users / "mine.txt").exists()
    finally:
        live.kill()
        live.wait()


def test_concurrent_saves_to_one_path_end_with_one_intact_model(tmp_path):
    path = tmp_path / "model"
    errors = []

    def save_many(worker):
        for i in range(40):
            try:
                _bundle(path, float(worker * 100 + i), size=2048)
            except BaseException as err:
                errors.append(err)

    threads = [threading.Thread(target=save_many, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no .old-*, .tmp-* or lock left
    _, config, arrays = io.read_bundle(path)
    np.testing.assert_array_equal(arrays["a"], np.full(2048, config["value"], np.float32))


def test_concurrent_table_writes_end_with_one_whole_table(tmp_path):
    path = tmp_path / "out.csv"
    errors = []

    def write_many(worker):
        for i in range(30):
            try:
                tables.write_table(pd.DataFrame({"w": [worker] * 500, "i": [i] * 500}), path)
            except BaseException as err:
                errors.append(err)

    threads = [threading.Thread(target=write_many, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and sorted(os.listdir(tmp_path)) == ["out.csv"]
    table = pd.read_csv(path)
    assert len(table) == 500 and table.nunique().tolist() == [1, 1]


def test_a_lock_is_held_by_one_holder_at_a_time(tmp_path):
    path, inside, most = tmp_path / "x", [0], [0]
    guard = threading.Lock()

    def hold():
        for _ in range(50):
            with files.locked(path):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1 and not files.lock_path(path).exists()


# ---- item 14: modes of replaced files; new files get the umask --------------------------------------


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_overwriting_a_table_keeps_its_mode(tmp_path):
    path = tmp_path / "out.csv"
    frame = pd.DataFrame({"a": [1, 2]})
    tables.write_table(frame, path)
    os.chmod(path, 0o600)
    tables.write_table(frame, path)
    assert _mode(path) == 0o600
    os.chmod(path, 0o640)
    io.write_json(path.with_suffix(".json"), {"a": 1})
    os.chmod(path.with_suffix(".json"), 0o604)
    io.write_json(path.with_suffix(".json"), {"a": 2})
    assert _mode(path.with_suffix(".json")) == 0o604


def test_resaving_a_model_keeps_the_modes_of_its_folder_and_files(tmp_path):
    path = _bundle(tmp_path / "model")
    os.chmod(path, 0o700)
    os.chmod(path / io.ARRAYS, 0o600)
    _bundle(path, 1.0)
    assert _mode(path) == 0o700 and _mode(path / io.ARRAYS) == 0o600
    assert io.read_bundle(path)[1] == {"value": 1.0}


def test_new_files_get_the_users_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        path = _bundle(tmp_path / "model")
        tables.write_table(pd.DataFrame({"a": [1]}), tmp_path / "out.csv")
    finally:
        os.umask(previous)
    assert _mode(path) == 0o750 and _mode(path / io.CONFIG) == 0o640
    assert _mode(tmp_path / "out.csv") == 0o640


# ---- item 13: an output path that is an input --------------------------------------------------------


def test_an_output_that_is_an_input_is_refused(tmp_path):
    data = tmp_path / "in.csv"
    data.write_text("a\n1\n")
    (tmp_path / "link.csv").symlink_to(data)
    os.link(data, tmp_path / "hard.csv")
    for output in (data, tmp_path / "." / "in.csv", tmp_path / "link.csv", tmp_path / "hard.csv"):
        with pytest.raises(ValueError, match="is the input"):
            tables.check_output_path(output, [tmp_path / "model", data])
    tables.check_output_path(tmp_path / "out.csv", [data])
    assert data.read_text() == "a\n1\n"


def test_resaving_through_a_link_replaces_the_folder_it_points_to(tmp_path):
    target = _bundle(tmp_path / "target")
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    _bundle(link, 3.0)
    assert link.is_symlink() and io.read_bundle(target)[1] == {"value": 3.0}
    assert sorted(os.listdir(tmp_path)) == ["link", "target"]
