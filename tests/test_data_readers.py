"""Readers for the UCI split format and for IDX image files, on files written to tmp_path, plus one look
at the real shared data when it is there."""

import gzip

import numpy as np
import pytest

from deepens.data import idx, mnist, paths, uci

SHARED = paths.default_data_dir()
needs_shared_data = pytest.mark.skipif(
    SHARED is None,
    reason="the shared benchmark data (../shared/data beside the repository, or $DEEPENS_DATA) is absent",
)


# --- UCI split format ---------------------------------------------------------------------------------


@pytest.fixture
def toy_split_folder(tmp_path, rng):
    x = rng.normal(size=(12, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 10.0
    splits = [(np.arange(0, 9), np.arange(9, 12)), (np.arange(3, 12), np.arange(0, 3))]
    return uci.write(tmp_path / "toy", x, y, splits), x, y


def test_uci_round_trip_and_splits(toy_split_folder):
    folder, x, y = toy_split_folder
    data = uci.load(folder)
    assert data.name == "toy" and data.n_splits == 2
    np.testing.assert_allclose(data.x, x, rtol=1e-9)
    np.testing.assert_allclose(data.y, y, rtol=1e-9)
    split = data.split(1)
    np.testing.assert_allclose(split.x_test, x[:3], rtol=1e-9)
    np.testing.assert_allclose(split.y_train, y[3:], rtol=1e-9)
    assert uci.load(folder, splits=1).n_splits == 1
    with pytest.raises(ValueError, match="splits 0..1"):
        data.split(2)


def test_uci_reads_tabs_and_trailing_whitespace(tmp_path):
    folder = tmp_path / "tabs"
    folder.mkdir()
    (folder / "data.txt").write_text("1.0 \t2.0 \t3.0 \n4.0 \t5.0 \t6.0 \n7.0\t8.0\t9.0\n")
    (folder / "index_features.txt").write_text("0\n2\n")
    (folder / "index_target.txt").write_text("1\n")
    (folder / "n_splits.txt").write_text("1\n")
    (folder / "index_train_0.txt").write_text("0\n2\n")
    (folder / "index_test_0.txt").write_text("1\n")
    data = uci.load(folder)
    np.testing.assert_array_equal(data.x, [[1, 3], [4, 6], [7, 9]])
    np.testing.assert_array_equal(data.split(0).y_test, [5.0])


def test_uci_list_datasets(tmp_path, toy_split_folder):
    (tmp_path / "not_a_dataset").mkdir()
    assert uci.list_datasets(tmp_path) == ["toy"]


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (lambda f: (f / "index_target.txt").unlink(), FileNotFoundError, "missing index_target.txt"),
        (lambda f: (f / "index_test_1.txt").unlink(), ValueError, "index_test_1.txt is missing"),
        (lambda f: (f / "index_test_0.txt").write_text("0\n1\n"), ValueError, "share rows"),
        (lambda f: (f / "index_train_0.txt").write_text("0\n99\n"), ValueError, "outside data.txt's 12 rows"),
        (lambda f: (f / "index_features.txt").write_text("0\n3\n"), ValueError, "also listed as a feature"),
        (lambda f: (f / "index_features.txt").write_text("0\n7\n"), ValueError, "outside data.txt's 4 columns"),
        (lambda f: (f / "index_train_0.txt").write_text("0.5\n"), ValueError, "must hold integers"),
        # Corrupt files: a ValueError naming the file, never an IndexError or numpy's bare message.
        (lambda f: (f / "n_splits.txt").write_text(""), ValueError, r"n_splits.txt must hold exactly one integer"),
        (lambda f: (f / "n_splits.txt").write_text("2\n3\n"), ValueError, r"n_splits.txt must hold exactly one"),
        (lambda f: (f / "index_train_0.txt").write_text("zero\n"), ValueError, r"index_train_0.txt must hold integers"),
        (lambda f: (f / "index_test_0.txt").write_bytes(b"\xff\xfe\x00"), ValueError, r"index_test_0.txt must hold"),
        (lambda f: (f / "data.txt").write_text(""), ValueError, r"data.txt is empty"),
        (lambda f: (f / "data.txt").write_text("1 2 x\n"), ValueError, r"data.txt is not a table of numbers"),
        (lambda f: (f / "data.txt").write_text("1 2 3 4\n1 2\n"), ValueError, r"data.txt is not a table of numbers"),
    ],
)
def test_uci_malformed_folders_are_named(toy_split_folder, damage, error, message):
    folder = toy_split_folder[0]
    damage(folder)
    with pytest.raises(error, match=message):
        uci.load(folder)


