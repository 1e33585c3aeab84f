"""Property-based tests of deepens.calibration and deepens.validation on drawn held-out predictions and
inputs: temperature scaling keeps the argmax and normalises rows; the fitted temperature and std scale
are invariant to what they should ignore; the conformal quantile covers its level in sample; intervals
are nested; a fitted Calibration round-trips through JSON; a ValueError, never another exception, for
invalid input (including a corrupt saved config)."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deepens import calibration as calib
from deepens import validation

FINITE = st.floats(-30, 30)


@st.composite
def held_out_log_probs(draw):
    n, k = draw(st.integers(calib.MIN_ROWS, 40)), draw(st.integers(2, 5))
    logits = draw(hnp.arrays(np.float64, (n, k), elements=FINITE)) * draw(st.sampled_from([0.0, 0.1, 1.0, 3.0]))
    log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    return log_probs, labels


@given(held_out_log_probs(), st.floats(0.01, 100))
def test_temper_normalises_and_keeps_the_predicted_class(case, temperature):
    log_probs, _ = case
    tempered = calib.temper(log_probs, temperature)
    np.testing.assert_allclose(np.exp(tempered).sum(1), 1.0, rtol=1e-12)
    # The predicted class stays a most probable one (rounding may tie classes 1 ulp apart), and classes
    # clearly behind stay behind.
    rows = np.arange(len(log_probs))
    best = np.argmax(log_probs, axis=1)
    assert np.all(tempered[rows, best] >= tempered.max(1) - 1e-12)
    behind = log_probs < log_probs.max(1, keepdims=True) - 1e-6
    assert np.all(tempered[behind] < np.broadcast_to(tempered.max(1, keepdims=True), tempered.shape)[behind])
    np.testing.assert_allclose(calib.temper(log_probs, 1.0), log_probs, atol=1e-12)


@given(held_out_log_probs(), hnp.arrays(np.float64, st.integers(calib.MIN_ROWS, 40), elements=FINITE))
def test_fitted_temperature_ignores_a_shift_of_each_row(case, shifts):
    log_probs, labels = case
    shifts = np.resize(shifts, len(labels))[:, None]
    t = calib.fit_temperature(log_probs, labels)
    assert 1e-2 <= t <= 1e2
    assert calib.fit_temperature(log_probs + shifts, labels) == pytest.approx(t, rel=1e-5)
    # It minimises the held-out NLL against nearby temperatures inside the search range [0.01, 100].
    nll = lambda tt: -np.mean(calib.temper(log_probs, tt)[np.arange(len(labels)), labels])  # noqa: E731
    for nearby in (t * 1.01, t / 1.01):
        if 1e-2 <= nearby <= 1e2:
            assert nll(t) <= nll(nearby) + 1e-9


@st.composite
def held_out_regression(draw):
    n = draw(st.integers(calib.MIN_ROWS, 40))
    unit = draw(st.sampled_from([1e-6, 1.0, 1e6]))
    mean = draw(hnp.arrays(np.float64, n, elements=st.floats(-3, 3))) * unit
    std = draw(hnp.arrays(np.float64, n, elements=st.floats(0.1, 3))) * unit
    residual = draw(hnp.arrays(np.float64, n, elements=st.floats(-3, 3)))
    if draw(st.booleans()):
        residual = np.round(residual)  # ties, and rows exactly at the mean
    return mean + residual * std, mean, std


@given(held_out_regression(), st.floats(0.01, 100))
def test_std_scale_is_the_root_mean_square_z_and_scales_inversely(case, factor):
    y, mean, std = case
    z = (y - mean) / std
    if np.all(z == 0):
        with pytest.raises(ValueError, match="zero"):
            calib.fit_std_scale(y, mean, std)
        return
    s = calib.fit_std_scale(y, mean, std)
    assert s == pytest.approx(math.sqrt(np.mean(z * z)), rel=1e-12)
    assert calib.fit_std_scale(y, mean, factor * std) == pytest.approx(s / factor, rel=1e-9)


@given(
    hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(0, 1e6)),
    st.lists(st.floats(0.01, 0.99), min_size=2, max_size=5),
)
def test_conformal_quantile_covers_its_level_in_sample_and_grows_with_it(scores, levels):
    levels = sorted(levels)
    q = [calib.conformal_quantile(scores, level) for level in levels]
    assert all(a <= b for a, b in zip(q, q[1:]))
    n = len(scores)
    for level, value in zip(levels, q):
        k = calib.conformal_index(n, level)
        if k > n:
            assert value == math.inf
        else:
            assert np.sum(scores <= value) >= k >= (n + 1) * level - 1e-6
    mean, std = np.zeros(n), np.ones(n)
    bounds = [calib.conformal_interval(mean, std, value) for value in q]
    for (lo_a, up_a), (lo_b, up_b) in zip(bounds, bounds[1:]):
        assert np.all(lo_b <= lo_a) and np.all(up_a <= up_b)


@given(st.sampled_from(calib.KINDS), st.floats(1e-6, 1e6), st.floats(0.01, 0.99), st.booleans())
def test_a_calibration_round_trips_through_json(kind, value, level, infinite):
    if kind == "conformal":
        cal = calib.Calibration(kind, math.inf if infinite else value, level)
    else:
        cal = calib.Calibration(kind, value)
    assert calib.Calibration.from_config(json.loads(json.dumps(cal.to_config()))) == cal


CORRUPT_CONFIGS = [
    None,
    [],
    "scale",
    {},
    {"kind": "scale"},
    {"value": 1.0},
    {"kind": "bogus", "value": 1.0},
    {"kind": "scale", "value": None},
    {"kind": "scale", "value": "abc"},
    {"kind": "scale", "value": -1},
    {"kind": "scale", "value": True},
    {"kind": "scale", "value": [1.0]},
    {"kind": 3, "value": 1.0},
    {"kind": "conformal", "value": 1.0},
    {"kind": "conformal", "value": 1.0, "level": "x"},
    {"kind": "conformal", "value": 1.0, "level": 1.5},
    {"kind": "temperature", "value": "inf"},
    {"kind": "scale", "value": 1.0, "level": 0.9},
]


@given(st.sampled_from(CORRUPT_CONFIGS))
def test_a_corrupt_calibration_config_raises_a_value_error(config):
    with pytest.raises(ValueError):
        calib.Calibration.from_config(config)


BAD_VALUES = [None, "x", float("nan"), float("inf"), -1.0, 0.0, [1.0], True]


@given(st.sampled_from(BAD_VALUES), held_out_log_probs())
def test_invalid_calibration_arguments_raise_a_value_error(bad, case):
    log_probs, labels = case
    n = len(labels)
    if bad not in (True, 0.0, float("inf")):  # valid multipliers (inf: too few rows for the level)
        with pytest.raises(ValueError):
            calib.conformal_interval(np.zeros(n), np.ones(n), bad)
    with pytest.raises(ValueError):
        calib.temper(log_probs, bad)
    with pytest.raises(ValueError):
        calib.conformal_quantile(np.ones(n), bad)
    with pytest.raises(ValueError):
        calib.Calibration("scale", bad)


@given(
    held_out_log_probs(),
    st.sampled_from(
        [
            "nan",
            "plus_inf",
            "row_minus_inf",
            "one_class",
            "labels_high",
            "labels_fraction",
            "labels_short",
            "few_rows",
            "strings",
            "complex",
        ]
    ),
)
def test_invalid_held_out_classification_raises_a_value_error(case, how):
    log_probs, labels = np.array(case[0]), np.array(case[1])
    if how == "nan":
        log_probs[0, 0] = np.nan
    elif how == "plus_inf":
        log_probs[-1, -1] = np.inf
    elif how == "row_minus_inf":
        log_probs[0] = -np.inf
    elif how == "one_class":
        log_probs = log_probs[:, :1]
    elif how == "labels_high":
        labels[0] = log_probs.shape[1]
    elif how == "labels_fraction":
        labels = labels + 0.5
    elif how == "labels_short":
        labels = labels[:-1]
    elif how == "few_rows":
        log_probs, labels = log_probs[: calib.MIN_ROWS - 1], labels[: calib.MIN_ROWS - 1]
    elif how == "strings":
        log_probs = np.full(log_probs.shape, "abc")
    elif how == "complex":
        log_probs = log_probs + 1j
    with pytest.raises(ValueError):
        calib.fit_temperature(log_probs, labels)


@given(
    held_out_regression(),
    st.sampled_from(["nan", "inf", "zero_std", "negative_std", "shapes", "two_d", "few_rows", "overflow"]),
)
def test_invalid_held_out_regression_raises_a_value_error(case, how):
    y, mean, std = (np.array(a) for a in case)
    if how == "nan":
        y[0] = np.nan
    elif how == "inf":
        mean[-1] = np.inf
    elif how == "zero_std":
        std[0] = 0.0
    elif how == "negative_std":
        std[-1] = -1.0
    elif how == "shapes":
        std = std[:-1]
    elif how == "two_d":
        y, mean, std = y[:, None], mean[:, None], std[:, None]
    elif how == "few_rows":
        y, mean, std = y[:3], mean[:3], std[:3]
    elif how == "overflow":
        y, mean, std = np.full_like(y, 1e300), np.full_like(y, -1e300), np.full_like(y, 1e-300)
    for fit in (calib.fit_std_scale, calib.conformal_scores):
        if how == "overflow" and fit is calib.conformal_scores:
            continue  # inf scores are honest there: the quantile is then inf
        with pytest.raises(ValueError):
            fit(y, mean, std)


# --- validation ------------------------------------------------------------------------------------------


@given(
    hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.bool_]),
        hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=4),
    )
)
def test_features_accepts_finite_real_arrays_and_returns_them_as_float32(x):
    # Beyond sqrt(float32 max) the squares overflow float32: refused too (training on them gives NaN).
    overflows = x.dtype.kind == "f" and not np.all(np.abs(x.astype(np.float64)) <= validation.SQUARE_LIMIT)
    if overflows:
        with pytest.raises(ValueError, match="x"):
            validation.features(x)
        return
    out = validation.features(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, x.astype(np.float32))


@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 3)), elements=st.floats(-1, 1)),
    st.sampled_from(["nan", "inf", "overflow", "complex", "strings", "one_d", "empty", "width"]),
    st.integers(0, 10**6),
)
def test_features_refuses_invalid_input_naming_the_problem(x, how, index):
    expected = {
        "nan": "NaN or inf",
        "inf": "NaN or inf",
        "overflow": "too large for float32",
        "complex": "real",
        "strings": "numeric",
        "one_d": "2-D",
        "empty": "empty",
        "width": "features",
    }[how]
    row = index % x.shape[0]
    if how in ("nan", "inf", "overflow"):
        x[row, 0] = {"nan": np.nan, "inf": np.inf, "overflow": 1e39}[how]
        expected += f".*row {row}"
    elif how == "complex":
        x = x + 1j
    elif how == "strings":
        x = np.full(x.shape, "abc")
    elif how == "one_d":
        x = x[:, 0]
    elif how == "empty":
        x = x[:0]
    with pytest.raises(ValueError, match=expected):
        validation.features(x, num_features=x.shape[1] + 1 if how == "width" else None)
    if how in ("nan", "inf", "overflow", "complex", "strings"):
        with pytest.raises(ValueError):
            validation.regression_targets(x, x.shape[0])


@given(st.lists(st.integers(0, 9), min_size=1, max_size=30), st.sampled_from([np.int64, np.int32, np.float64]))
def test_class_labels_are_int32_indices_and_count_the_classes(labels, dtype):
    y = np.array(labels, dtype)
    if max(labels) == 0:
        with pytest.raises(ValueError, match="2 classes"):
            validation.class_labels(y, len(y))
        return
    out, k = validation.class_labels(y, len(y))
    assert out.dtype == np.int32 and k == max(labels) + 1
    np.testing.assert_array_equal(out, labels)


@given(st.sampled_from([-1, 2**31, 2**62, 1e30, 0.5, np.nan, np.inf]), st.integers(0, 5))
def test_class_labels_refuse_labels_that_are_not_class_indices(bad, index):
    y = np.array([0, 1, 1, 0, 1, 0], np.float64 if isinstance(bad, float) else np.int64)
    y[index] = bad
    with pytest.raises(ValueError, match="y"):
        validation.class_labels(y, len(y))


def test_class_labels_refuse_an_empty_array():
    with pytest.raises(ValueError, match="empty"):
        validation.class_labels(np.zeros(0, int), 0)
