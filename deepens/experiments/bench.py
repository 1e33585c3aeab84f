"""Training-speed workloads, measured against hand-written sequential loops: ``deepens bench``.

Workloads (issue 5):
  w1  the practical's toy regression: 40 points, MLP 1-10-6-30-2, Adam 0.08, 600 full-batch steps, M = 6.
  w2  synthetic 40,000 x 9 regression, MLP 9-100-2, minibatch 100, 40 epochs, M = 5.
  w3  synthetic 10,000 x 784 ten-class problem, MLP 784-200-200-200-10, minibatch 100, 5 epochs, M = 5.

Each run reports compile seconds (the first fit), training seconds (a second fit with another seed, which
reuses the compiled program), member-examples per second, the process's peak resident memory, the
fraction of this machine's float32 matmul peak (a 2048^2 matmul timed in the same run) that training
reached, counting 6 FLOPs per weight per example (forward 2, backward 4), and the ratio against two
sequential loops run in a fresh process with JAX's single default CPU device: one jitted step per
member per batch, members one after another, written the practical's way (device arrays, a
``jax.random.permutation`` per epoch, batches sliced from Python) and a tuned host loop (numpy order and
slicing).

Methods (issue 8, ``methods=True``): the same workload trained as one network, the deep ensemble of M,
MIMO with M subnetworks and BatchEnsemble with M members (each a second fit that reuses its compiled
program), with training seconds and the seconds to predict :data:`PREDICT_ROWS` rows with the uncertainty
decomposition, each also as a ratio to one network's and to the deep ensemble's. All four train on one
device, like for like: with several CPU devices a one-network fit splits its batches over them and
all-reduces every step, and XLA's CPU all-reduce aborts the process when a device thread waits 40 s
(seen on a 2-core machine at load 17). The issue's targets for
MIMO at M = 4: training at most 1.3x and prediction at most 1.5x one network's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import deepens
from deepens.data import toy
from deepens.heads import get_head
from deepens.models import MLP, as_model


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    data: Callable[[], tuple[np.ndarray, np.ndarray]]
    head: str
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int | None
    learning_rate: float
    members: int

    def fit_kwargs(self) -> dict[str, Any]:
        return dict(
            head=self.head,
            hidden=self.hidden,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            progress=False,
        )


def _w1_data() -> tuple[np.ndarray, np.ndarray]:
    return toy.cubic(40, seed=0)


def _w2_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40_000, 9)).astype(np.float32)
    y = np.sin(x @ rng.normal(size=9)) + 0.1 * x[:, 0] ** 2 + 0.1 * rng.normal(size=len(x))
    return x, y.astype(np.float32)


def _w3_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10_000, 784)).astype(np.float32)
    labels = np.argmax(x @ rng.normal(size=(784, 10)) + rng.gumbel(size=(10_000, 10)), axis=1)
    return x, labels.astype(np.int32)


WORKLOADS = {
    "w1": Workload("w1", _w1_data, "gaussian", (10, 6, 30), 600, None, 0.08, 6),
    "w2": Workload("w2", _w2_data, "gaussian", (100,), 40, 100, 1e-3, 5),
    "w3": Workload("w3", _w3_data, "categorical", (200, 200, 200), 5, 100, 1e-3, 5),
}


def _outputs(workload: Workload, y: np.ndarray) -> int:
    return get_head(workload.head).num_outputs(int(y.max()) + 1 if workload.head == "categorical" else 1)


def flops_per_example(workload: Workload, x: np.ndarray, y: np.ndarray) -> float:
    """Training FLOPs per example and member: 6 per weight (2 forward, 4 backward)."""
    widths = (x.shape[1], *workload.hidden, _outputs(workload, y))
    return 6.0 * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """This machine's float32 matmul throughput in GFLOP/s: the best of ``repeats`` ``n x n`` products."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
    product = jax.jit(lambda m: m @ m)
    product(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


PREDICT_ROWS = 32_768


def prediction_throughput(ensemble: deepens.Ensemble, x: np.ndarray, repeats: int = 3) -> float:
    """Rows per second for a prediction with its uncertainty decomposition (after one warm-up)."""

    def once() -> None:
        prediction = ensemble.predict(x)
        jax.block_until_ready(prediction.uncertainty)

    once()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return repeats * len(x) / (time.perf_counter() - start)


def run_deepens(
    workload: Workload, members: int, x: np.ndarray, y: np.ndarray
) -> tuple[dict[str, float], deepens.Ensemble]:
    first = deepens.fit(x, y, members=members, seed=0, **workload.fit_kwargs())
    second = deepens.fit(x, y, members=members, seed=1, **workload.fit_kwargs())
    assert first.timings is not None and second.timings is not None
    train_s = second.timings.train_s
    examples = members * len(x) * workload.epochs
    return {
        "compile_s": first.timings.compile_s,
        "train_s": train_s,
        "member_examples_per_s": examples / train_s,
        "gflops": flops_per_example(workload, x, y) * examples / train_s / 1e9,
    }, second


METHOD_TARGETS = {"mimo": {"train_vs_single": 1.3, "predict_vs_single": 1.5}}


def compare_methods(workload: Workload, members: int, x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, Any]]:
    """One network, the deep ensemble, MIMO and BatchEnsemble of ``members`` on the workload: seconds and
    ratios (see the module docstring)."""
    rows = np.resize(x, (PREDICT_ROWS, *x.shape[1:]))
    out: dict[str, dict[str, Any]] = {}
    for name, method, m in (
        ("single", "ensemble", 1),
        ("ensemble", "ensemble", members),
        ("mimo", "mimo", members),
        ("batchensemble", "batchensemble", members),
    ):
        kwargs: dict[str, Any] = dict(members=m, method=method, devices=1, **workload.fit_kwargs())
        first = deepens.fit(x, y, seed=0, **kwargs)
        second = deepens.fit(x, y, seed=1, **kwargs)
        assert first.timings is not None and second.timings is not None
        out[name] = {
            "method": method,
            "members": m,
            "compile_s": first.timings.compile_s,
            "train_s": second.timings.train_s,
            "predict_s": len(rows) / prediction_throughput(second, rows),
            "parameters": int(sum(np.size(leaf) for leaf in jax.tree.leaves(second.params))),
        }
    for entry in out.values():
        for key in ("train", "predict"):
            entry[f"{key}_vs_single"] = entry[f"{key}_s"] / out["single"][f"{key}_s"]
            entry[f"{key}_vs_ensemble"] = entry[f"{key}_s"] / out["ensemble"][f"{key}_s"]
    for name, targets in METHOD_TARGETS.items():
        out[name]["targets_met"] = {key: bool(out[name][key] <= limit) for key, limit in targets.items()}
    return out


