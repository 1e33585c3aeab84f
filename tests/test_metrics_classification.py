import math

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from deepens import metrics


def _random_probs(rng, n: int, k: int) -> np.ndarray:
    logits = rng.normal(size=(n, k)) * 2
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def test_accuracy_hand_value_and_first_class_on_ties():
    probs = np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]])
    assert metrics.accuracy([0, 1, 1], probs) == pytest.approx(2 / 3)  # the tie goes to class 0


def test_nll_matches_sklearn_log_loss_and_is_inf_at_zero_probability(rng):
    labels, probs = rng.integers(0, 4, 60), _random_probs(rng, 60, 4)
    assert np.mean(metrics.categorical_nll(labels, probs=probs)) == pytest.approx(
        log_loss(labels, probs, labels=range(4))
    )
    assert metrics.categorical_nll([1], probs=[[1.0, 0.0]])[0] == math.inf
    # The mean over examples only: not also divided by K (a trap seen in peers).
    assert metrics.categorical_nll([0], probs=[[0.25] * 4])[0] == pytest.approx(math.log(4))


def test_brier_both_conventions_against_sklearn_and_hand_values(rng):
    labels, probs = rng.integers(0, 5, 80), _random_probs(rng, 80, 5)
    summed = metrics.brier_summed(labels, probs)
    assert np.mean(summed) == pytest.approx(brier_score_loss(labels, probs, labels=range(5)))
    np.testing.assert_allclose(metrics.brier_per_class(labels, probs), summed / 5)
    binary_labels, p1 = rng.integers(0, 2, 40), rng.uniform(size=40)
    two_columns = np.stack([1 - p1, p1], axis=1)
    paper_convention = np.mean(metrics.brier_per_class(binary_labels, two_columns))
    assert paper_convention == pytest.approx(brier_score_loss(binary_labels, p1))
    # Perfect and worst predictions; a uniform guess over K classes scores (K - 1) / K summed.
    assert metrics.brier_summed([0], [[1.0, 0.0, 0.0]])[0] == 0.0
    assert metrics.brier_summed([0], [[0.0, 1.0, 0.0]])[0] == 2.0
    assert metrics.brier_per_class([0], [[0.0, 1.0, 0.0]])[0] == pytest.approx(2 / 3)
    assert metrics.brier_summed([2], [[0.25] * 4])[0] == pytest.approx(0.75)


def test_ece_and_mce_hand_values():
    confidence = [0.95, 0.85, 0.35, 0.35]
    correct = [True, False, True, True]
    r = metrics.reliability(correct, confidence, bins=10)
    # bins 9: gap 0.05 (weight 1/4); 8: gap 0.85 (1/4); 3: gap 0.65 (1/2).
    assert r.ece == pytest.approx(0.25 * 0.05 + 0.25 * 0.85 + 0.5 * 0.65)
    assert r.mce == pytest.approx(0.85)
    np.testing.assert_array_equal(np.flatnonzero(r.counts), [3, 8, 9])


def test_confidence_of_exactly_one_falls_in_the_last_bin_and_zero_in_the_first():
    r = metrics.reliability([True, False, True], [1.0, 0.0, 0.5], bins=10)
    assert r.counts.shape == (10,) and r.counts[-1] == 1 and r.counts[0] == 1 and r.counts[5] == 1
    assert r.edges[0] == 0.0 and r.edges[-1] == 1.0 and r.edges.shape == (11,)
    assert r.ece == pytest.approx((0.0 + 0.0 + 0.5) / 3)


def test_ece_matches_a_brute_force_loop(rng):
    labels, probs = rng.integers(0, 3, 300), _random_probs(rng, 300, 3)
    correct = probs.argmax(1) == labels
    conf = probs.max(1)
    bins = 7
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = (conf >= low) & ((conf < high) if b < bins - 1 else (conf <= high))
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - conf[inside].mean())
    assert metrics.expected_calibration_error(labels, probs, bins=bins) == pytest.approx(total / 300)


def test_equal_mass_bins_split_evenly_and_keep_ties_together():
    confidence = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.6])
    r = metrics.reliability(np.ones(6, bool), confidence, bins=3, strategy="quantile")
    np.testing.assert_array_equal(r.counts, [2, 2, 2])
    np.testing.assert_allclose(r.edges, [0.1, 0.5, 0.7, 1.0])
    tied = metrics.reliability([True, False, True, True], [0.6] * 4, bins=2, strategy="quantile")
    np.testing.assert_array_equal(tied.counts, [4, 0])
    assert tied.ece == pytest.approx(abs(0.75 - 0.6))
    # The order of the examples does not change the bins.
    shuffled = metrics.reliability([False, True, True, True], [0.6, 0.6, 0.2, 0.2], bins=3, strategy="quantile")
    again = metrics.reliability([True, True, True, False], [0.2, 0.2, 0.6, 0.6], bins=3, strategy="quantile")
    assert shuffled.ece == again.ece


def test_single_example_and_all_one_class():
    assert metrics.reliability([False], [0.7]).ece == pytest.approx(0.7)
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    s = metrics.classification_summary([0, 0, 0], probs)
    assert s["accuracy"] == 1.0 and s["error"] == 0.0
    assert s["ece"] == pytest.approx(1 - np.mean([0.9, 0.8, 0.6]))


def test_summary_of_a_trained_classifier_uses_its_log_probabilities(spiral_data, small_classifier):
    x, y = spiral_data
    prediction = small_classifier.predict(x)
    s = metrics.evaluate(prediction, y)
    assert s["nll"] == pytest.approx(float(np.mean(prediction.nll(y))), rel=1e-6)
    assert s["accuracy"] == pytest.approx(float(np.mean(np.asarray(prediction.label) == y)))
    assert s["brier_per_class"] == pytest.approx(s["brier_summed"] / 3)
    assert 0 <= s["ece"] <= s["mce"] <= 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.accuracy([0], [[0.7, 0.7]]), "sum to 1"),
        (lambda: metrics.accuracy([2], [[0.5, 0.5]]), r"labels must lie in \[0, 2\)"),
        (lambda: metrics.accuracy([0, 1], [[0.5, 0.5]]), "one label per row"),
        (lambda: metrics.accuracy([0.5], [[0.5, 0.5]]), "integer"),
        (lambda: metrics.accuracy([0], [0.5, 0.5]), "2-D"),
        (lambda: metrics.brier_summed([0], [[1.2, -0.2]]), r"\[0, 1\]"),
        (lambda: metrics.reliability([True], [1.5]), "confidence must lie"),
        (lambda: metrics.reliability([True], [0.5], bins=0), "bins"),
        (lambda: metrics.reliability([True], [0.5], strategy="log"), "strategy"),
        (lambda: metrics.reliability([2], [0.5]), "booleans"),
        (lambda: metrics.reliability([], []), "empty"),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
