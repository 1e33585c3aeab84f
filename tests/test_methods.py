"""Methods: deep ensembles, MIMO and BatchEnsemble behind one seam (batch construction, widened networks,
fast weights, prediction through the mixture, bad hyper-parameters)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import deepens
from deepens import program as program_module
from deepens.data.toy import spirals
from deepens.heads import Categorical, Gaussian
from deepens.methods import MIMO, BatchEnsemble, DeepEnsemble, get_method
from deepens.methods import mimo as mimo_module
from deepens.methods.ensemble import permutation_order
from deepens.models import MLP, FlaxModel, as_model
from deepens.prediction import ClassificationPrediction, RegressionPrediction


def _stack(tree, copies=1):
    return jax.tree.map(lambda a: np.stack([a] * copies), tree)


def test_deep_ensemble_order_is_the_trainers():
    np.testing.assert_array_equal(
        DeepEnsemble().draw_order(5, [0, 3], [0, 2], 13, 4, 4), program_module._draw_order(5, [0, 3], [0, 2], 13, 4, 4)
    )
    # hand check: network 3, epoch 2 is default_rng([5, 3, 2])'s permutation, padded with its first rows
    perm = np.random.default_rng([5, 3, 2]).permutation(13)
    np.testing.assert_array_equal(permutation_order(5, [3], [2], 13, 4, 4).ravel(), np.r_[perm, perm[:3]])


def test_get_method_names_and_configs():
    assert get_method("mimo", members=3) == MIMO(members=3)
    assert get_method(MIMO(members=2, input_repetition=0.5).to_config()) == MIMO(members=2, input_repetition=0.5)
    assert get_method({"name": "batchensemble", "members": 4}) == BatchEnsemble(members=4)
    with pytest.raises(ValueError, match="unknown method"):
        get_method("dropout")


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: MIMO(members=0), "members"),
        (lambda: MIMO(members=2.5), "members"),
        (lambda: MIMO(members=2, input_repetition=1.5), "input_repetition"),
        (lambda: MIMO(members=2, input_repetition=-0.1), "input_repetition"),
        (lambda: MIMO(members=2, batch_repetition=0), "batch_repetition"),
        (lambda: BatchEnsemble(members=0), "members"),
        (lambda: get_method("mimo", members=2, dropout=0.1), "dropout"),
    ],
)
def test_bad_hyper_parameters(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_custom_model_cannot_be_widened():
    custom = as_model((lambda key, x: {"w": jnp.zeros((x.shape[-1], 2))}, lambda p, x: x @ p["w"]))
    for method in (MIMO(members=2), BatchEnsemble(members=2)):
        with pytest.raises(ValueError, match="custom model"):
            method.build(custom, input_shape=(3,), outputs=2)
    with pytest.raises(ValueError, match="flat inputs"):
        MIMO(members=2).build(FlaxModel(MLP((4,), 2)), input_shape=(3, 3), outputs=2)


def test_mimo_subnetworks_see_every_row_once_in_their_own_order():
    n, k = 23, 3
    order = MIMO(members=k).draw_order(1, [0, 1], [0, 1, 2], n, 6, 4)  # 24 positions, last one padding
    assert order.shape == (2, 3, 6, 4, k) and order.dtype == np.int32
    for g in range(2):
        for e in range(3):
            flat = order[g, e].reshape(-1, k)
            for j in range(k):
                np.testing.assert_array_equal(np.sort(flat[:n, j]), np.arange(n))
            assert len({tuple(flat[:n, j]) for j in range(k)}) == k  # orders differ between subnetworks
    # slot 0 is the deep-ensemble member's order: with k = 1 the two coincide
    np.testing.assert_array_equal(
        MIMO(members=1).draw_order(1, [0], [0], n, 6, 4)[..., 0], permutation_order(1, [0], [0], n, 6, 4)
    )
    assert not np.array_equal(order[0, 0], order[0, 1]) and not np.array_equal(order[0, 0], order[1, 0])


def test_mimo_input_repetition():
    same = MIMO(members=4, input_repetition=1.0).draw_order(0, [0], [0], 20, 5, 4)
    assert np.all(same == same[..., :1])
    half = MIMO(members=4, input_repetition=0.5).draw_order(0, [0], [0], 20, 5, 4)[0, 0]  # (S, B, k)
    assert np.all(half[:, :2] == half[:, :2, :1])  # first 2 of each batch of 4 shared
    assert np.mean(np.all(half[:, 2:] == half[:, 2:, :1], axis=-1)) < 0.5


def test_mimo_batch_repetition():
    n, b, batch, k = 10, 3, 6, 2
    steps = -(-n * b // batch)
    order = MIMO(members=k, batch_repetition=b).draw_order(2, [0], [0], n, steps, batch)[0, 0]
    flat = order.reshape(-1, k)
    for j in range(k):
        # every row exactly b times among the n * b real positions, all copies in one batch
        np.testing.assert_array_equal(np.bincount(flat[: n * b, j], minlength=n), np.full(n, b))
        for s in range(steps):
            counts = np.bincount(order[s, :, j][: max(0, min(batch, n * b - s * batch))], minlength=n)
            assert set(counts.tolist()) <= {0, b}
    # the b copies of a row meet different partners in the other slot
    pairs = {tuple(p) for p in flat[: n * b]}
    assert len(pairs) > n
    with pytest.raises(ValueError, match="repeated"):
        MIMO(members=k, batch_repetition=b).draw_order(2, [0], [0], n, 2, batch)


def _net_and_params(method, hidden=(6, 5), outputs=2, d=3, seed=0):
    net = method.build(FlaxModel(MLP(hidden, outputs)), input_shape=(d,), outputs=outputs)
    k = method.members_per_network
    params, state = net.init_on_host(np.random.default_rng(seed), np.zeros((4, k, d), np.float32))
    return net, params, state


def test_mimo_with_one_member_is_its_trunk():
    x = np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32)
    mlp = FlaxModel(MLP((6, 5), 2))
    net, params, state = _net_and_params(MIMO(members=1))
    plain, _ = mlp.init_on_host(np.random.default_rng(0), x)
    jax.tree.map(np.testing.assert_array_equal, params, plain)
    out, _ = net.apply(params, state, jnp.asarray(x[:, None]), False)
    np.testing.assert_allclose(out[:, 0], mlp.apply(plain, {}, jnp.asarray(x), False)[0], rtol=1e-6)


def test_mimo_widening_and_host_init_match_flax_init():
    net, params, state = _net_and_params(MIMO(members=3))
    assert params["Dense_0"]["kernel"].shape == (9, 6) and params["Dense_2"]["kernel"].shape == (5, 6)
    device, _ = net.init(jax.random.PRNGKey(0), jnp.zeros((4, 3, 3)))
    assert jax.tree.map(np.shape, device) == jax.tree.map(np.shape, params)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(7, 3, 3)), jnp.float32)
    out, _ = net.apply(params, state, x, False)
    assert out.shape == (7, 3, 2)
    # slot j's output is block j of the widened network's output on the concatenated inputs
    trunk = FlaxModel(net.trunk).apply(params, state, x.reshape(7, 9), False)[0]
    np.testing.assert_allclose(out.reshape(7, 6), trunk, rtol=1e-6)


def test_batchensemble_with_unit_fast_weights_is_the_shared_network():
    k, d = 3, 3
    net, params, state = _net_and_params(BatchEnsemble(members=k), d=d)
    for layer in params.values():
        assert set(np.unique(layer["r"])) <= {-1.0, 1.0} and set(np.unique(layer["s"])) <= {-1.0, 1.0}
    ones = {
        name: {
            **layer,
            "r": np.ones_like(layer["r"]),
            "s": np.ones_like(layer["s"]),
            "bias": np.repeat(layer["bias"][:1], k, axis=0),
        }
        for name, layer in params.items()
    }
    shared = {
        f"Dense_{i}": {
            "kernel": ones[f"BatchEnsembleDense_{i}"]["kernel"],
            "bias": ones[f"BatchEnsembleDense_{i}"]["bias"][0],
        }
        for i in range(3)
    }
    x = np.random.default_rng(2).normal(size=(8, d)).astype(np.float32)
    out, _ = net.apply(ones, state, jnp.repeat(jnp.asarray(x)[:, None], k, axis=1), False)
    reference, _ = FlaxModel(MLP((6, 5), 2)).apply(shared, {}, jnp.asarray(x), False)
    for m in range(k):
        np.testing.assert_allclose(out[:, m], reference, rtol=1e-5, atol=1e-6)
    # with random signs, members differ: member m's weight is W * outer(r_m, s_m)
    out, _ = net.apply(params, state, jnp.repeat(jnp.asarray(x)[:, None], k, axis=1), False)
    assert not np.allclose(out[:, 0], out[:, 1])
    layer = params["BatchEnsembleDense_0"]
    hand = x @ (layer["kernel"] * np.outer(layer["r"][1], layer["s"][1])) + layer["bias"][1]
    # the hand formula, through a one-layer network holding that layer
    one = BatchEnsemble(members=k).build(FlaxModel(MLP((), 6)), input_shape=(d,), outputs=6)
    out1, _ = one.apply({"BatchEnsembleDense_0": layer}, {}, jnp.repeat(jnp.asarray(x)[:, None], k, axis=1), False)
    np.testing.assert_allclose(out1[:, 1], hand, rtol=1e-5, atol=1e-6)


def test_batchensemble_order_and_reduction():
    order = BatchEnsemble(members=3).draw_order(4, [0], [0, 1], 11, 3, 4)
    assert order.shape == (1, 2, 3, 4, 3) and np.all(order == order[..., :1])
    np.testing.assert_array_equal(order[..., 0], permutation_order(4, [0], [0, 1], 11, 3, 4))
    losses = jnp.asarray([[1.0, 2.0, 6.0]])
    assert float(BatchEnsemble(members=3).reduce_slots(losses)[0]) == pytest.approx(3.0)
    assert float(MIMO(members=3).reduce_slots(losses)[0]) == pytest.approx(9.0)
    assert DeepEnsemble().reduce_slots(losses) is losses


@pytest.mark.parametrize("method", [MIMO(members=3), BatchEnsemble(members=3)])
def test_member_outputs_shapes_and_order(method):
    net, params, state = _net_and_params(method)
    stacked = jax.tree.map(lambda a: np.stack([a, 2 * a]), params)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(5, 3)), jnp.float32)
    out = method.member_outputs(net, stacked, _stack(state, 2), x)
    assert out.shape == (6, 5, 2)
    single, _ = net.apply(params, state, jnp.repeat(x[:, None], 3, axis=1), False)
    for m in range(3):  # MIMO sums its input kernel's blocks instead of tiling x: float32 rounding apart
        np.testing.assert_allclose(out[m], single[:, m], rtol=1e-6, atol=1e-6)
    if isinstance(method, MIMO):  # the folded input layer is found in the parameters (not the tiled fallback)
        assert mimo_module._folded_leaf(net, 3) is not None
        wide = method.build(FlaxModel(MLP((9,), 2)), input_shape=(3,), outputs=2)  # a hidden width of k * D
        assert mimo_module._folded_leaf(wide, 3) is not None


def test_deep_ensemble_member_outputs():
    mlp = FlaxModel(MLP((4,), 2))
    params = jax.tree.map(
        lambda *a: np.stack(a), *[mlp.init_on_host(np.random.default_rng(i), np.zeros((1, 3)))[0] for i in range(2)]
    )
    x = jnp.ones((5, 3))
    out = DeepEnsemble().member_outputs(mlp, params, {}, x)
    assert out.shape == (2, 5, 2)
    np.testing.assert_allclose(out[1], mlp.apply(jax.tree.map(lambda a: a[1], params), {}, x, False)[0], rtol=1e-6)


def test_mimo_regression_through_the_mixture_by_hand():
    k, n = 4, 6
    net, params, state = _net_and_params(MIMO(members=k), outputs=2, seed=5)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(n, 3)), jnp.float32)
    outputs = np.asarray(MIMO(members=k).member_outputs(net, _stack(params), _stack(state), x), np.float64)
    prediction = RegressionPrediction(Gaussian(), jnp.asarray(outputs, jnp.float32), squeeze=True)
    mu = outputs[..., 0]
    sigma = np.log1p(np.exp(outputs[..., 1])) + 1e-6  # softplus, the Gaussian head's positive scale
    np.testing.assert_allclose(np.asarray(Gaussian().std(jnp.asarray(outputs)))[..., 0], sigma, rtol=1e-4)
    mean = mu.mean(0)
    variance = (sigma**2 + mu**2).mean(0) - mean**2
    y = np.random.default_rng(5).normal(size=n)
    density = scipy.stats.norm.pdf(y, mu, sigma).mean(0)
    np.testing.assert_allclose(prediction.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prediction.variance, variance, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(prediction.log_prob(y), np.log(density), rtol=1e-4, atol=1e-5)
    u = prediction.uncertainty
    np.testing.assert_allclose(u.total, u.aleatoric + u.epistemic, rtol=1e-5)
    np.testing.assert_allclose(u.aleatoric, (sigma**2).mean(0), rtol=1e-4)
    np.testing.assert_allclose(u.epistemic, mu.var(0), rtol=1e-4, atol=1e-7)


def test_mimo_classification_through_the_mixture_by_hand():
    k, n, classes = 3, 7, 4
    net, params, state = _net_and_params(MIMO(members=k), outputs=classes, seed=6)
    x = jnp.asarray(3 * np.random.default_rng(6).normal(size=(n, 3)), jnp.float32)
    logits = np.asarray(MIMO(members=k).member_outputs(net, _stack(params), _stack(state), x), np.float64)
    prediction = ClassificationPrediction(jnp.asarray(logits, jnp.float32), Categorical())
    probs = scipy.special.softmax(logits, axis=-1)
    mean = probs.mean(0)
    y = np.random.default_rng(7).integers(0, classes, n)
    np.testing.assert_allclose(prediction.probs, mean, rtol=1e-5)
    np.testing.assert_allclose(prediction.log_prob(y), np.log(mean[np.arange(n), y]), rtol=1e-5, atol=1e-6)
    u = prediction.uncertainty
    total = scipy.stats.entropy(mean, axis=-1)
    data = scipy.stats.entropy(probs, axis=-1).mean(0)
    np.testing.assert_allclose(u.total, total, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(u.data, data, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(u.total, u.data + u.knowledge, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(u.knowledge) > 0)


# --- through the trainer -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=37)).astype(np.float32)
    return x, y


def test_fit_mimo_with_one_member_is_a_plain_network(regression_data):
    x, y = regression_data
    settings = dict(members=1, hidden=(8,), epochs=4, batch_size=8, learning_rate=1e-2, seed=3, progress=False)
    plain = deepens.fit(x, y, **settings)
    mimo = deepens.fit(x, y, method="mimo", **settings)
    jax.tree.map(np.testing.assert_array_equal, plain.params, mimo.params)  # same key, same order: bit for bit
    np.testing.assert_allclose(mimo.predict(x).mean, plain.predict(x).mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(mimo.history, plain.history)


def test_fit_batchensemble_members_differ_and_predict(regression_data):
    x, y = regression_data
    ensemble = deepens.fit(
        x, y, method="batchensemble", members=3, hidden=(8,), epochs=5, batch_size=8, learning_rate=1e-2, progress=False
    )
    assert ensemble.members == 3 and ensemble.history.shape == (5, 1)
    outputs = np.asarray(ensemble.member_outputs(x))
    assert outputs.shape == (3, 37, 2)
    assert not np.allclose(outputs[0], outputs[1]) and not np.allclose(outputs[1], outputs[2])
    assert np.isfinite(ensemble.history).all() and ensemble.history[-1, 0] < ensemble.history[0, 0]
    with pytest.raises(ValueError, match="select"):
        ensemble.select([0])


def test_fit_rejects_bad_method_options(regression_data):
    x, y = regression_data
    for kwargs, word in [
        (dict(method="dropout"), "unknown method"),
        (dict(method="mimo", input_repetition=2.0), "input_repetition"),
        (dict(method="mimo", batch_repetition=0), "batch_repetition"),
        (dict(method="ensemble", batch_repetition=2), "MIMO"),
        (dict(method=MIMO(members=2), members=3), "cannot be split"),
    ]:
        with pytest.raises(ValueError, match=word):
            deepens.fit(x, y, epochs=1, progress=False, **kwargs)


def test_fit_mimo_batch_repetition_trains(regression_data):
    x, y = regression_data
    ensemble = deepens.fit(
        x,
        y,
        method="mimo",
        members=2,
        batch_repetition=2,
        input_repetition=0.25,
        hidden=(8,),
        epochs=3,
        batch_size=8,
        progress=False,
    )
    assert ensemble.members == 2 and np.isfinite(ensemble.history).all()


def test_mimo_spiral_accuracy():
    x, y = spirals(150, classes=3, noise=0.3, seed=1)
    xt, yt = spirals(150, classes=3, noise=0.3, seed=2)
    ensemble = deepens.fit(
        x,
        y,
        head="categorical",
        method="mimo",
        members=4,
        hidden=(64, 64),
        epochs=120,
        batch_size=64,
        learning_rate=1e-2,
        progress=False,
    )
    prediction = ensemble.predict(xt)
    accuracy = float(np.mean(np.asarray(prediction.label) == yt))
    assert accuracy > 0.9, accuracy  # 0.96 measured; every subnetwork alone > 0.85
    for outputs in ensemble.member_outputs(xt):
        assert float(np.mean(np.asarray(outputs).argmax(-1) == yt)) > 0.8
    u = prediction.uncertainty
    np.testing.assert_allclose(u.total, u.data + u.knowledge, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["mimo", "batchensemble"])
@pytest.mark.parametrize("adversarial", ["fgsm", "vat"])
def test_adversarial_training_on_slotted_inputs(regression_data, method, adversarial):
    x, y = regression_data
    ensemble = deepens.fit(
        x, y, method=method, members=2, adversarial=adversarial, hidden=(8,), epochs=2, batch_size=8, progress=False
    )
    clean = deepens.fit(x, y, method=method, members=2, hidden=(8,), epochs=2, batch_size=8, progress=False)
    assert np.isfinite(ensemble.history).all()
    assert not np.allclose(ensemble.history, clean.history)  # the perturbation reached the loss


@pytest.mark.parametrize("method", [MIMO(members=2, input_repetition=0.25), BatchEnsemble(members=2)])
def test_several_slotted_networks_train_vmapped_like_separate_fits(regression_data, method):
    x, y = regression_data
    settings = dict(method=method, hidden=(8,), epochs=3, batch_size=8, learning_rate=1e-2, seed=5, progress=False)
    together = deepens.fit(x, y, members=4, **settings)  # two networks of two members, side by side
    assert together.networks == 2 and together.members == 4 and together.history.shape == (3, 2)
    alone = [deepens.fit(x, y, members=2, member_ids=[g], **settings) for g in (0, 1)]
    for g, single in enumerate(alone):
        assert single.networks == 1
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a[g], b[0], rtol=1e-5, atol=1e-6), together.params, single.params
        )
        np.testing.assert_allclose(together.history[:, g], single.history[:, 0], rtol=1e-5)
    separate = np.concatenate([np.asarray(s.member_outputs(x)) for s in alone])  # network-major members
    np.testing.assert_allclose(np.asarray(together.member_outputs(x)), separate, rtol=1e-5, atol=1e-6)
    assert not np.allclose(separate[0], separate[2])  # the two networks are different draws
