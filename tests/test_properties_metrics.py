"""Property-based tests of deepens.metrics on drawn predictions: scales from 1e-6 to 1e6, ties, one member,
identical members, float32 and float64 input. Invariants: finite scores for finite valid input; bounds
(CRPS >= 0, Brier in [0, 2], ECE <= MCE, AUROC in [0, 1]); reductions to one member; coverage nested in the
level; calibration curves monotone; proper scoring rules (exact expectations for classification, Monte
Carlo on a fixed sample for regression); agreement with scikit-learn; a ValueError for invalid input.

Every argument after the truth is passed by keyword (the metrics' options are keyword-only)."""

import math

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from deepens import metrics

DTYPES = st.sampled_from([np.float32, np.float64])
FAMILIES = st.sampled_from(["gaussian", "laplace", "student_t"])
SCALES = st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6])


@st.composite
def regression_case(draw, members=st.integers(1, 4)):
    """``(y, member_locs, member_scales, member_dfs, family)`` with y ``(N,)`` or ``(N, T)``."""
    shape = draw(st.sampled_from([(1,), (5,), (3, 2)]))
    m = draw(members)
    dtype = draw(DTYPES)
    unit = draw(SCALES)
    y = draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3))) * unit
    locs = draw(hnp.arrays(np.float64, (m, *shape), elements=st.floats(-3, 3))) * unit
    scales = draw(hnp.arrays(np.float64, (m, *shape), elements=st.floats(0.01, 3))) * unit
    dfs = draw(hnp.arrays(np.float64, (m, *shape), elements=st.floats(2.1, 50)))
    if draw(st.booleans()):  # identical members
        locs, scales, dfs = (np.repeat(a[:1], m, axis=0) for a in (locs, scales, dfs))
    if draw(st.booleans()):  # ties: the truth exactly at a member's location
        y = locs[0].copy()
    family = draw(FAMILIES)
    return (
        y.astype(dtype),
        locs.astype(dtype),
        scales.astype(dtype),
        dfs.astype(dtype) if family == "student_t" else None,
        family,
    )


def _single(family, y, loc, scale, df):
    """Per-example NLL and CRPS of one member through the single-distribution metrics (or scipy)."""
    if family == "gaussian":
        return metrics.gaussian_nll(y, mean=loc, std=scale), metrics.crps_gaussian(y, mean=loc, std=scale)
    if family == "laplace":
        return metrics.laplace_nll(y, loc=loc, scale=scale), metrics.crps_laplace(y, loc=loc, scale=scale)
    return -stats.t.logpdf(y, df, loc=loc, scale=scale), None


# --- regression ---------------------------------------------------------------------------------------


@given(regression_case())
def test_regression_scores_are_finite_and_reduce_to_one_member(case):
    y, locs, scales, dfs, family = case
    kw = {"family": family, "member_dfs": dfs}
    nll = metrics.mixture_nll(y, member_locs=locs, member_scales=scales, **kw)
    crps = metrics.crps_mixture(y, member_locs=locs, member_scales=scales, **kw)
    cdf = metrics.mixture_cdf(y, member_locs=locs, member_scales=scales, **kw)
    for value in (nll, crps, cdf):
        assert value.shape == y.shape and np.all(np.isfinite(value))
    unit = float(np.max(scales))
    assert np.all(crps >= -1e-6 * unit) and np.all((cdf >= 0) & (cdf <= 1))
    if np.all(locs == locs[:1]) and np.all(scales == scales[:1]) and (dfs is None or np.all(dfs == dfs[:1])):
        single_nll, single_crps = _single(family, y, locs[0], scales[0], None if dfs is None else dfs[0])
        np.testing.assert_allclose(nll, single_nll, rtol=1e-6, atol=1e-9)
        if single_crps is not None:
            np.testing.assert_allclose(crps, single_crps, rtol=1e-7, atol=1e-9 * unit)
        else:  # Student-t CRPS by quadrature: accurate to about 1e-3 relative
            mc = metrics.crps_mixture(
                y, member_locs=locs[:1], member_scales=scales[:1], family=family, member_dfs=dfs[:1]
            )
            np.testing.assert_allclose(crps, mc, rtol=1e-9)


