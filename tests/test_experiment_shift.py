"""The dataset-shift experiment: temperature fitting recovers a known temperature; a tiny run through
``deepens reproduce shift`` writes every record, table and figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import special

from deepens import cli
from deepens.calibration import fit_temperature
from deepens.data import idx
from deepens.data import shift as shift_data
from deepens.experiments import shift


def test_fit_temperature_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = 3.0 * rng.normal(size=(20000, 5))
    true_t = 2.5
    p = special.softmax(logits / true_t, axis=1)
    labels = (rng.random((len(p), 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)
    # Scaled logits need a proportionally scaled temperature; log-softmax gives the same T as logits.
    fitted = fit_temperature(logits, labels)
    assert fit_temperature(2 * logits, labels) == pytest.approx(2 * fitted, rel=1e-3)
    log_probs = logits - special.logsumexp(logits, axis=1, keepdims=True)
    assert fit_temperature(log_probs, labels) == pytest.approx(fit_temperature(logits, labels), rel=1e-4)
    with pytest.raises(ValueError, match="log_probs"):
        fit_temperature(logits[:, 0], labels)


def test_default_shifts_cover_the_issue() -> None:
    shifts = shift.default_shifts()
    assert [i for k, i in shifts if k == "rotate"] == list(range(0, 181, 15))
    assert [i for k, i in shifts if k == "translate"] == list(range(15))
    for name in shift_data.CORRUPTIONS:
        assert [i for k, i in shifts if k == name] == [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    root = tmp_path_factory.mktemp("shift_data")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 240), ("t10k", 60)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, size=(n, 28, 28))
        for i, label in enumerate(labels):
            r, c = divmod(int(label), 4)
            x[i, 2 + 6 * r : 8 + 6 * r, 2 + 6 * c : 8 + 6 * c] = 250
        (root / "mnist").mkdir(exist_ok=True)
        idx.write(root / "mnist" / f"{prefix}-images-idx3-ubyte.gz", x.astype(np.uint8))
        idx.write(root / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def test_reproduce_shift_tiny(fake_mnist, tmp_path, capsys) -> None:
    out = tmp_path / "shift"
    code = cli.main(
        [
            "reproduce",
            "shift",
            "--out",
            str(out),
            "--data-dir",
            str(fake_mnist),
            "--members",
            "2",
            "--epochs",
            "1",
            "--train-limit",
            "240",
        ]
    )
    assert code == 0
    assert "shift.md" in capsys.readouterr().out
    records = json.loads((out / "shift.json").read_text())
    n_shifts = len(shift.default_shifts())
    assert len(records) == len(shift.METHODS) * n_shifts
    assert {r["method"] for r in records} == set(shift.METHODS)
    for r in records:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["ece"] <= 1 and r["n"] == 60
        if r["method"] in ("single", "temperature"):
            assert r["knowledge"] == 0.0
    run = json.loads((out / "shift_run.json").read_text())
    assert run["settings"]["members"] == 2 and run["data"]["validation_rows"] == 20
    assert run["temperature"] > 0
    by = {(r["method"], r["kind"], r["intensity"]): r for r in records}
    # single and temperature share the network, so they agree on accuracy everywhere.
    for k, i in shift.default_shifts():
        assert by[("single", k, i)]["accuracy"] == by[("temperature", k, i)]["accuracy"]
    assert len(run["rotated_accuracy_vs_confidence"]["ensemble"]) == 20
    for name in (
        "shift_confidence_vs_accuracy.png",
        "shift_rotation.png",
        "shift_translation.png",
        "shift_corruptions.png",
        "shift.md",
    ):
        assert (out / name).stat().st_size > 0
    assert "| 180 |" in (out / "shift.md").read_text()
    # The same seed gives the same numbers: a second run writes an identical shift.json.
    again = tmp_path / "again"
    assert (
        cli.main(
            [
                "reproduce",
                "shift",
                "--out",
                str(again),
                "--data-dir",
                str(fake_mnist),
                "--members",
                "2",
                "--epochs",
                "1",
                "--train-limit",
                "240",
            ]
        )
        == 0
    )
    assert (again / "shift.json").read_text() == (out / "shift.json").read_text()


def test_shift_settings_refuse_unknown_methods() -> None:
    with pytest.raises(ValueError, match="shift methods"):
        shift.Settings(methods=("ensemble", "dropout"))
    with pytest.raises(ValueError, match="add 'ensemble'"):
        shift.Settings(methods=("temperature",))
