import math

import numpy as np
import pytest
from scipy import integrate, stats

from deepens import metrics

SQRT_2PI = math.sqrt(2 * math.pi)


# --- likelihoods --------------------------------------------------------------------------------------


def test_gaussian_nll_hand_value_and_scipy(rng):
    assert metrics.gaussian_nll([0.0], mean=[0.0], std=[1.0])[0] == pytest.approx(0.5 * math.log(2 * math.pi))
    assert metrics.gaussian_nll([3.0], mean=[1.0], std=[2.0])[0] == pytest.approx(math.log(2 * SQRT_2PI) + 0.5)
    y, mu, sd = rng.normal(size=50), rng.normal(size=50), rng.uniform(0.1, 3, 50)
    np.testing.assert_allclose(metrics.gaussian_nll(y, mean=mu, std=sd), -stats.norm.logpdf(y, mu, sd), rtol=1e-12)


def test_nll_on_the_original_scale_gains_log_std_y(rng):
    # The UCI trap: a model of standardised targets must be scored in original units.
    y, mu, sd = rng.normal(size=20), rng.normal(size=20), rng.uniform(0.5, 2, 20)
    shift, scale = 22.5, 9.2
    original = metrics.gaussian_nll(y * scale + shift, mean=mu * scale + shift, std=sd * scale)
    np.testing.assert_allclose(original, metrics.gaussian_nll(y, mean=mu, std=sd) + math.log(scale), rtol=1e-12)


def test_laplace_nll_matches_scipy(rng):
    y, loc, b = rng.normal(size=30), rng.normal(size=30), rng.uniform(0.1, 2, 30)
    np.testing.assert_allclose(metrics.laplace_nll(y, loc=loc, scale=b), -stats.laplace.logpdf(y, loc, b), rtol=1e-12)


def test_mixture_nll_hand_value_one_member_and_scipy(rng):
    # Two unit Gaussians at -1 and +1: the mixture density at 0 is phi(1).
    value = metrics.mixture_nll([0.0], member_locs=[[-1.0], [1.0]], member_scales=[[1.0], [1.0]])[0]
    assert value == pytest.approx(0.5 * math.log(2 * math.pi) + 0.5)
    y, mu, sd = rng.normal(size=10), rng.normal(size=10), rng.uniform(0.5, 2, 10)
    np.testing.assert_allclose(
        metrics.mixture_nll(y, member_locs=mu[None], member_scales=sd[None]),
        metrics.gaussian_nll(y, mean=mu, std=sd),
        rtol=1e-12,
    )
    locs, scales = rng.normal(size=(4, 10)), rng.uniform(0.2, 1, (4, 10))
    for family, dist in (("gaussian", stats.norm), ("laplace", stats.laplace)):
        reference = -np.log(np.mean(dist.pdf(y[None], locs, scales), axis=0))
        np.testing.assert_allclose(
            metrics.mixture_nll(y, member_locs=locs, member_scales=scales, family=family), reference, rtol=1e-10
        )


def test_exact_mixture_beats_moment_matching_on_a_bimodal_ensemble():
    # Members far apart: at a member's mean the exact mixture has high density, the matched Gaussian low.
    y, locs, scales = np.array([5.0]), np.array([[-5.0], [5.0]]), np.array([[0.5], [0.5]])
    matched_sd = np.sqrt(np.mean(scales**2 + locs**2, axis=0) - np.mean(locs, axis=0) ** 2)
    assert (
        metrics.mixture_nll(y, member_locs=locs, member_scales=scales)[0]
        < metrics.gaussian_nll(y, mean=np.mean(locs, 0), std=matched_sd)[0] - 1.0
    )


def test_rmse_and_mae_hand_values():
    y, mean = np.zeros(4), np.array([1.0, -1.0, 3.0, -3.0])
    assert metrics.rmse(y, mean=mean) == pytest.approx(math.sqrt(5.0))
    assert metrics.mae(y, mean=mean) == pytest.approx(2.0)
    np.testing.assert_array_equal(metrics.squared_error(y, mean=mean), [1, 1, 9, 9])


