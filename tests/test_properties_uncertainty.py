"""Property-based tests of deepens.uncertainty: the decomposition's identities and bounds on drawn member
probabilities (ties, exact zeros from huge logits, one member, identical members, float32 and float64),
and a ValueError, never another exception, for invalid input."""

import math

import jax
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deepens.uncertainty import categorical_uncertainty, entropy, variance_uncertainty

DTYPES = st.sampled_from([np.float32, np.float64])


@st.composite
def member_probs(draw, max_members=6, max_classes=7):
    """``(M, N, K)`` member probabilities from logits at scales from ties (0) to one-hot (1e4)."""
    # Few distinct shapes: each new one compiles a small JAX program.
    m = draw(st.sampled_from([1, 2, 5][: 1 + (max_members > 1) * 2]))
    n = draw(st.sampled_from([1, 3]))
    k = draw(st.sampled_from([2, 3, 7]))
    dtype = draw(DTYPES)
    scale = draw(st.sampled_from([0.0, 1e-6, 1.0, 10.0, 1e4]))
    logits = draw(hnp.arrays(np.float64, (m, n, k), elements=st.floats(-1, 1, width=32)))
    if draw(st.booleans()):
        logits = np.round(logits)  # ties between classes
    if draw(st.booleans()):
        logits = np.broadcast_to(logits[:1], logits.shape)  # identical members
    z = logits * scale
    probs = np.exp(z - z.max(-1, keepdims=True))  # numpy: no JAX program to compile per drawn shape
    return (probs / probs.sum(-1, keepdims=True)).astype(dtype)


def _tolerance(dtype):
    return 2e-5 if dtype == np.float32 else 1e-6  # deepens computes in float32 (no jax x64)


@given(member_probs())
def test_total_is_data_plus_knowledge_and_each_is_bounded(p):
    m, _, k = p.shape
    u = categorical_uncertainty(p)
    total, data, knowledge = (np.asarray(v, np.float64) for v in u)
    tol = _tolerance(p.dtype) * max(1.0, math.log(k))
    assert all(np.all(np.isfinite(v)) for v in (total, data, knowledge))
    np.testing.assert_allclose(total, data + knowledge, atol=tol)
    assert np.all(knowledge >= 0)
    assert np.all(data >= -tol) and np.all(total <= math.log(k) + tol)
    # The mutual information is at most log M (the members' label carries at most log M nats).
    assert np.all(knowledge <= math.log(m) + tol)
    # Against a float64 reference of the definitions.
    p64 = p.astype(np.float64)
    h = lambda q: -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0), axis=-1)  # noqa: E731
    np.testing.assert_allclose(total, h(p64.mean(0)), atol=tol)
    np.testing.assert_allclose(data, h(p64).mean(0), atol=tol)


@given(member_probs(), st.randoms(use_true_random=False))
def test_decomposition_is_invariant_to_the_order_of_members_and_classes(p, random):
    members = list(range(p.shape[0]))
    classes = list(range(p.shape[-1]))
    random.shuffle(members)
    random.shuffle(classes)
    a = categorical_uncertainty(p)
    b = categorical_uncertainty(p[members][..., classes])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=_tolerance(p.dtype))


@given(member_probs(max_members=1), st.integers(1, 5))
def test_identical_members_have_no_knowledge_and_reduce_to_one_member(p, copies):
    one = categorical_uncertainty(p)
    many = categorical_uncertainty(np.repeat(p, copies, axis=0))
    np.testing.assert_allclose(one.knowledge, 0.0, atol=_tolerance(p.dtype))
    np.testing.assert_allclose(one.total, entropy(p[0]), atol=_tolerance(p.dtype))
    for x, y in zip(one, many):
        np.testing.assert_allclose(x, y, atol=_tolerance(p.dtype))


@given(st.sampled_from([1, 2, 3, 10, 1000]), DTYPES)
def test_entropy_of_the_uniform_distribution_is_log_k(k, dtype):
    np.testing.assert_allclose(entropy(np.full(k, 1.0 / k, dtype)), math.log(k), rtol=1e-5, atol=1e-6)