def sequential_loop(workload: Workload, members: int, style: str) -> dict[str, float]:
    """Members one after another, one jitted Adam step per batch (see the module docstring)."""
    x, y = workload.data()
    head = get_head(workload.head)
    model = as_model(MLP(workload.hidden, _outputs(workload, y)))
    optimizer = optax.adam(workload.learning_rate)
    n = len(x)
    batch = n if workload.batch_size is None else workload.batch_size
    targets = y if head.is_classifier else y[:, None]
    xd, yd = jnp.asarray(x), jnp.asarray(targets)

    @jax.jit
    def step(params, opt_state, xb, yb):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(head.nll(model.apply(p, {}, xb, True)[0], yb)))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def init(key):
        params, _ = model.init(key, xd[:1])
        return params, optimizer.init(params)

    start = time.perf_counter()
    params, opt_state = init(jax.random.PRNGKey(0))
    jax.block_until_ready(step(params, opt_state, xd[:batch], yd[:batch]))
    compile_s = time.perf_counter() - start

    start = time.perf_counter()
    for m in range(members):
        key = jax.random.PRNGKey(m)
        params, opt_state = init(key)
        rng = np.random.default_rng(m)
        for _ in range(workload.epochs):
            if batch >= n:  # full batch: no order, no slicing
                params, opt_state, _ = step(params, opt_state, xd, yd)
            elif style == "practical":
                key, sub = jax.random.split(key)
                order = jax.random.permutation(sub, n)
                for first in range(0, n, batch):
                    rows = order[first : first + batch]
                    params, opt_state, _ = step(params, opt_state, xd[rows], yd[rows])
            else:
                order = rng.permutation(n)
                for first in range(0, n, batch):
                    rows = order[first : first + batch]
                    params, opt_state, _ = step(params, opt_state, x[rows], targets[rows])
        jax.block_until_ready(params)
    train_s = time.perf_counter() - start
    return {
        "compile_s": compile_s,
        "train_s": train_s,
        "member_examples_per_s": members * n * workload.epochs / train_s,
    }


def sequential_in_fresh_process(workload: str, members: int, style: str) -> dict[str, float]:
    """Run :func:`sequential_loop` in a new Python with one CPU device, as a hand-written script would."""
    env = {**os.environ, "DEEPENS_CPU_DEVICES": "1"}
    command = [sys.executable, "-m", "deepens.experiments.bench", workload, str(members), style]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(
    name: str, members: int | None = None, *, sequential: bool = True, predict: bool = True, methods: bool = False
) -> dict[str, Any]:
    """Measure one workload; the record ``deepens bench --json`` writes."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose one of {sorted(WORKLOADS)}")
    workload = WORKLOADS[name]
    members = workload.members if members is None else members
    x, y = workload.data()
    peak = matmul_peak()
    measured, ensemble = run_deepens(workload, members, x, y)
    record: dict[str, Any] = {
        "workload": name,
        "members": members,
        "devices": jax.device_count(),
        "compile_s": measured["compile_s"],
        "train_s": measured["train_s"],
        "member_examples_per_s": measured["member_examples_per_s"],
        "peak_rss_mb": peak_rss_mb(),
        "matmul_peak_gflops": peak,
        "training_gflops": measured["gflops"],
        "matmul_peak_fraction": measured["gflops"] / peak,
        "sequential_ratio": None,
    }
    if predict:
        rows = np.resize(x, (PREDICT_ROWS, *x.shape[1:]))  # the training inputs, tiled or cut to size
        record["predict_rows_per_s"] = prediction_throughput(ensemble, rows)
    if sequential:
        for style in ("practical", "host"):
            baseline = sequential_in_fresh_process(name, members, style)
            record[f"sequential_{style}"] = baseline
            record[f"sequential_{style}_ratio"] = baseline["train_s"] / measured["train_s"]
        record["sequential_ratio"] = record["sequential_practical_ratio"]
    if methods:
        record["methods"] = compare_methods(workload, members, x, y)
    return record


if __name__ == "__main__":  # the fresh process of sequential_in_fresh_process
    workload_name, member_count, loop_style = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(json.dumps(sequential_loop(WORKLOADS[workload_name], member_count, loop_style)))