@given(regression_case())
def test_regression_summary_is_finite_and_its_coverage_nested(case):
    y, locs, scales, dfs, family = case
    summary = metrics.regression_summary(
        y, member_locs=locs, member_scales=scales, family=family, levels=(0.5, 0.9, 0.95), member_dfs=dfs
    )
    assert all(math.isfinite(v) for v in summary.values()), summary
    assert summary["coverage_0.5"] <= summary["coverage_0.9"] <= summary["coverage_0.95"]
    assert summary["rmse"] >= summary["mae"] - 1e-9 * float(np.max(scales))
    assert 0 <= summary["miscalibration_area"] <= 0.5


@given(regression_case(), st.sampled_from([-1e3, -3.0, -0.5, 0.0, 0.5, 3.0, 1e3]))
def test_mixture_cdf_is_monotone_in_y(case, shift):
    y, locs, scales, dfs, family = case
    kw = {"member_locs": locs, "member_scales": scales, "family": family, "member_dfs": dfs}
    step = np.max(scales) * 0.25
    at = metrics.mixture_cdf(y, **kw)
    moved = metrics.mixture_cdf(y + step * np.sign(shift) * min(abs(shift), 1e3), **kw)
    assert np.all(moved >= at) if shift >= 0 else np.all(moved <= at)


MC_SAMPLES = 4000


@given(FAMILIES, st.sampled_from(["loc", "scale", "both"]), st.sampled_from([0.3, 1.0, 3.0]), SCALES, st.integers(1, 3))
def test_regression_nll_and_crps_are_proper_scoring_rules(family, what, size, unit, m):
    """For y drawn from the true mixture (one fixed sample, shared), the mean NLL and CRPS of the truth are
    below those of a perturbed mixture, up to 4 standard errors of the difference."""
    rng = np.random.default_rng(0)
    locs = rng.normal(0, 2, (m, 1)) * unit
    scales = rng.uniform(0.5, 2, (m, 1)) * unit
    dfs = rng.uniform(2.5, 10, (m, 1)) if family == "student_t" else None
    member = rng.integers(0, m, MC_SAMPLES)
    if family == "gaussian":
        noise = rng.normal(size=MC_SAMPLES)
    elif family == "laplace":
        noise = rng.laplace(size=MC_SAMPLES)
    else:
        noise = rng.standard_t(dfs[member, 0])
    y = locs[member, 0] + scales[member, 0] * noise  # (S,)
    other_locs = locs + (size * scales if what in ("loc", "both") else 0.0)
    other_scales = scales * (1 + size if what in ("scale", "both") else 1.0)

    def scores(l, s):
        kw = {
            "member_locs": np.broadcast_to(l, (m, MC_SAMPLES)),
            "member_scales": np.broadcast_to(s, (m, MC_SAMPLES)),
            "family": family,
            "member_dfs": None if dfs is None else np.broadcast_to(dfs, (m, MC_SAMPLES)),
        }
        crps = metrics.crps_mixture(y, **kw) if family != "student_t" else np.zeros(MC_SAMPLES)
        return metrics.mixture_nll(y, **kw), crps

    for truth, other in zip(scores(locs, scales), scores(other_locs, other_scales)):
        gap = other - truth
        assert gap.mean() >= -4 * gap.std() / math.sqrt(MC_SAMPLES) - 1e-12


@given(
    hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(0, 1)),
    st.lists(st.floats(0, 1), min_size=1, max_size=6),
)
@example(np.array([0.0, 1.0, 0.5, 0.5]), [0.0, 1.0])
def test_coverage_and_calibration_curves_are_monotone_and_bounded(pit, levels):
    levels = sorted(levels)
    coverage = metrics.central_coverage(pit, levels=levels)
    assert np.all((coverage >= 0) & (coverage <= 1)) and np.all(np.diff(coverage) >= 0)
    for kind in ("quantile", "central"):
        curve = metrics.calibration_curve(pit, levels=levels, kind=kind)
        assert np.all(np.diff(curve.observed) >= 0)
        area = metrics.miscalibration_area(pit, kind=kind)
        assert 0 <= area <= 0.5 + 1e-12
    assert metrics.calibration_curve(pit, levels=[1.0]).observed[0] == 1.0


@given(regression_case(members=st.just(1)), st.floats(0, 5))
def test_interval_coverage_counts_the_truth_inside(case, width):
    y, locs, scales, _, _ = case
    half = width * scales[0]
    assert metrics.interval_coverage(y, lower=y - half, upper=y + half) == 1.0
    c = metrics.interval_coverage(y, lower=locs[0] - half, upper=locs[0] + half)
    assert 0.0 <= c <= 1.0


