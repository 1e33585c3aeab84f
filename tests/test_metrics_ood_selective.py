import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from deepens import metrics


@pytest.fixture
def tied_scores(rng):
    """Scores rounded to one decimal so that many ties straddle the two classes."""
    is_ood = rng.uniform(size=400) < 0.3
    score = np.round(rng.normal(size=400) + 1.2 * is_ood, 1)
    return is_ood, score


# --- out of distribution ------------------------------------------------------------------------------


def test_auroc_and_aupr_match_sklearn_with_ties(tied_scores):
    is_ood, score = tied_scores
    assert metrics.auroc(is_ood, score) == pytest.approx(roc_auc_score(is_ood, score), rel=1e-12)
    assert metrics.aupr(is_ood, score) == pytest.approx(average_precision_score(is_ood, score), rel=1e-12)


def test_fpr_at_95_tpr_matches_the_sklearn_roc_curve(tied_scores):
    is_ood, score = tied_scores
    fpr, tpr, _ = sk_roc_curve(is_ood, score, drop_intermediate=False)
    assert metrics.fpr_at_tpr(is_ood, score) == pytest.approx(fpr[np.searchsorted(tpr, 0.95)])
    ours_fpr, ours_tpr, _ = metrics.roc_curve(is_ood, score)
    np.testing.assert_allclose(ours_fpr, fpr)
    np.testing.assert_allclose(ours_tpr, tpr)


def test_hand_values_perfect_reversed_and_all_tied():
    is_ood = [False, False, True, True]
    assert metrics.auroc(is_ood, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.aupr(is_ood, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.fpr_at_tpr(is_ood, [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert metrics.auroc(is_ood, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert metrics.fpr_at_tpr(is_ood, [0.9, 0.8, 0.2, 0.1]) == 1.0
    # All scores tied: chance AUROC, AUPR = fraction OOD, and reaching 95% TPR flags everyone.
    assert metrics.auroc(is_ood, [0.5] * 4) == 0.5
    assert metrics.aupr(is_ood, [0.5] * 4) == 0.5
    assert metrics.fpr_at_tpr(is_ood, [0.5] * 4) == 1.0
    # One in-distribution example ties with one OOD example: that pair counts one half.
    assert metrics.auroc([False, True], [0.3, 0.3]) == 0.5
    assert metrics.auroc([False, False, True], [0.1, 0.5, 0.5]) == pytest.approx(0.75)


def test_ood_detection_from_two_sets(rng):
    inside, outside = rng.normal(size=50), rng.normal(1.0, size=70)
    result = metrics.ood_detection(inside, outside)
    is_ood = np.r_[np.zeros(50, bool), np.ones(70, bool)]
    both = np.r_[inside, outside]
    assert result.auroc == pytest.approx(roc_auc_score(is_ood, both))
    assert result.aupr == pytest.approx(average_precision_score(is_ood, both))
    assert result.fpr_at_95_tpr == metrics.fpr_at_tpr(is_ood, both)


def test_uncertainty_scores_of_a_classifier(spiral_data, small_classifier):
    x, _ = spiral_data
    prediction = small_classifier.predict(x[:50])
    scores = metrics.uncertainty_scores(prediction)
    np.testing.assert_allclose(scores["entropy"], np.asarray(prediction.entropy), rtol=1e-6)
    np.testing.assert_allclose(scores["one_minus_max_probability"], 1 - np.asarray(prediction.confidence), rtol=1e-6)
    assert np.all(scores["mutual_information"] >= 0)
    assert np.all(scores["mutual_information"] <= scores["entropy"] + 1e-6)


def test_uncertainty_scores_of_a_regressor(cubic_data, small_regression_ensemble):
    x, _ = cubic_data
    prediction = small_regression_ensemble.predict(x[:10])
    scores = metrics.uncertainty_scores(prediction)
    np.testing.assert_allclose(scores["variance"], np.asarray(prediction.variance), rtol=1e-6)
    assert np.all(scores["epistemic_variance"] <= scores["variance"] + 1e-9)


@pytest.mark.parametrize("is_ood", [[False, False], [True, True, True]])
def test_all_one_class_is_an_error(is_ood):
    with pytest.raises(ValueError, match="only one class"):
        metrics.auroc(is_ood, np.arange(len(is_ood)))


def test_ood_bad_input():
    with pytest.raises(ValueError, match="one value per example"):
        metrics.auroc([True, False], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        metrics.aupr([True, False], [np.nan, 0.1])
    with pytest.raises(ValueError, match="tpr"):
        metrics.fpr_at_tpr([True, False], [0.2, 0.1], tpr=0.0)


# --- selective prediction -----------------------------------------------------------------------------


def test_accuracy_vs_confidence_hand_values():
    curve = metrics.accuracy_vs_confidence([False, True, False, True], [0.2, 0.5, 0.5, 0.9], [0.0, 0.5, 0.6, 0.95])
    np.testing.assert_allclose(curve.accuracy, [0.5, 2 / 3, 1.0, np.nan])
    np.testing.assert_allclose(curve.coverage, [1.0, 0.75, 0.25, 0.0])
    np.testing.assert_array_equal(curve.count, [4, 3, 1, 0])


def test_out_of_distribution_inputs_count_as_errors():
    # Known inputs: confident and right. Unknown inputs: never right; confident ones pull the curve down.
    known_conf, unknown_conf = np.full(10, 0.99), np.array([0.3] * 8 + [0.99] * 2)
    correct = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    curve = metrics.accuracy_vs_confidence(correct, np.r_[known_conf, unknown_conf], [0.0, 0.5])
    np.testing.assert_allclose(curve.accuracy, [0.5, 10 / 12])


def test_risk_coverage_and_aurc_hand_values():
    curve = metrics.risk_coverage_curve([True, True, False, True], [0.9, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.risk, [0.0, 0.0, 1 / 3, 1 / 4])
    assert metrics.aurc([True, True, False, True], [0.9, 0.8, 0.7, 0.6]) == pytest.approx((1 / 3 + 1 / 4) / 4)
    # Tied confidences enter together.
    tied = metrics.risk_coverage_curve([True, False, True], [0.9, 0.9, 0.5])
    np.testing.assert_allclose(tied.coverage, [2 / 3, 1.0])
    np.testing.assert_allclose(tied.risk, [0.5, 1 / 3])
    assert metrics.aurc([True, False, True], [0.9, 0.9, 0.5]) == pytest.approx(2 / 3 * 0.5 + 1 / 3 * 1 / 3)


def test_aurc_is_the_mean_selective_risk_for_distinct_confidences(rng):
    correct, confidence = rng.uniform(size=200) < 0.8, rng.uniform(size=200)
    order = np.argsort(-confidence)
    risks = np.cumsum(~correct[order]) / np.arange(1, 201)
    assert metrics.aurc(correct, confidence) == pytest.approx(np.mean(risks))


def test_selective_single_example_and_bad_input():
    assert metrics.aurc([False], [0.4]) == 1.0
    np.testing.assert_allclose(metrics.accuracy_vs_confidence([True], [1.0], [1.0]).accuracy, [1.0])
    with pytest.raises(ValueError, match="booleans"):
        metrics.aurc([0.5], [0.4])
    with pytest.raises(ValueError, match="one value per example"):
        metrics.aurc([True, False], [0.4])
