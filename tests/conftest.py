"""Shared fixtures. Before deepens (or JAX) is imported, the test process asks JAX for two CPU devices,
so the sharding tests in test_devices.py run on every machine (they fail, never skip, without them).
Through jax.config, not the environment: the fresh processes some tests start choose their own count."""

import os
import tempfile

import jax

jax.config.update("jax_num_cpu_devices", 2)

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import deepens
from deepens.data import toy

# The estimators and the CLI use a persistent compilation cache; the tests keep theirs out of ~/.cache.
os.environ.setdefault("DEEPENS_CACHE_DIR", tempfile.mkdtemp(prefix="deepens-test-cache-"))

# Property-based tests (tests/test_properties_*.py): "ci", the default, is derandomised (the same examples
# on every run and machine) with a fixed number of examples, so the suite's time and outcome are fixed;
# HYPOTHESIS_PROFILE=dev draws more, and new, examples when hunting for defects.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.register_profile(
    "dev",
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def cubic_data():
    """The practical's cubic with y divided by 30, so the noise standard deviation is 0.1."""
    x, y = toy.cubic(40, seed=0)
    return x, y / 30.0


@pytest.fixture(scope="session")
def small_regression_ensemble(cubic_data):
    """A quickly trained Gaussian ensemble shared by the prediction tests."""
    x, y = cubic_data
    return deepens.fit(x, y, hidden=(32,), members=3, epochs=500, learning_rate=0.02, progress=False)


@pytest.fixture(scope="session")
def small_classifier(spiral_data):
    x, y = spiral_data
    return deepens.fit(x, y, head="categorical", hidden=(32,), members=3, epochs=40, learning_rate=0.05, progress=False)


@pytest.fixture(scope="session")
def spiral_data():
    return toy.spirals(60, seed=0)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