# --- classification -----------------------------------------------------------------------------------


@st.composite
def classification_case(draw):
    n, k = draw(st.integers(1, 30)), draw(st.integers(2, 6))
    scale = draw(st.sampled_from([0.0, 1.0, 5.0, 100.0]))
    logits = draw(hnp.arrays(np.float64, (n, k), elements=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]))) * scale
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).astype(draw(DTYPES))
    labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    return labels, p


@given(classification_case(), st.integers(1, 20), st.sampled_from(["uniform", "quantile"]))
def test_classification_metrics_are_bounded(case, bins, strategy):
    labels, p = case
    k = p.shape[1]
    acc = metrics.accuracy(labels, probs=p)
    summed = metrics.brier_summed(labels, probs=p)
    per_class = metrics.brier_per_class(labels, probs=p)
    nll = metrics.categorical_nll(labels, probs=p)
    assert 0 <= acc <= 1
    assert np.all((summed >= 0) & (summed <= 2 + 1e-6))
    np.testing.assert_allclose(per_class, summed / k)
    assert np.all(nll >= 0)  # inf where the label has probability 0
    r = metrics.reliability_diagram(labels, probs=p, bins=bins, strategy=strategy)
    assert r.counts.sum() == len(labels) and len(r.counts) == bins and len(r.edges) == bins + 1
    ece = metrics.expected_calibration_error(labels, probs=p, bins=bins, strategy=strategy)
    mce = metrics.maximum_calibration_error(labels, probs=p, bins=bins, strategy=strategy)
    assert 0 <= ece <= mce + 1e-12 <= 1 + 1e-12
    summary = metrics.classification_summary(labels, probs=p, bins=bins)
    assert all(math.isfinite(v) for key, v in summary.items() if key != "nll")


@given(classification_case(), st.floats(0.01, 1.0))
def test_classification_nll_and_brier_are_proper_scoring_rules(case, mix):
    """Exact expectations over the label: E_{y ~ p} S(q, y) >= E_{y ~ p} S(p, y) for any q, with q a
    distribution between p and another row (strictly proper: equality only at q = p)."""
    _, p = case
    p = p.astype(np.float64)
    p = p / p.sum(1, keepdims=True)
    q = (1 - mix) * p + mix * np.roll(p, 1, axis=1)
    k = p.shape[1]
    labels = np.arange(k)
    for row_p, row_q in zip(p, q):
        for score in (metrics.categorical_nll, metrics.brier_summed):
            at_truth = score(labels, probs=np.tile(row_p, (k, 1)))
            elsewhere = score(labels, probs=np.tile(row_q, (k, 1)))
            with np.errstate(invalid="ignore"):  # 0 * inf where a class has probability 0
                expected_truth = np.sum(np.where(row_p > 0, row_p * at_truth, 0.0))
                expected_other = np.sum(np.where(row_p > 0, row_p * elsewhere, 0.0))
            assert expected_other >= expected_truth - 1e-12


# --- out-of-distribution and selective prediction -----------------------------------------------------


@st.composite
def detection_case(draw):
    n = draw(st.integers(2, 40))
    is_ood = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    assume(0 < is_ood.sum() < n)
    values = st.sampled_from([0.0, 1.0, 2.0]) if draw(st.booleans()) else st.floats(-1e6, 1e6)  # ties, or not
    score = np.array(draw(st.lists(values, min_size=n, max_size=n)))
    return is_ood, score.astype(draw(DTYPES))