# --- CRPS ---------------------------------------------------------------------------------------------


def _crps_by_quadrature(cdf, y: float, low: float, high: float) -> float:
    below, _ = integrate.quad(lambda t: cdf(t) ** 2, low, y, limit=200)
    above, _ = integrate.quad(lambda t: (1 - cdf(t)) ** 2, y, high, limit=200)
    return below + above


def test_crps_gaussian_hand_value_and_quadrature(rng):
    # Standard normal at its mean: 2 phi(0) - 1/sqrt(pi).
    assert metrics.crps_gaussian([0.0], mean=[0.0], std=[1.0])[0] == pytest.approx(
        2 / SQRT_2PI - 1 / math.sqrt(math.pi)
    )
    for _ in range(3):
        y, mu, sd = rng.normal(), rng.normal(), rng.uniform(0.3, 2)
        expected = _crps_by_quadrature(lambda t: stats.norm.cdf(t, mu, sd), y, mu - 40, mu + 40)
        assert metrics.crps_gaussian([y], mean=[mu], std=[sd])[0] == pytest.approx(expected, rel=1e-6)


def test_crps_of_a_point_forecast_is_the_absolute_error():
    np.testing.assert_allclose(metrics.crps_gaussian([1.0, -2.0], mean=[0.0, 0.5], std=[0.0, 0.0]), [1.0, 2.5])


