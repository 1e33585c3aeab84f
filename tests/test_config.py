"""One set of training settings: TrainConfig's defaults are those of fit, the estimators and ``deepens train``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import deepens
from deepens import cli
from deepens.config import DEFAULTS, TrainConfig

SHARED = (
    "members",
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "clip_norm",
    "eps",
    "method",
    "input_repetition",
    "batch_repetition",
)


@pytest.mark.parametrize("estimator", [deepens.DeepEnsembleRegressor, deepens.DeepEnsembleClassifier])
def test_estimator_defaults_are_the_config_defaults(estimator) -> None:
    params = estimator().get_params()
    for name in SHARED:
        assert params[name] == getattr(DEFAULTS, name), name
    assert params["adversarial"] == DEFAULTS.adversarial


def test_cli_train_defaults_are_the_config_defaults() -> None:
    args = cli.build_parser().parse_args(["train", "data.csv", "--target", "y", "-o", "m"])
    for name in SHARED:
        assert getattr(args, name) == getattr(DEFAULTS, name), name
    assert args.adversarial == DEFAULTS.adversarial and args.seed == DEFAULTS.seed


def test_fit_takes_a_config_and_keyword_overrides() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 2)).astype(np.float32)
    y = (x[:, 0] - x[:, 1]).astype(np.float32)
    config = TrainConfig(members=2, epochs=3, batch_size=16, learning_rate=0.02, seed=3)
    a = deepens.fit(x, y, config, hidden=(8,), progress=False)
    b = deepens.fit(x, y, hidden=(8,), progress=False, **dataclasses.asdict(config))
    c = deepens.fit(x, y, config, hidden=(8,), progress=False, seed=4)
    assert len(a.member_ids) == 2 and a.history.shape == (3, 2)
    np.testing.assert_array_equal(a.history, b.history)
    assert not np.array_equal(a.history, c.history)
    with pytest.raises(TypeError, match="unknown training setting"):
        deepens.fit(x, y, config, hidden=(8,), progress=False, lerning_rate=0.1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("members", 0),
        ("epochs", True),
        ("batch_size", 0),
        ("learning_rate", float("nan")),
        ("learning_rate", -1.0),
        ("learning_rate", True),
        ("weight_decay", float("inf")),
        ("clip_norm", "sometimes"),
        ("clip_norm", 0.0),
        ("adversarial", "pgd"),
        ("eps", -0.1),
        ("seed", -1),
        ("method", "dropout"),
        ("input_repetition", 1.5),
        ("batch_repetition", 0),
    ],
)
def test_each_bad_setting_is_a_value_error_naming_it(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_mimo_options_belong_to_mimo() -> None:
    TrainConfig(method="mimo", input_repetition=0.5, batch_repetition=2)
    with pytest.raises(ValueError, match="MIMO"):
        TrainConfig(method="ensemble", batch_repetition=2)
