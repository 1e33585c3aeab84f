"""Bad input fails early with a ValueError naming the problem, before anything is compiled or trained."""

import jax
import numpy as np
import pytest

import deepens
from deepens import train

X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
Y = X.sum(1)
LABELS = np.arange(20) % 3
FIT = dict(hidden=(4,), epochs=2, progress=False)


def _nan_at(a, index):
    a = np.array(a, dtype=np.float32)
    a[index] = np.nan
    return a


def _scaled_at(a, index, value):
    a = np.array(a)
    a[index] = value
    return a


def _inf_at(a, index):
    a = np.array(a, dtype=np.float32)
    a[index] = np.inf
    return a


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(x=_nan_at(X, (4, 1)), y=Y), r"x contains NaN or inf in row 4"),
        (dict(x=_inf_at(X, (7, 0)), y=Y), r"x contains NaN or inf in row 7"),
        (dict(x=X, y=_nan_at(Y, 3)), r"y contains NaN or inf in row 3"),
        (dict(x=X, y=_inf_at(Y, 9)), r"y contains NaN or inf in row 9"),
        (dict(x=X, y=Y[:-1]), r"x has 20 examples but y has 19"),
        (dict(x=X[:0], y=Y[:0]), r"empty"),
        (dict(x=X[:, 0], y=Y), r"2-D"),
        (dict(x=X, y=Y, members=0), r"members must be an integer >= 1"),
        (dict(x=X, y=Y, members=2.5), r"members must be an integer >= 1"),
        (dict(x=X, y=Y, epochs=0), r"epochs must be an integer >= 1"),
        (dict(x=X, y=Y, batch_size=0), r"batch_size must be an integer >= 1"),
        (dict(x=X, y=Y, adversarial="fgsm", eps=-0.01), r"eps must be a finite number >= 0"),
        (dict(x=X, y=Y, adversarial=None, eps=-0.01), r"eps must be a finite number >= 0"),
        (dict(x=X, y=Y, adversarial=deepens.VAT(), eps=float("inf")), r"eps must be a finite number >= 0"),
        (dict(x=X, y=Y, head="student"), r"unknown head"),
        (dict(x=X, y=Y, loss="brier"), r"gaussian head is trained with loss 'nll'"),
        (dict(x=X, y=Y, member_ids=[0, 0]), r"member_ids must be distinct"),
        (dict(x=[["a", "b", "c"]] * 20, y=Y), r"x must be numeric"),
        (dict(x=X, y=LABELS, head="categorical", num_classes=2), r"outside \[0, 2\) in rows 2, 5, 8"),
        (dict(x=X, y=LABELS - 1, head="categorical"), r"outside \[0, 2\) in rows 0, 3, 6"),
        (dict(x=X, y=LABELS + 0.5, head="categorical"), r"non-integer"),
        (dict(x=X, y=np.zeros(20, int), head="categorical"), r"at least 2 classes"),
        # Finite in float32, but their squares are not: they used to train to all-NaN predictions.
        (dict(x=_scaled_at(X, (5, 2), 1e30), y=Y), r"x has values whose squares overflow float32 .* row 5, column 2"),
        (dict(x=X, y=_scaled_at(Y, 6, 1e30)), r"y has values whose squares overflow float32 .* row 6, column 0"),
        # Finite in float64 but beyond float32: not "NaN or inf".
        (
            dict(x=_scaled_at(X.astype(np.float64), (3, 1), 1e39), y=Y),
            r"x has values too large for float32 .* row 3, column 1",
        ),
        (dict(x=X, y=_scaled_at(Y.astype(np.float64), 2, -1e300)), r"y has values too large for float32 .* row 2"),
        (dict(x=X.reshape(20, 3, 1), y=Y), r"built-in MLP takes 2-D x .* examples have shape \(3, 1\)"),
        (dict(x=X, y=Y, hidden=(0,)), r"hidden must be .* integers >= 1 .* got \(0,\)"),
        (dict(x=X, y=Y, hidden=(4, True)), r"hidden must be"),
        (dict(x=X, y=Y, learning_rate=float("nan")), r"learning_rate must be a finite number > 0, got nan"),
        (dict(x=X, y=Y, learning_rate=float("inf")), r"learning_rate must be a finite number > 0, got inf"),
        (dict(x=X, y=Y, learning_rate=-0.1), r"learning_rate must be a finite number > 0, got -0.1"),
        (dict(x=X, y=Y, learning_rate=True), r"learning_rate must be a real number, got True"),
        (dict(x=X, y=Y, weight_decay=float("nan")), r"weight_decay must be a finite number >= 0, got nan"),
        (dict(x=X + 1j, y=Y), r"x must be real, got complex values"),
        (dict(x=X, y=Y + 0j), r"y must be real, got complex values"),
    ],
)
def test_bad_training_input_raises_before_anything_is_compiled(kwargs, message, monkeypatch):
    # Any JAX tracing or XLA compilation in this process is reported to the listener; and neither the
    # members' initialisation nor the trainer may be reached (a cached program would compile nothing).
    events = []
    listener = lambda name, *args, **kw: events.append(name) if name.startswith("/jax/core/compile") else None  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)

    def reached(*args, **kw):
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr(train, "init_members", reached)
    monkeypatch.setattr(train, "train_members", reached)
    try:
        with pytest.raises(ValueError, match=message):
            deepens.fit(**{**FIT, **kwargs})
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert events == [], f"compiled before raising: {sorted(set(events))}"