def test_standardizer_leaves_constant_columns_finite():
    s = uci.Standardizer.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_allclose(s.transform(np.array([[2.0, 5.0]])), [[0.0, 0.0]])


# --- IDX ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path, rng, dtype, name):
    array = (rng.normal(size=(4, 3, 2)) * 50).astype(dtype)
    path = idx.write(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = idx.read(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (4, 3, 2)
    np.testing.assert_array_equal(back, array)


def test_idx_detects_gzip_from_content_and_matches_the_mnist_header_layout(tmp_path):
    labels = np.array([7, 2, 1], np.uint8)
    raw = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + labels.tobytes()  # the MNIST label file layout
    (tmp_path / "labels").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(idx.read(tmp_path / "labels"), labels)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x01\x00\x08\x01" + (1).to_bytes(4, "big") + b"\x00", "first two bytes"),
        (b"\x00\x00\x07\x01" + (1).to_bytes(4, "big") + b"\x00", "type code 0x07"),
        (b"\x00\x00\x08\x02" + (2).to_bytes(4, "big"), "truncated"),
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x00\x01", "5 bytes"),
    ],
)
def test_idx_rejects_malformed_files(raw, message):
    with pytest.raises(ValueError, match=message):
        idx.parse(raw)


def _write_image_set(folder, prefix, n, rng, *, approx=False):
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    suffix = "-approx" if approx else ""
    idx.write(folder / f"{prefix}-images-idx3-ubyte{suffix}.gz", images)
    idx.write(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return images, labels


def test_mnist_loader_prefers_exact_training_images(tmp_path, rng):
    approx_images, _ = _write_image_set(tmp_path / "mnist", "train", 20, rng, approx=True)
    _write_image_set(tmp_path / "mnist", "t10k", 10, rng)
    train, test = mnist.load_mnist(tmp_path)
    assert train.approximate and len(train) == 20 and len(test) == 10
    np.testing.assert_array_equal(train.images, approx_images)
    features = train.features()
    assert features.shape == (20, 784) and features.dtype == np.float32 and 0 <= features.min() <= features.max() <= 1
    exact_images, _ = _write_image_set(tmp_path / "mnist", "train", 20, rng)
    train, _ = mnist.load_mnist(tmp_path)
    assert not train.approximate
    np.testing.assert_array_equal(train.images, exact_images)
    assert len(train.take(5)) == 5


def test_mnist_loader_errors_name_the_problem(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="no mnist/ folder"):
        mnist.load_mnist(tmp_path)
    _write_image_set(tmp_path / "notmnist", "t10k", 6, rng)
    idx.write(tmp_path / "notmnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="5,\\) labels for 6 images"):
        mnist.load_test_set("notmnist", tmp_path)


# --- the real shared data -----------------------------------------------------------------------------


@needs_shared_data
def test_real_uci_and_mnist_files_read_as_documented():
    yacht = uci.load(SHARED / "uci" / "yacht")
    assert yacht.x.shape == (308, 6) and yacht.n_splits == 20
    assert len(yacht.split(0).x_train) == 277 and len(yacht.split(0).x_test) == 31
    assert "bostonHousing" in uci.list_datasets(SHARED / "uci")
    test = mnist.load_test_set("mnist", SHARED)
    assert test.images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(test.labels)[:3], [980, 1135, 1032])  # the data README's counts


@pytest.mark.parametrize("cut", [10, 100, -4])
def test_a_damaged_gzip_idx_file_is_a_value_error_naming_it(tmp_path, rng, cut):
    path = idx.write(tmp_path / "a.idx.gz", rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:cut])  # truncated mid-stream (EOFError) or mid-header (BadGzipFile)
    with pytest.raises(ValueError, match=r"a.idx.gz is a damaged gzip file"):
        idx.read(path)
