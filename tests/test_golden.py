"""Golden values: predictions and metrics on fixed inputs equal what main computed before the
distribution refactor (issue 13), to 1e-6 relative.

The values were recorded with the code of commit "Calibration-bin conventions ..." (main plus the issue-14
fixes to the Laplace quantile, the upper tail of intervals and nll_mixture_joint), before
deepens.distributions existed; on main itself only the interval bounds differ, by at most 1.2e-5 relative
(the upper bound is now found on the survival function, see test_mixture.py).
"""

import numpy as np
import pytest

from deepens import metrics
from deepens.heads import Categorical, Gaussian, Laplace, Point, StudentT
from deepens.prediction import ClassificationPrediction, RegressionPrediction


def _outputs(seed, shape):
    return np.random.RandomState(seed).normal(size=shape).astype(np.float32)


def _cases():
    rs = np.random.RandomState(7)
    y2 = rs.normal(size=(3, 2)).astype(np.float32)
    y1 = rs.normal(size=(3,)).astype(np.float32)
    return {
        "gaussian_t2": (Gaussian(), _outputs(1, (3, 3, 4)), False, y2),
        "laplace_t2": (Laplace(), _outputs(2, (3, 3, 4)), False, y2),
        "student_t_t2": (StudentT(), _outputs(3, (3, 3, 6)), False, y2),
        "gaussian_t1": (Gaussian(), _outputs(4, (2, 3, 2)), True, y1),
        "laplace_t1": (Laplace(), _outputs(5, (1, 3, 2)), True, y1),
        "point_t1": (Point(), _outputs(6, (3, 3, 1)), True, y1),
    }


def _close(got, expected):
    got = np.asarray(got, np.float64)
    expected = np.asarray(expected, np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(_cases()))
