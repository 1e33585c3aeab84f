"""Student-t head and metrics: against scipy.stats.t, Monte Carlo, and through fit / predict / save / load."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import deepens
from deepens import metrics, mixture
from deepens.heads import StudentT, get_head
from deepens.metrics import regression
from deepens.metrics import student_t as t_metrics


def _outputs(rng, shape=(6, 2)):
    return jnp.asarray(rng.normal(size=shape[:-1] + (3 * shape[-1],)), jnp.float32)


def test_parameterisation_and_scipy():
    rng = np.random.default_rng(0)
    head = StudentT()
    outputs = _outputs(rng)
    loc, scale, df = (np.asarray(a, np.float64) for a in head.split(outputs))
    assert np.all(df > 2.1 - 1e-6)
    np.testing.assert_allclose(df, 2.1 + np.log1p(np.exp(np.asarray(outputs[:, 4:], np.float64))), rtol=1e-5)
    y = rng.normal(size=loc.shape) * 2
    dist = stats.t(df, loc=loc, scale=scale)
    np.testing.assert_allclose(
        head.log_prob(outputs, jnp.asarray(y, jnp.float32)), dist.logpdf(y), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(head.nll(outputs, jnp.asarray(y, jnp.float32)), -dist.logpdf(y).sum(-1), rtol=1e-4)
    np.testing.assert_allclose(head.mean(outputs), dist.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.variance(outputs), dist.var(), rtol=1e-4)
    np.testing.assert_allclose(head.cdf(outputs, jnp.asarray(y, jnp.float32)), dist.cdf(y), atol=2e-5)
    for p in (0.001, 0.05, 0.5, 0.9, 0.999):
        np.testing.assert_allclose(head.quantile(outputs, p), dist.ppf(p), rtol=2e-4, atol=2e-4)
    assert get_head("student_t") == head
    with pytest.raises(ValueError, match="multiple of 3"):
        head.split(jnp.zeros((2, 4)))


def test_kl_is_moment_matched_gaussian_kl_and_zero_on_itself():
    rng = np.random.default_rng(1)
    head = StudentT()
    p, q = _outputs(rng), _outputs(rng)
    np.testing.assert_allclose(head.kl(p, p), 0.0, atol=1e-6)
    mp, vp, mq, vq = (
        np.asarray(a, np.float64) for a in (head.mean(p), head.variance(p), head.mean(q), head.variance(q))
    )
    expected = np.sum(np.log(np.sqrt(vq / vp)) + (vp + (mp - mq) ** 2) / (2 * vq) - 0.5, axis=-1)
    np.testing.assert_allclose(head.kl(p, q), expected, rtol=1e-4)


def test_mixture_of_one_member_is_the_member():
    rng = np.random.default_rng(2)
    head = StudentT()
    outputs = _outputs(rng)
    y = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    np.testing.assert_allclose(mixture.mixture_cdf(head, outputs[None], y), head.cdf(outputs, y), atol=1e-6)
    np.testing.assert_allclose(
        mixture.mixture_quantile(head, outputs[None], 0.9), head.quantile(outputs, 0.9), atol=1e-4
    )
    loc, scale, df = (np.asarray(a, np.float64) for a in head.split(outputs))
    yy = np.asarray(y, np.float64)
    np.testing.assert_allclose(
        regression.mixture_nll(
            yy, member_locs=loc[None], member_scales=scale[None], family="student_t", member_dfs=df[None]
        ),
        -stats.t.logpdf(yy, df, loc, scale),
    )
    np.testing.assert_allclose(
        regression.mixture_cdf(
            yy, member_locs=loc[None], member_scales=scale[None], family="student_t", member_dfs=df[None]
        ),
        stats.t.cdf(yy, df, loc, scale),
    )


def test_crps_limits_and_monte_carlo():
    rng = np.random.default_rng(3)
    y = np.array([0.3, -2.0, 5.0])
    # df -> infinity is the Gaussian
    big = np.full((1, 3), 1e5)
    np.testing.assert_allclose(
        t_metrics.crps_mixture(y, np.zeros((1, 3)), np.ones((1, 3)), big),
        regression.crps_gaussian(y, mean=np.zeros(3), std=np.ones(3)),
        rtol=1e-3,
    )
    # a heavy-tailed mixture of 3 members against E|X - y| - E|X - X'| / 2 by Monte Carlo
    locs = np.array([[0.0], [1.5], [-1.0]]) * np.ones((3, 3))
    scales = np.array([[1.0], [0.5], [2.0]]) * np.ones((3, 3))
    dfs = np.array([[2.5], [4.0], [10.0]]) * np.ones((3, 3))
    n = 400_000
    member = rng.integers(0, 3, size=(2, n))
    draws = locs[member, 0] + scales[member, 0] * stats.t.rvs(dfs[member, 0], random_state=rng)
    expected = np.mean(np.abs(draws[0][:, None] - y[None]), axis=0) - 0.5 * np.mean(np.abs(draws[0] - draws[1]))
    got = regression.crps_mixture(y, member_locs=locs, member_scales=scales, family="student_t", member_dfs=dfs)
    np.testing.assert_allclose(got, expected, rtol=0.01)
    with pytest.raises(ValueError, match="member_dfs"):
        regression.crps_mixture(y, member_locs=locs, member_scales=scales, family="student_t")
    with pytest.raises(ValueError, match="> 2"):
        regression.crps_mixture(y, member_locs=locs, member_scales=scales, family="student_t", member_dfs=dfs - 1.0)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(4)
    x = rng.uniform(-2, 2, size=(80, 1)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.standard_t(3, size=80)).astype(np.float32)
    ensemble = deepens.fit(
        x, y, head="student_t", hidden=(16,), members=3, epochs=80, learning_rate=0.02, progress=False
    )
    return x, y, ensemble


def test_fit_predict_evaluate(fitted):
    x, y, ensemble = fitted
    history = np.asarray(ensemble.history)
    assert np.all(np.isfinite(history)) and history[-1].mean() < history[0].mean()
    prediction = ensemble.predict(x)
    assert prediction.mean.shape == (80,) and np.all(np.asarray(prediction.variance) > 0)
    lower, upper = prediction.interval(0.9)
    np.testing.assert_allclose(prediction.cdf(upper) - prediction.cdf(lower), 0.9, atol=1e-3)
    summary = metrics.evaluate(prediction, y)
    np.testing.assert_allclose(summary["nll_mixture"], np.mean(np.asarray(prediction.nll(y))), rtol=1e-4)
    assert np.isfinite(summary["crps"]) and 0.0 <= summary["coverage_0.9"] <= 1.0


def test_save_load_identical(fitted, tmp_path):
    x, _, ensemble = fitted
    loaded = deepens.load(deepens.save(ensemble, tmp_path / "t"))
    assert loaded.head == StudentT()
    a, b = ensemble.predict(x), loaded.predict(x)
    np.testing.assert_array_equal(a.member_outputs, b.member_outputs)
    np.testing.assert_array_equal(a.interval(0.8)[0], b.interval(0.8)[0])


def test_estimator_and_cli(tmp_path, capsys):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 2))
    y = x[:, 0] + 0.2 * rng.standard_t(4, size=60)
    estimator = deepens.DeepEnsembleRegressor(
        head="student_t", members=2, epochs=5, hidden_layer_sizes=(8,), random_state=0, verbose=False
    ).fit(x, y)
    mean, std = estimator.predict(x, return_std=True)
    assert mean.shape == (60,) and np.all(std > 0)
    path = deepens.save(estimator, tmp_path / "estimator")
    np.testing.assert_array_equal(deepens.load(path).predict(x), mean)

    import pandas as pd

    from deepens import cli

    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "target": y})
    frame.to_csv(tmp_path / "t.csv", index=False)
    argv = [
        "train",
        tmp_path / "t.csv",
        "--target",
        "target",
        "-o",
        tmp_path / "cli_model",
        "--head",
        "student_t",
        "--members",
        "2",
        "--hidden",
        "8",
        "--epochs",
        "4",
        "--quiet",
    ]
    assert cli.main([str(a) for a in argv]) == 0
    assert deepens.load(tmp_path / "cli_model").head == "student_t"
    argv = ["predict", tmp_path / "cli_model", tmp_path / "t.csv", "-o", tmp_path / "p.csv"]
    assert cli.main([str(a) for a in argv]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == 60 and np.all(table["lower_90"] < table["upper_90"])
    assert cli.main([str(a) for a in ["evaluate", tmp_path / "cli_model", tmp_path / "t.csv"]]) == 0


def test_vat_training_with_the_approximate_kl():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(32, 2)).astype(np.float32)
    y = x[:, :1] + 0.1
    ensemble = deepens.fit(x, y, head="student_t", adversarial="vat", hidden=(8,), members=2, epochs=3, progress=False)
    assert np.all(np.isfinite(np.asarray(ensemble.history)))