@given(detection_case())
def test_ood_metrics_agree_with_scikit_learn_and_are_rank_invariant(case):
    is_ood, score = case
    auroc = metrics.auroc(is_ood, score=score)
    assert 0 <= auroc <= 1
    assert auroc == pytest.approx(roc_auc_score(is_ood, score), abs=1e-12)
    assert metrics.aupr(is_ood, score=score) == pytest.approx(average_precision_score(is_ood, score), abs=1e-12)
    assert metrics.auroc(is_ood, score=-score) == pytest.approx(1 - auroc, abs=1e-12)
    for monotone in (4.0 * score.astype(np.float64), stats.rankdata(score)):  # exactly order-preserving
        assert metrics.auroc(is_ood, score=monotone) == pytest.approx(auroc, abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(is_ood, score=score)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and fpr[-1] == tpr[-1] == 1
    assert 0 <= metrics.fpr_at_tpr(is_ood, score=score, tpr=0.95) <= 1


@given(detection_case())
def test_selective_curves_are_monotone_and_bounded(case):
    correct, confidence = case
    curve = metrics.risk_coverage_curve(correct, confidence=confidence)
    assert np.all(np.diff(curve.coverage) > 0) and curve.coverage[-1] == 1
    assert np.all((curve.risk >= 0) & (curve.risk <= 1))
    assert 0 <= metrics.aurc(correct, confidence=confidence) <= 1
    sel = metrics.accuracy_vs_confidence(correct, confidence=confidence, thresholds=np.linspace(-1e6, 1e6, 7))
    assert np.all(np.diff(sel.coverage) <= 0) and np.all(np.diff(sel.count) <= 0)


# --- invalid input: a ValueError, never another exception -------------------------------------------------


def _nan_at(a, index):
    a = np.array(a, np.float64)
    a.flat[index % a.size] = np.nan
    return a


def _set_in_every_member(a, index, value):
    """``a`` ``(M, ...)`` with one position set to ``value`` in every member (the single-distribution
    metrics read member 0 only)."""
    a = np.array(a, np.float64)
    a.reshape(a.shape[0], -1)[:, index % max(a[0].size, 1)] = value
    return a


REGRESSION_CALLS = {
    "gaussian_nll": lambda y, l, s: metrics.gaussian_nll(y, mean=l[0], std=s[0]),
    "laplace_nll": lambda y, l, s: metrics.laplace_nll(y, loc=l[0], scale=s[0]),
    "crps_gaussian": lambda y, l, s: metrics.crps_gaussian(y, mean=l[0], std=s[0]),
    "crps_laplace": lambda y, l, s: metrics.crps_laplace(y, loc=l[0], scale=s[0]),
    "gaussian_cdf": lambda y, l, s: metrics.gaussian_cdf(y, mean=l[0], std=s[0]),
    "mixture_nll": lambda y, l, s: metrics.mixture_nll(y, member_locs=l, member_scales=s),
    "crps_mixture": lambda y, l, s: metrics.crps_mixture(y, member_locs=l, member_scales=s, family="laplace"),
    "mixture_cdf": lambda y, l, s: metrics.mixture_cdf(y, member_locs=l, member_scales=s),
    "regression_summary": lambda y, l, s: metrics.regression_summary(y, member_locs=l, member_scales=s),
    "student_t": lambda y, l, s: metrics.mixture_nll(
        y, member_locs=l, member_scales=s, family="student_t", member_dfs=np.full(np.shape(l), 3.0)
    ),
}


@given(
    st.sampled_from(sorted(REGRESSION_CALLS)),
    st.sampled_from(
        ["nan_y", "nan_loc", "nan_scale", "negative_scale", "zero_scale", "shape", "empty", "strings", "inf_y"]
    ),
    regression_case(members=st.integers(1, 3)),
    st.integers(0, 10**6),
)
def test_invalid_regression_input_raises_a_value_error(name, how, case, index):
    y, locs, scales, _, _ = case
    y, locs, scales = (np.array(a, np.float64) for a in (y, locs, scales))
    if how == "nan_y":
        y = _nan_at(y, index)
    elif how == "inf_y":
        y = np.full_like(y, np.inf)
    elif how == "nan_loc":
        locs = _set_in_every_member(locs, index, np.nan)
    elif how == "nan_scale":
        scales = _set_in_every_member(scales, index, np.nan)
    elif how == "negative_scale":
        scales = _set_in_every_member(scales, index, -1.0)
    elif how == "zero_scale":
        # A Gaussian scale of 0 is a point forecast where the CRPS allows it.
        assume(name not in ("crps_gaussian", "regression_summary", "crps_mixture"))
        scales = _set_in_every_member(scales, index, 0.0)
    elif how == "shape":
        y = np.concatenate([y, y[:1]])
    elif how == "empty":
        y, locs, scales = y[:0], locs[:, :0], scales[:, :0]
    elif how == "strings":
        y = np.full(y.shape, "abc")
    with pytest.raises(ValueError, match=name.split("_nll")[0] if name != "student_t" else "mixture_nll"):
        REGRESSION_CALLS[name](y, locs, scales)


CLASSIFICATION_CALLS = {
    "accuracy": lambda y, p, bins: metrics.accuracy(y, probs=p),
    "categorical_nll": lambda y, p, bins: metrics.categorical_nll(y, probs=p),
    "brier_summed": lambda y, p, bins: metrics.brier_summed(y, probs=p),
    "brier_per_class": lambda y, p, bins: metrics.brier_per_class(y, probs=p),
    "reliability_diagram": lambda y, p, bins: metrics.reliability_diagram(y, probs=p, bins=bins),
    "expected_calibration_error": lambda y, p, bins: metrics.expected_calibration_error(y, probs=p, bins=bins),
    "classification_summary": lambda y, p, bins: metrics.classification_summary(y, probs=p, bins=bins),
}


@given(
    st.sampled_from(sorted(CLASSIFICATION_CALLS)),
    st.sampled_from(
        [
            "nan",
            "not_summing",
            "negative",
            "label_high",
            "label_negative",
            "label_fraction",
            "shape",
            "one_class",
            "bins_zero",
            "bins_huge",
            "bins_float",
        ]
    ),
    classification_case(),
    st.integers(0, 10**6),
)
@example("reliability_diagram", "bins_huge", (np.array([0, 1]), np.array([[0.5, 0.5], [0.2, 0.8]])), 0)  # item 8
def test_invalid_classification_input_raises_a_value_error(name, how, case, index):
    labels, p = case
    p = np.array(p, np.float64)
    bins = 15
    if how == "nan":
        p = _nan_at(p, index)
    elif how == "not_summing":
        p = p * 0.5
    elif how == "negative":
        p[index % len(p)] = np.roll(np.eye(p.shape[1])[0] * 2 - 0.0, 0)
        p[index % len(p), 1] = -1.0
    elif how == "label_high":
        labels = labels.copy()
        labels[index % len(labels)] = p.shape[1]
    elif how == "label_negative":
        labels = labels.copy()
        labels[index % len(labels)] = -1
    elif how == "label_fraction":
        labels = labels + 0.5
    elif how == "shape":
        labels = np.concatenate([labels, labels[:1]])
    elif how == "one_class":
        p = p[:, :1] / p[:, :1]
    elif how in ("bins_zero", "bins_huge", "bins_float"):
        assume(name in ("reliability_diagram", "expected_calibration_error", "classification_summary"))
        bins = {"bins_zero": 0, "bins_huge": 10**9, "bins_float": 2.5}[how]
    with pytest.raises(ValueError):
        CLASSIFICATION_CALLS[name](labels, p, bins)


def test_reliability_bounds_bins():
    with pytest.raises(ValueError):
        metrics.reliability([True, False], confidence=[0.5, 0.9], bins=10**9)


@given(
    st.sampled_from(
        [
            "auroc",
            "aupr",
            "fpr_at_tpr",
            "roc_curve",
            "risk_coverage_curve",
            "aurc",
            "accuracy_vs_confidence",
            "reliability",
        ]
    ),
    st.sampled_from(["nan_score", "one_class", "non_binary", "shape", "empty"]),
    detection_case(),
    st.integers(0, 10**6),
)
def test_invalid_detection_and_selective_input_raises_a_value_error(name, how, case, index):
    flags, score = case
    score = np.array(score, np.float64)
    if name == "reliability":
        score = np.clip(np.abs(score) / (1 + np.abs(score).max()), 0, 1)
    if how == "nan_score":
        score = _nan_at(score, index)
    elif how == "one_class":
        assume(name in ("auroc", "aupr", "fpr_at_tpr", "roc_curve"))
        flags = np.ones_like(flags)
    elif how == "non_binary":
        flags = flags.astype(int) * 2
    elif how == "shape":
        score = score[:-1]
    elif how == "empty":
        flags, score = flags[:0], score[:0]
    function = getattr(metrics, name)
    second = (
        "confidence" if name in ("risk_coverage_curve", "aurc", "accuracy_vs_confidence", "reliability") else "score"
    )
    with pytest.raises(ValueError):
        function(flags, **{second: score})


@pytest.mark.parametrize("tpr", [None, "x", [0.95]])
def test_fpr_at_tpr_refuses_a_non_numeric_rate(tpr):
    with pytest.raises(ValueError, match="tpr"):
        metrics.fpr_at_tpr([True, False, True], score=[0.3, 0.1, 0.9], tpr=tpr)
