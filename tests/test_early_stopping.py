"""Early stopping on held-out rows (deepens.early_stopping): the kept parameters are each member's best,
training stops once no member improves, and nothing is recompiled per chunk."""

import numpy as np
import pytest

import deepens
from deepens import early_stopping
from deepens import program as program_module
from deepens.early_stopping import EarlyStopping, member_scores

FAST = dict(members=3, hidden=(16,), epochs=50, batch_size=None, learning_rate=0.02, seed=0, progress=False)


def _data(rng, n):
    x = rng.uniform(-3, 3, size=(n, 1)).astype(np.float32)
    y = (np.sin(x[:, 0]) + 0.3 * rng.normal(size=n)).astype(np.float32)
    return x, y


def test_each_member_keeps_its_best_checked_parameters():
    rng = np.random.default_rng(0)
    x, y = _data(rng, 200)
    x_val, y_val = _data(rng, 60)
    seen = {}
    stopping = EarlyStopping(
        x_val, y_val, patience=1000, on_result=lambda best, scores: seen.update(best=best, scores=scores)
    )
    ensemble = deepens.fit(x, y, early_stopping=stopping, **FAST)
    epochs, scores = seen["scores"]
    chunk = program_module.epochs_per_call(50, 1)  # full batch: one step per epoch
    np.testing.assert_array_equal(epochs, np.arange(chunk, 51, chunk))
    assert scores.shape == (len(epochs), 3) and ensemble.history.shape == (50, 3)  # patience never ran out
    np.testing.assert_array_equal(seen["best"], epochs[np.argmin(scores, axis=0)])
    kept = np.asarray(
        member_scores(ensemble.model, ensemble.head.nll, ensemble.params, ensemble.state, x_val, y_val[:, None])
    )
    np.testing.assert_allclose(kept, scores.min(axis=0), rtol=1e-5)
    # Without early stopping the same run ends at epoch 50: the same networks as the last check.
    plain = deepens.fit(x, y, **FAST)
    last = np.asarray(member_scores(plain.model, plain.head.nll, plain.params, plain.state, x_val, y_val[:, None]))
    np.testing.assert_allclose(last, scores[-1], rtol=1e-5)


def test_training_stops_when_no_member_improves_and_compiles_once():
    rng = np.random.default_rng(1)
    x, y = _data(rng, 200)
    # Held-out targets the training data contradict: every member is at its best early and then worsens.
    x_val, _ = _data(rng, 60)
    y_val = -5.0 * np.sin(x_val[:, 0]) + 20.0
    seen = {}
    stopping = EarlyStopping(x_val, y_val, patience=4, on_result=lambda best, scores: seen.update(best=best))
    executables = len(program_module._EXECUTABLES)
    before = member_scores._cache_size(), early_stopping._keep_best._cache_size()
    ensemble = deepens.fit(x, y, early_stopping=stopping, **FAST)
    stopped = ensemble.history.shape[0]
    assert stopped < 50 and stopped - seen["best"].max() >= 4
    # One compiled scoring program (and one selection) for all the checks.
    assert member_scores._cache_size() - before[0] <= 1 and early_stopping._keep_best._cache_size() - before[1] <= 1
    assert len(program_module._EXECUTABLES) - executables <= 1


def test_early_stopping_refuses_bad_input():
    rng = np.random.default_rng(2)
    x, y = _data(rng, 40)
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(x, y, patience=0)
    with pytest.raises(ValueError, match="early_stopping.x"):
        deepens.fit(x, y, early_stopping=EarlyStopping(np.ones((10, 2)), np.ones(10)), **FAST)
    with pytest.raises(ValueError, match="early_stopping.x"):
        deepens.fit(x, y, early_stopping=EarlyStopping(np.full((10, 1), np.nan), np.ones(10)), **FAST)
    with pytest.raises(ValueError, match="one member per network"):
        deepens.fit(x, y, early_stopping=EarlyStopping(x, y), **{**FAST, "method": "mimo"})