def test_crps_laplace_hand_value_and_quadrature(rng):
    assert metrics.crps_laplace([1.0], loc=[1.0], scale=[2.0])[0] == pytest.approx(0.5)  # b / 4 at the location
    for _ in range(3):
        y, loc, b = rng.normal(), rng.normal(), rng.uniform(0.3, 2)
        expected = _crps_by_quadrature(lambda t: stats.laplace.cdf(t, loc, b), y, loc - 60, loc + 60)
        assert metrics.crps_laplace([y], loc=[loc], scale=[b])[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("family, dist", [("gaussian", stats.norm), ("laplace", stats.laplace)])
def test_crps_mixture_matches_quadrature(family, dist, rng):
    # Scales include an exact tie and a near tie: the Laplace pair term's k -> 0 branch and its neighbour.
    locs = np.array([-1.0, 0.3, 2.0, 0.5])
    scales = np.array([0.7, 0.7, 0.7 * (1 + 1e-9), 1.6])
    for y in (-2.0, 0.4, 3.0):
        cdf = lambda t: np.mean(dist.cdf(t, locs, scales))  # noqa: E731
        expected = _crps_by_quadrature(cdf, y, -60, 60)
        got = metrics.crps_mixture([y], member_locs=locs[:, None], member_scales=scales[:, None], family=family)[0]
        assert got == pytest.approx(expected, rel=1e-6)


def test_crps_mixture_of_one_member_is_the_single_crps(rng):
    y, loc, scale = rng.normal(size=20), rng.normal(size=20), rng.uniform(0.2, 2, 20)
    for family, single in (
        ("gaussian", metrics.crps_gaussian(y, mean=loc, std=scale)),
        ("laplace", metrics.crps_laplace(y, loc=loc, scale=scale)),
    ):
        mixture = metrics.crps_mixture(y, member_locs=loc[None], member_scales=scale[None], family=family)
        np.testing.assert_allclose(mixture, single, rtol=1e-12)


def test_crps_mixture_of_points_is_the_energy_form():
    # Point members 0 and 2, y = 1: E|X - y| = 1, E|X - X'| = (0 + 2 + 2 + 0) / 4 = 1, CRPS = 1 - 0.5.
    assert metrics.crps_mixture([1.0], member_locs=[[0.0], [2.0]], member_scales=[[0.0], [0.0]])[0] == pytest.approx(
        0.5
    )


# --- PIT, coverage, calibration -----------------------------------------------------------------------


def test_mixture_cdf_matches_scipy_and_gaussian_cdf(rng):
    y, locs, scales = rng.normal(size=8), rng.normal(size=(3, 8)), rng.uniform(0.3, 1, (3, 8))
    for family, dist in (("gaussian", stats.norm), ("laplace", stats.laplace)):
        expected = np.mean(dist.cdf(y[None], locs, scales), axis=0)
        np.testing.assert_allclose(
            metrics.mixture_cdf(y, member_locs=locs, member_scales=scales, family=family), expected, rtol=1e-12
        )
    expected = stats.norm.cdf(y, locs[0], scales[0])
    np.testing.assert_allclose(metrics.gaussian_cdf(y, mean=locs[0], std=scales[0]), expected, rtol=1e-12)


def test_pit_of_a_correct_forecaster_is_uniform_and_calibrated(rng):
    mu, sd = rng.normal(size=4000), rng.uniform(0.5, 2, 4000)
    y = rng.normal(mu, sd)
    u = metrics.pit(y, member_locs=mu[None], member_scales=sd[None])
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert metrics.miscalibration_area(u) < 0.02
    np.testing.assert_allclose(metrics.central_coverage(u, [0.5, 0.9]), [0.5, 0.9], atol=0.03)
    # An overconfident forecaster (sd halved) covers too little and is miscalibrated.
    narrow = metrics.pit(y, member_locs=mu[None], member_scales=sd[None] / 2)
    assert metrics.central_coverage(narrow, [0.9])[0] < 0.7
    assert metrics.miscalibration_area(narrow, kind="central") > 0.1


def test_central_coverage_hand_values_and_agreement_with_quantile_intervals(rng):
    np.testing.assert_allclose(metrics.central_coverage([0.5, 0.03, 0.97, 0.2], [0.5, 0.9, 0.95]), [0.25, 0.5, 1.0])
    mu, sd = np.zeros(500), np.ones(500)
    y = rng.standard_t(3, 500)
    for level in (0.5, 0.8, 0.95):
        lower, upper = stats.norm.interval(level, mu, sd)
        expected = metrics.interval_coverage(y, lower=lower, upper=upper)
        assert metrics.central_coverage(metrics.gaussian_cdf(y, mean=mu, std=sd), [level])[0] == pytest.approx(expected)


def test_interval_coverage_counts_the_ends_as_inside():
    assert metrics.interval_coverage([0.0, 1.0, 2.0, 3.0], lower=[0.0] * 4, upper=[2.0] * 4) == 0.75


def test_calibration_curve_hand_values():
    curve = metrics.calibration_curve([0.1, 0.4, 0.4, 0.9], [0.0, 0.4, 0.5, 1.0])
    np.testing.assert_allclose(curve.observed, [0.0, 0.75, 0.75, 1.0])
    central = metrics.calibration_curve([0.5, 0.05], [0.0, 0.5, 0.9, 1.0], kind="central")
    np.testing.assert_allclose(central.observed, [0.5, 0.5, 1.0, 1.0])  # |2u - 1| = 0 and 0.9


def test_miscalibration_area_exact_values(rng):
    assert metrics.miscalibration_area([0.5, 0.5]) == pytest.approx(0.25)  # F steps at 1/2
    assert metrics.miscalibration_area([0.0, 0.0]) == pytest.approx(0.5)
    assert metrics.miscalibration_area([1.0]) == pytest.approx(0.5)
    assert metrics.miscalibration_area([0.5], kind="central") == pytest.approx(0.5)
    n = 10
    assert metrics.miscalibration_area((np.arange(n) + 0.5) / n) == pytest.approx(1 / (4 * n))
    u = rng.uniform(size=7) ** 2
    grid = np.linspace(0, 1, 200001)
    reference = np.mean(np.abs(np.mean(u[None, :] <= grid[:, None], axis=1) - grid))
    assert metrics.miscalibration_area(u) == pytest.approx(reference, abs=1e-4)


# --- summaries ----------------------------------------------------------------------------------------


def test_regression_summary_matches_the_individual_metrics(rng):
    y, locs, scales = rng.normal(size=30), rng.normal(size=(5, 30)), rng.uniform(0.5, 1.5, (5, 30))
    s = metrics.regression_summary(y, member_locs=locs, member_scales=scales, levels=(0.9,))
    mean = locs.mean(0)
    sd = np.sqrt(np.mean(scales**2 + locs**2, 0) - mean**2)
    assert s["nll"] == pytest.approx(np.mean(metrics.gaussian_nll(y, mean=mean, std=sd)))
    assert s["nll_mixture"] == pytest.approx(np.mean(metrics.mixture_nll(y, member_locs=locs, member_scales=scales)))
    assert s["crps"] == pytest.approx(np.mean(metrics.crps_mixture(y, member_locs=locs, member_scales=scales)))
    assert s["rmse"] == pytest.approx(metrics.rmse(y, mean=mean))
    assert s["coverage_0.9"] == pytest.approx(
        metrics.central_coverage(metrics.pit(y, member_locs=locs, member_scales=scales), [0.9])[0]
    )


def test_regression_summary_of_point_members_uses_their_spread():
    y, locs = np.array([0.0, 1.0]), np.array([[0.0, 1.0], [2.0, 3.0]])
    s = metrics.regression_summary(y, member_locs=locs, member_scales=np.zeros_like(locs))
    # Mean (1, 2), spread variance 1: NLL of N(1, 1) at 0 and of N(2, 1) at 1.
    assert s["nll"] == pytest.approx(0.5 * math.log(2 * math.pi) + 0.5)
    assert math.isnan(s["nll_mixture"]) and math.isnan(s["coverage_0.95"])


def test_evaluate_a_trained_ensemble_on_the_original_scale(cubic_data, small_regression_ensemble):
    x, y = cubic_data
    prediction = small_regression_ensemble.predict(x)
    plain = metrics.evaluate(prediction, y)
    assert plain["nll"] == pytest.approx(float(np.mean(prediction.gaussian_nll(y))), abs=1e-4)
    assert plain["nll_mixture"] == pytest.approx(float(np.mean(prediction.nll(y))), abs=1e-4)
    shift, scale = 10.0, 30.0
    original = metrics.evaluate(prediction, y * scale + shift, target_shift=shift, target_scale=scale)
    assert original["nll"] == pytest.approx(plain["nll"] + math.log(scale), abs=1e-5)
    assert original["rmse"] == pytest.approx(plain["rmse"] * scale, rel=1e-6)
    assert original["crps"] == pytest.approx(plain["crps"] * scale, rel=1e-6)
    assert original["coverage_0.95"] == plain["coverage_0.95"]


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.gaussian_nll([0.0, 1.0], mean=[0.0], std=[1.0]), "same shape"),
        (lambda: metrics.gaussian_nll([0.0], mean=[0.0], std=[0.0]), "std must be > 0"),
        (lambda: metrics.gaussian_nll([np.nan], mean=[0.0], std=[1.0]), "NaN"),
        (lambda: metrics.rmse([], mean=[]), "empty"),
        (lambda: metrics.mixture_nll([0.0, 1.0], member_locs=[0.0, 1.0], member_scales=[1.0, 1.0]), "members"),
        (lambda: metrics.mixture_nll([0.0], member_locs=[[0.0]], member_scales=[[1.0]], family="cauchy"), "family"),
        (
            lambda: metrics.crps_mixture([0.0], member_locs=[[0.0]], member_scales=[[0.0]], family="laplace"),
            "member_scales must be > 0",
        ),
        (lambda: metrics.central_coverage([1.5]), "pit_values must lie in"),
        (lambda: metrics.central_coverage([0.5], [2.0]), "levels"),
        (lambda: metrics.calibration_curve([0.5], kind="other"), "kind"),
        (lambda: metrics.interval_coverage([0.0], lower=[1.0], upper=[0.0]), "lower must not exceed upper"),
        (lambda: metrics.gaussian_nll(["a"], mean=[0.0], std=[1.0]), "numeric"),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
