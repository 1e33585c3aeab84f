"""shift_curve: hand values from fixed probabilities, member probabilities, and a tiny fitted ensemble."""

from __future__ import annotations

import math

import numpy as np
import pytest

import deepens
from deepens.metrics import shift_curve
from deepens.metrics.shift import RECORD_FIELDS

SHIFTS = [("rotate", 0), ("rotate", 90), ("translate", 2), ("contrast", 3), ("shot_noise", 1)]


def _images(n: int = 4, side: int = 8) -> np.ndarray:
    return np.random.default_rng(0).random((n, side * side)).astype(np.float32)


def test_hand_case_fixed_probabilities() -> None:
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1]])
    labels = np.array([0, 1, 1, 0])
    seen = []

    def predict(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        return probs

    records = shift_curve(predict, _images(), labels, shifts=SHIFTS, bins=10)
    assert [(r["kind"], r["intensity"]) for r in records] == SHIFTS
    assert seen == [(4, 64)] * len(SHIFTS)
    for r in records:
        assert tuple(r) == RECORD_FIELDS
        assert r["n"] == 4
        assert r["accuracy"] == pytest.approx(0.75)
        assert r["nll"] == pytest.approx(-(math.log(0.8) + math.log(0.7) + math.log(0.4) + math.log(0.9)) / 4)
        # summed Brier: 2 (1 - p_label)^2 per example for two classes
        assert r["brier"] == pytest.approx(2 * (0.2**2 + 0.3**2 + 0.6**2 + 0.1**2) / 4)
        assert r["brier_per_class"] == pytest.approx(r["brier"] / 2)
        assert r["mean_confidence"] == pytest.approx((0.8 + 0.7 + 0.6 + 0.9) / 4)
        h = [-(p * math.log(p) + (1 - p) * math.log(1 - p)) for p in (0.8, 0.7, 0.6, 0.9)]
        assert r["entropy"] == pytest.approx(np.mean(h), rel=1e-5)
        assert r["knowledge"] == pytest.approx(0.0, abs=1e-7)
        # bins 0.8-0.9 / 0.7-0.8 / 0.6-0.7 / 0.9-1.0, one example each: |acc - conf| = .2 .3 .6 .1
        assert r["ece"] == pytest.approx((0.2 + 0.3 + 0.6 + 0.1) / 4)


def test_member_probabilities_give_knowledge() -> None:
    # Two members that disagree completely-ish: mean (0.5, 0.5); knowledge = log 2 - H(0.9).
    members = np.array([[[0.9, 0.1]] * 3, [[0.1, 0.9]] * 3])
    labels = np.array([0, 1, 0])
    (r,) = shift_curve(lambda x: members, _images(3), labels, shifts=[("rotate", 0)])
    h09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert r["entropy"] == pytest.approx(math.log(2), rel=1e-6)
    assert r["knowledge"] == pytest.approx(math.log(2) - h09, rel=1e-5)
    assert r["nll"] == pytest.approx(math.log(2))
    assert r["mean_confidence"] == pytest.approx(0.5)


def test_shift_reaches_the_model() -> None:
    # A "model" that reads the mean brightness: brightness shifts raise its class-1 probability.
    def predict(x: np.ndarray) -> np.ndarray:
        m = x.reshape(len(x), -1).mean(axis=1)
        return np.stack([1 - m, m], axis=1)

    x = np.full((5, 28, 28), 0.2, np.float32)
    records = shift_curve(predict, x, np.ones(5, int), shifts=[("brightness", i) for i in range(6)])
    conf = [r["mean_confidence"] for r in records]
    assert conf[0] == pytest.approx(0.8) and conf[-1] == pytest.approx(0.7)
    acc = [r["accuracy"] for r in records]
    assert acc[0] == 0.0 and acc[-1] == 1.0


def test_bad_input() -> None:
    probs = np.full((4, 2), 0.5)
    labels = np.zeros(4, int)
    with pytest.raises(ValueError, match="unknown shift"):
        shift_curve(lambda x: probs, _images(), labels, shifts=[("fog", 1)])
    with pytest.raises(ValueError, match="intensity"):
        shift_curve(lambda x: probs, _images(), labels, shifts=[("contrast", 7)])
    with pytest.raises(ValueError, match="empty"):
        shift_curve(lambda x: probs, _images(), labels, shifts=[])
    with pytest.raises(ValueError, match="labels"):
        shift_curve(lambda x: probs, _images(), labels[:3], shifts=[("rotate", 0)])
    with pytest.raises(ValueError, match="predictions"):
        shift_curve(lambda x: probs[:2], _images(), labels, shifts=[("rotate", 0)])
    with pytest.raises(ValueError, match="shape"):
        shift_curve(lambda x: probs[0], _images(), labels, shifts=[("rotate", 0)])


def test_tiny_fitted_ensemble() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((40, 64)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    ens = deepens.fit(x, y, head="categorical", hidden=(8,), members=2, epochs=2, progress=False, seed=0)
    shifts = [("rotate", 0), ("rotate", 45), ("translate", 3), ("impulse_noise", 5)]
    records = shift_curve(ens.predict, x[:16], y[:16], shifts=shifts, seed=3)
    assert len(records) == len(shifts)
    for r in records:
        assert tuple(r) == RECORD_FIELDS
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["ece"] <= 1 and 0 <= r["brier"] <= 2
        assert 1 / 3 - 1e-6 <= r["mean_confidence"] <= 1
        assert 0 <= r["knowledge"] <= r["entropy"] <= math.log(3) + 1e-6
        assert np.isfinite(r["nll"])
    assert records[1]["knowledge"] > 0  # two differently initialised members disagree somewhat
    # The same ensemble on the identity shift agrees with scoring its prediction directly.
    direct = deepens.metrics.accuracy(y[:16], np.asarray(ens.predict(x[:16]).probs))
    assert records[0]["accuracy"] == pytest.approx(direct)
    again = shift_curve(ens.predict, x[:16], y[:16], shifts=shifts, seed=3)
    assert again == records