# --- invalid input: a ValueError, never another exception ----------------------------------------------

CORRUPTIONS = (
    "nan",
    "inf",
    "-inf",
    "negative",
    "above_one",
    "unnormalised",
    "no_member_axis",
    "no_classes",
    "no_members",
    "strings",
)


def _corrupt(p, how, index):
    p = np.ascontiguousarray(p, np.float64)
    i = index % p.size
    if how in ("nan", "inf", "-inf"):
        p.flat[i] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[how]
    elif how == "negative":
        p.flat[i] = -0.25
    elif how == "above_one":
        p.flat[i] = 1.25
    elif how == "unnormalised":
        p = p * 0.5
    elif how == "no_member_axis":
        p = p[0, 0]
    elif how == "no_classes":
        p = p[..., :0]
    elif how == "no_members":
        p = p[:0]
    elif how == "strings":
        p = p.astype(str)
    return p


@given(member_probs(), st.sampled_from(CORRUPTIONS), st.integers(0, 10**6), st.booleans())
@example(np.array([[[0.2, 0.3, 0.5]], [[0.2, 0.3, 0.5]]]), "nan", 0, False)  # issue 14 item 4: [NaN, .5, .5]
def test_invalid_member_probabilities_raise_a_value_error(p, how, index, on_device):
    bad = _corrupt(p, how, index)
    if on_device and how != "strings":
        bad = jax.numpy.asarray(bad)
    with pytest.raises(ValueError, match="categorical_uncertainty"):
        categorical_uncertainty(bad)
    if how not in ("no_member_axis", "no_members"):  # those are valid shapes for entropy
        with pytest.raises(ValueError, match="entropy"):
            entropy(bad)


@st.composite
def moments(draw):
    shape = (draw(st.sampled_from([1, 2, 5])),) + draw(st.sampled_from([(), (3,), (2, 2)]))
    dtype = draw(DTYPES)
    scale = draw(st.sampled_from([0.0, 1e-6, 1.0, 1e6]))
    means = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1))) * scale
    if draw(st.booleans()):
        means = np.broadcast_to(means[:1], shape)  # identical members: no epistemic variance
    variances = draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1))) * scale**2
    return means.astype(dtype), variances.astype(dtype)


@given(moments())
def test_mixture_variance_is_aleatoric_plus_epistemic(mv):
    means, variances = mv
    u = variance_uncertainty(means, variances)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in u)
    m64, v64 = means.astype(np.float64), variances.astype(np.float64)
    reference = v64.mean(0) + (m64 * m64).mean(0) - m64.mean(0) ** 2  # E[var] + E[mu^2] - E[mu]^2
    scale = np.max(np.abs(m64)) ** 2 + np.max(v64, initial=0.0) + 1e-30
    np.testing.assert_allclose(np.asarray(u.total, np.float64), reference, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(u.total, np.asarray(u.aleatoric) + np.asarray(u.epistemic), rtol=1e-6, atol=1e-7 * scale)
    assert np.all(np.asarray(u.epistemic) >= 0) and np.all(np.asarray(u.aleatoric) >= 0)
    if means.shape[0] == 1 or np.all(means == means[:1]):
        np.testing.assert_allclose(u.epistemic, 0.0, atol=1e-6 * scale)


@given(moments(), st.sampled_from(["nan", "inf", "negative", "shape", "scalar"]), st.integers(0, 10**6))
def test_invalid_moments_raise_a_value_error(mv, how, index):
    means, variances = (np.array(a, np.float64) for a in mv)
    if how == "shape":
        variances = variances[..., None]
    elif how == "scalar":
        means, variances = means.reshape(-1)[0], variances.reshape(-1)[0]
    else:
        target = means if how != "negative" else variances
        target.flat[index % target.size] = {"nan": np.nan, "inf": np.inf, "negative": -1.0}[how]
    with pytest.raises(ValueError, match="variance_uncertainty"):
        variance_uncertainty(means, variances)