def test_regression_prediction_and_summary_equal_the_recorded_values(name):
    head, outputs, squeeze, y = _cases()[name]
    expected = GOLDEN[name]
    p = RegressionPrediction(head, outputs, squeeze)
    lower, upper = p.interval(0.9)
    got = {
        "mean": p.mean,
        "variance": p.variance,
        "lower": lower,
        "upper": upper,
        "cdf": p.cdf(y),
        "gaussian_nll": p.gaussian_nll(y),
    }
    if "nll" in expected:
        got["nll"] = p.nll(y)
    for key, value in got.items():
        _close(value, expected[key])
    summary = metrics.evaluate(p, y, target_shift=0.5, target_scale=2.0)
    assert set(summary) == set(expected["summary"])
    for key, value in expected["summary"].items():
        if value is None:
            assert not np.isfinite(summary[key])
        else:
            assert summary[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_classification_prediction_and_summary_equal_the_recorded_values():
    logits = _outputs(8, (3, 4, 3)) * 2
    labels = np.array([0, 2, 1, 1])
    expected = GOLDEN["categorical"]
    p = ClassificationPrediction(logits, Categorical())
    _close(p.probs, expected["probs"])
    _close(p.nll(labels), expected["nll"])
    summary = metrics.evaluate(p, labels, bins=3)
    assert summary == pytest.approx(expected["summary"], rel=1e-6, abs=1e-9)


GOLDEN = {
    "gaussian_t2": {
        "mean": [
            [0.734261453152, -0.559846222401],
            [0.141697138548, -0.883013904095],
            [-0.489584296942, 0.016715865582],
        ],
        "variance": [
            [1.516272068024, 0.109191723168],
            [1.699191451073, 1.824947357178],
            [1.856894493103, 1.174699783325],
        ],
        "lower": [
            [-1.786735296249, -1.10975933075],
            [-1.453856229782, -2.758584499359],
            [-2.619590759277, -1.565181255341],
        ],
        "upper": [
            [2.228058338165, -0.022909790277],
            [2.840750694275, 1.123500585556],
            [2.087679862976, 2.155926704407],
        ],
        "cdf": [[0.791113317013, 0.607518255711], [0.571574091911, 0.766793906689], [0.418434381485, 0.664683222771]],
        "gaussian_nll": [1.280604481697, 2.863523006439, 2.252054691315],
        "nll": [0.734417080879, 1.516932845116, 2.04185962677],
        "summary": {
            "nll": 1.672057773116,
            "rmse": 0.800347004709,
            "mae": 0.616165157201,
            "crps": 0.534160424462,
            "nll_mixture": 1.287732240821,
            "nll_mixture_joint": 2.662478030545,
            "miscalibration_area": 0.172887017385,
            "coverage_0.5": 1.0,
            "coverage_0.9": 1.0,
            "coverage_0.95": 1.0,
        },
    },
    "laplace_t2": {
        "mean": [
            [-0.238013476133, -0.470125406981],
            [-1.077927827835, 0.059919577092],
            [-1.456942558289, -0.317571759224],
        ],
        "variance": [
            [0.833179950714, 2.593093395233],
            [1.533445835114, 4.697546958923],
            [2.152104377747, 5.738367080688],
        ],
        "lower": [
            [-1.443819999695, -2.51562833786],
            [-3.141013145447, -2.984560966492],
            [-3.838039875031, -4.328054428101],
        ],
        "upper": [[1.313901424408, 2.136444091797], [0.626346111298, 3.159070014954], [0.850848793983, 3.339291572571]],
        "cdf": [[0.966639280319, 0.498942553997], [0.815726459026, 0.589898586273], [0.696227192879, 0.60732793808]],
        "gaussian_nll": [4.455021858215, 3.240300178528, 3.207267284393],
        "nll": [4.52253818512, 2.365463256836, 1.611396074295],
        "summary": {
            "nll": 2.184320687015,
            "rmse": 1.178564934387,
            "mae": 0.892568133771,
            "crps": 0.833672262104,
            "nll_mixture": 2.005229813328,
            "nll_mixture_joint": 3.930934776126,
            "miscalibration_area": 0.158256490226,
            "coverage_0.5": 0.833333333333,
            "coverage_0.9": 1.0,
            "coverage_0.95": 1.0,
        },
    },
    "student_t_t2": {
        "mean": [
            [0.615734636784, -0.56281119585],
            [-0.487599134445, -1.027711749077],
            [-0.207294553518, 1.139307260513],
        ],
        "variance": [
            [7.441524505615, 1.263074159622],
            [3.455664157867, 1.173551082611],
            [4.352510452271, 3.537899494171],
        ],
        "lower": [
            [-2.858433246613, -2.237986087799],
            [-2.683934211731, -2.478225708008],
            [-3.904755592346, -1.822134256363],
        ],
        "upper": [[3.024767398834, 0.702864527702], [1.409693002701, 0.424901604652], [1.991027832031, 3.005558490753]],
        "cdf": [[0.776023387909, 0.534684360027], [0.710959851742, 0.948499321938], [0.298843234777, 0.21114563942]],
        "gaussian_nll": [3.039520978928, 3.454715490341, 3.42666220665],
        "nll": [3.826399326324, 3.473603725433, 4.186787605286],
        "summary": {
            "nll": 2.262771539015,
            "rmse": 1.449831879101,
            "mae": 1.053744939673,
            "crps": 1.047525480707,
            "nll_mixture": 2.30755276678,
            "nll_mixture_joint": 4.491149093692,
            "miscalibration_area": 0.084274908229,
            "coverage_0.5": 0.666666666667,
            "coverage_0.9": 1.0,
            "coverage_0.95": 1.0,
        },
    },
    "gaussian_t1": {
        "mean": [-0.298572510481, -0.331829428673, 0.100184082985],
        "variance": [1.133517146111, 1.082809925079, 0.497549563646],
        "lower": [-2.068683624268, -2.404224395752, -0.683636546135],
        "upper": [1.43433880806, 0.79104924202, 1.451834917068],
        "cdf": [0.606310904026, 0.122467800975, 0.865148723125],
        "gaussian_nll": [1.020689487457, 1.893614292145, 1.41581261158],
        "nll": [1.013651847839, 1.944812893867, 1.369812488556],
        "summary": {
            "nll": 1.636073131466,
            "rmse": 0.938336618346,
            "mae": 0.668203286652,
            "crps": 0.741150556653,
            "nll_mixture": 2.035161506045,
            "miscalibration_area": 0.122101387963,
            "coverage_0.5": 0.666666666667,
            "coverage_0.9": 1.0,
            "coverage_0.95": 1.0,
        },
    },
    "laplace_t1": {
        "mean": [0.44122749567, 2.430771112442, 0.1096098423],
        "variance": [0.586088299751, 0.661307573318, 6.261178970337],
        "lower": [-0.805243611336, 1.106727004051, -3.964462757111],
        "upper": [1.687698602676, 3.754815101624, 4.183682441711],
        "cdf": [0.220940008759, 0.000345004548, 0.700714707375],
        "gaussian_nll": [0.818552732468, 13.95742225647, 1.901969075203],
        "nll": [0.896148085594, 7.418611049652, 1.776968717575],
        "summary": {
            "nll": 5.087209853288,
            "rmse": 4.189031654245,
            "mae": 2.932683392292,
            "crps": 2.675352260279,
            "nll_mixture": 3.704091835812,
            "miscalibration_area": 0.273066892381,
            "coverage_0.5": 0.333333333333,
            "coverage_0.9": 0.666666666667,
            "coverage_0.95": 0.666666666667,
        },
    },
    "point_t1": {
        "mean": [-0.027937253937, -1.090623378754, 0.923454463482],
        "variance": [0.724502146244, 1.813208460808, 0.33681499958],
        "lower": [-0.899091720581, -2.486780643463, 0.21782079339],
        "upper": [1.127063751221, 0.72900390625, 1.63929104805],
        "cdf": [0.666666686535, 0.333333343267, 0.666666686535],
        "gaussian_nll": [0.758308053017, 1.338103294373, 0.388001650572],
        "summary": {
            "nll": 1.706280559169,
            "rmse": 0.810420901039,
            "mae": 0.615914805656,
            "crps": 0.738584205864,
            "nll_mixture": None,
            "miscalibration_area": None,
            "coverage_0.5": None,
            "coverage_0.9": None,
            "coverage_0.95": None,
        },
    },
    "categorical": {
        "probs": [
            [0.085332334042, 0.436167299747, 0.478500366211],
            [0.29833894968, 0.328506052494, 0.37315505743],
            [0.41113743186, 0.255041390657, 0.333821237087],
            [0.254086196423, 0.181591778994, 0.564322054386],
        ],
        "nll": [2.461201906204, 0.985761165619, 1.366329431534, 1.70599424839],
        "summary": {
            "accuracy": 0.25,
            "error": 0.75,
            "nll": 1.629821687937,
            "brier_summed": 0.93348087969,
            "brier_per_class": 0.31116029323,
            "ece": 0.206778727472,
            "mce": 0.206778727472,
            "ece_quantile": 0.314632482827,
            "mce_quantile": 0.564322054386,
        },
    },
}
