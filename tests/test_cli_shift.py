"""``deepens evaluate --shift``: a saved image classifier scored under rotation, translation and corruptions."""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepens
from deepens import cli
from deepens.data import shift as shift_data
from deepens.metrics import shift_curve


@pytest.fixture(scope="module")
def images():
    """Four classes of 8x8 images: a bright 3x3 block in one quadrant, on faint noise."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 160)
    x = rng.uniform(0, 0.2, size=(160, 8, 8)).astype(np.float32)
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        x[i, 1 + 4 * r : 4 + 4 * r, 1 + 4 * c : 4 + 4 * c] = 0.9
    return x, labels


@pytest.fixture(scope="module")
def saved(images, tmp_path_factory):
    x, labels = images
    root = tmp_path_factory.mktemp("shift_cli")
    ensemble = deepens.fit(
        x.reshape(160, -1),
        labels,
        head="categorical",
        hidden=(16,),
        members=2,
        epochs=30,
        batch_size=32,
        learning_rate=0.02,
        progress=False,
    )
    deepens.save(ensemble, root / "model")
    np.savez(root / "test.npz", images=x[:40], labels=labels[:40])
    return root, ensemble


def test_evaluate_shift_rotate_writes_the_curve_of_shift_curve(saved, images, capsys) -> None:
    root, ensemble = saved
    x, labels = images
    out = root / "rotate"
    assert (
        cli.main(["evaluate", str(root / "model"), str(root / "test.npz"), "--shift", "rotate", "--out", str(out)]) == 0
    )
    assert "deepens evaluate --shift" in capsys.readouterr().out
    records = json.loads((out / "shift.json").read_text())
    assert [r["intensity"] for r in records] == list(range(0, 181, 15))
    direct = shift_curve(
        lambda z: ensemble.predict(z.reshape(len(z), -1)),
        x[:40],
        labels[:40],
        shifts=[("rotate", 0.0), ("rotate", 90.0)],
    )
    assert records[0]["accuracy"] == pytest.approx(direct[0]["accuracy"])
    assert records[6]["nll"] == pytest.approx(direct[1]["nll"], rel=1e-5)
    assert records[0]["accuracy"] > 0.9  # the clean images are easy
    assert (out / "shift_rotate.png").stat().st_size > 0


def test_evaluate_shift_corrupt_covers_every_corruption(saved, capsys) -> None:
    root, _ = saved
    out = root / "corrupt"
    assert (
        cli.main(["evaluate", str(root / "model"), str(root / "test.npz"), "--shift", "corrupt", "--out", str(out)])
        == 0
    )
    records = json.loads((out / "shift.json").read_text())
    assert len(records) == 1 + 5 * len(shift_data.CORRUPTIONS)
    assert {r["kind"] for r in records} == {"rotate", *shift_data.CORRUPTIONS}


def test_evaluate_shift_refuses_pixels_outside_0_1(saved, images, tmp_path, capsys) -> None:
    root, _ = saved
    x, labels = images
    np.savez(tmp_path / "bytes.npz", images=(255 * x[:10]).astype(np.uint8), labels=labels[:10])
    assert cli.main(["evaluate", str(root / "model"), str(tmp_path / "bytes.npz"), "--shift", "rotate"]) == 2
    assert "divide 8-bit images by 255" in capsys.readouterr().err


def test_read_images_from_a_table_gives_the_pixels_and_labels(tmp_path) -> None:
    from deepens.cli.shift import read_images

    path = tmp_path / "images.csv"
    path.write_text("p0,p1,y\n0.25,0.5,3\n1.0,0.0,7\n")
    images, labels = read_images(path, "y")
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images, [[0.25, 0.5], [1.0, 0.0]])
    np.testing.assert_array_equal(labels, [3, 7])