def test_the_compile_listener_sees_a_compilation():
    events = []
    listener = lambda name, *args, **kw: events.append(name)  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.jit(lambda v: v * 3.0 + 1.0)(np.arange(7.0))  # a program never compiled before
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert "/jax/core/compile/backend_compile_duration" in events


@pytest.fixture(scope="module")
def ensemble():
    return deepens.fit(X, Y, members=2, **FIT)


@pytest.mark.parametrize(
    "x, message",
    [
        (X[:, :2], r"2 features per example, but the model was trained on 3"),
        (np.ones((5, 4)), r"4 features per example, but the model was trained on 3"),
        (_nan_at(X, (2, 2)), r"NaN or inf in row 2"),
        (X[:0], r"empty"),
        (X[0], r"2-D"),
        (_scaled_at(X, (4, 0), 1e20), r"squares overflow float32 .* row 4, column 0"),
        (_scaled_at(X.astype(np.float64), (1, 1), 1e40), r"too large for float32 .* row 1, column 1"),
    ],
)
def test_bad_prediction_input(ensemble, x, message):
    with pytest.raises(ValueError, match=message):
        ensemble.predict(x)


def test_many_bad_rows_are_summarised():
    x = np.array(X)
    x[::2, 0] = np.nan
    with pytest.raises(ValueError, match=r"rows 0, 2, 4, 6, 8, 10, 12, 14, 16, 18"):
        deepens.fit(x, Y, **FIT)
    x = np.full((30, 3), np.nan, np.float32)
    with pytest.raises(ValueError, match=r"and 20 more"):
        deepens.fit(x, np.zeros(30), **FIT)


def test_prediction_targets_are_checked(ensemble):
    prediction = ensemble.predict(X)
    with pytest.raises(ValueError, match="shape"):
        prediction.nll(Y[:5])


def test_values_below_the_square_limit_are_accepted_and_finite():
    # 1e18 squared is 1e36 < 3.4e38: allowed (and the unit-scale training below is finite).
    x = _scaled_at(X, (0, 0), 1e18)
    assert deepens.validation.features(x)[0, 0] == np.float32(1e18)
    ensemble = deepens.fit(X, Y, members=2, **FIT)
    assert np.all(np.isfinite(np.asarray(ensemble.predict(X).mean)))


def test_a_fit_that_diverges_warns_naming_the_members():
    # Inputs of 1e15 pass the square check, but the network's outputs square to overflow: NaN loss.
    with pytest.warns(RuntimeWarning, match=r"training diverged: the loss of members 0, 1 is nan"):
        ensemble = deepens.fit(X * 1e15, Y, members=2, **FIT)
    assert not np.all(np.isfinite(ensemble.history[-1]))


def test_the_mlp_itself_checks_its_widths_and_its_input_rank():
    with pytest.raises(ValueError, match=r"hidden must be"):
        deepens.MLP((0,), 2)
    with pytest.raises(ValueError, match=r"outputs must be an integer >= 1"):
        deepens.MLP((3,), 0)
    with pytest.raises(ValueError, match=r"unknown activation"):
        deepens.MLP((3,), 1, "swish")
    with pytest.raises(ValueError, match=r"2-D x"):
        deepens.MLP((3,), 1).init(jax.random.PRNGKey(0), np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"2-D x"):
        deepens.MLP((3,), 1).host_init(np.random.default_rng(0), np.zeros((2, 3, 4), np.float32))
