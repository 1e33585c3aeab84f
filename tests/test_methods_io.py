"""Save -> load gives identical predictions for ensembles inside one network (MIMO, BatchEnsemble)."""

import numpy as np
import pytest

import deepens
from deepens.data import toy


@pytest.mark.parametrize("method", ["mimo", "batchensemble"])
@pytest.mark.parametrize("head", ["gaussian", "categorical"])
def test_save_load_identical_predictions(tmp_path, method, head):
    if head == "categorical":
        x, y = toy.spirals(20, seed=0)
    else:
        x, y = toy.cubic(40, seed=0)
        y = y / 30.0
    ensemble = deepens.fit(
        x, y, head=head, hidden=(8,), members=3, epochs=3, batch_size=16, method=method, progress=False
    )
    deepens.save(ensemble, tmp_path / "m")
    loaded = deepens.load(tmp_path / "m")
    assert loaded.method == ensemble.method and loaded.members == 3 and loaded.networks == 1
    a, b = ensemble.member_outputs(x), loaded.member_outputs(x)
    assert a.shape == (3, len(x), b.shape[-1])
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
