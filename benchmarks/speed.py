"""Training speed of deepens against the practical's sequential loop, measured in one run.

Workloads (issue 2):
  toy  the practical's cubic regression: 40 points, MLP 1-10-6-30-2, Adam 0.08, 600 full-batch steps;
       M = 1, 6, 32 members (target: 32 members at most 3x the time of one).
  w2   synthetic 40,000 x 9 regression, one hidden layer of 100 units, minibatch 100, 40 epochs, M = 5
       (target: at least 5x the sequential loop).

For each: compile seconds, training seconds (a second fit that reuses the compiled program), member-examples
per second, and the same for two sequential loops (one jitted Adam step per member per batch, members one
after another), each run in a fresh process with JAX's default single CPU device: "practical" as the
practical writes it (device arrays, jax.random.permutation per epoch, batches sliced in Python) and "host"
a tuned hand-written loop (numpy permutation and slicing on the host).

    python benchmarks/speed.py [--workload toy|w2|all] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import deepens
from deepens.data import toy
from deepens.models import MLP, as_model


def _deepens(x: np.ndarray, y: np.ndarray, *, members: int, epochs: int, batch_size: int | None, hidden: tuple[int, ...], lr: float) -> dict[str, float]:
    kwargs = dict(hidden=hidden, members=members, epochs=epochs, batch_size=batch_size, learning_rate=lr, progress=False)
    start = time.perf_counter()
    first = deepens.fit(x, y, **kwargs)
    first_total = time.perf_counter() - start
    second = deepens.fit(x, y, seed=1, **kwargs)  # reuses the compiled program: pure training time
    assert first.timings is not None and second.timings is not None
    train_s = second.timings.train_s
    return {
        "compile_s": first.timings.compile_s,
        "train_s": train_s,
        "first_fit_s": first_total,
        "member_examples_per_s": members * len(x) * epochs / train_s,
    }


def _step_fn(hidden: tuple[int, ...], lr: float):
    """One jitted Adam step of one member on one batch: the unit of the hand-written loops."""
    head = deepens.Gaussian()
    model = as_model(MLP(hidden, 2))
    optimizer = optax.adam(lr)

    @jax.jit
    def step(params, opt_state, xb, yb):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(head.nll(model.apply(p, {}, xb, True)[0], yb)))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def init(key, x):
        params, _ = model.init(key, x)
        return params, optimizer.init(params)

    return init, step


def sequential_loop(x: np.ndarray, y: np.ndarray, *, members: int, epochs: int, batch_size: int | None,
                    hidden: tuple[int, ...], lr: float, style: str) -> dict[str, float]:
    """Members one after another, one jitted step per batch.

    ``practical``: as the practical writes it: data as device arrays, a ``jax.random.permutation`` per
    epoch, each batch sliced from the device arrays in Python. ``host``: a tuned hand-written loop that
    permutes and slices numpy arrays on the host and sends each batch to the jitted step.
    """
    init, step = _step_fn(hidden, lr)
    n = len(x)
    batch = n if batch_size is None else batch_size
    y2 = y[:, None]
    xd, yd = jnp.asarray(x), jnp.asarray(y2)

    start = time.perf_counter()
    params, opt_state = init(jax.random.PRNGKey(0), xd[:1])
    jax.block_until_ready(step(params, opt_state, xd[:batch], yd[:batch]))
    compile_s = time.perf_counter() - start

    start = time.perf_counter()
    for m in range(members):
        key = jax.random.PRNGKey(m)
        params, opt_state = init(key, xd[:1])
        rng = np.random.default_rng(m)
        for _ in range(epochs):
            if style == "practical":
                key, sub = jax.random.split(key)
                order = jax.random.permutation(sub, n) if batch < n else jnp.arange(n)
                for first in range(0, n, batch):
                    rows = order[first : first + batch]
                    params, opt_state, loss = step(params, opt_state, xd[rows], yd[rows])
            else:
                order = rng.permutation(n) if batch < n else np.arange(n)
                for first in range(0, n, batch):
                    rows = order[first : first + batch]
                    params, opt_state, loss = step(params, opt_state, x[rows], y2[rows])
        jax.block_until_ready(params)
    train_s = time.perf_counter() - start
    return {"compile_s": compile_s, "train_s": train_s, "member_examples_per_s": members * n * epochs / train_s}


def _baseline_in_fresh_process(workload: str, style: str) -> dict[str, float]:
    """Run a sequential baseline in a new Python with JAX's default single CPU device, as a user's
    hand-written script would run (deepens itself spreads members over one device per core)."""
    env = {**os.environ, "DEEPENS_CPU_DEVICES": "1"}
    out = subprocess.run([sys.executable, __file__, "--baseline", style, "--workload", workload],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


TOY = dict(epochs=600, batch_size=None, hidden=(10, 6, 30), lr=0.08)
W2 = dict(members=5, epochs=40, batch_size=100, hidden=(100,), lr=1e-3)


def toy_data() -> tuple[np.ndarray, np.ndarray]:
    return toy.cubic(40, seed=0)


def w2_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40_000, 9)).astype(np.float32)
    w = rng.normal(size=9)
    y = (np.sin(x @ w) + 0.1 * x[:, 0] ** 2 + 0.1 * rng.normal(size=len(x))).astype(np.float32)
    return x, y


def toy_workload() -> dict[str, Any]:
    x, y = toy_data()
    results: dict[str, Any] = {"workload": "toy", "deepens": {}}
    for members in (1, 6, 32):
        results["deepens"][members] = _deepens(x, y, members=members, **TOY)
    for style in ("practical", "host"):
        results[f"sequential_{style}"] = _baseline_in_fresh_process("toy", style)
    one, many = results["deepens"][1], results["deepens"][32]
    results["cost_32_over_1_train"] = many["train_s"] / one["train_s"]
    results["cost_32_over_1_with_compile"] = many["first_fit_s"] / one["first_fit_s"]
    for style in ("practical", "host"):
        results[f"speedup_vs_{style}_m6"] = results[f"sequential_{style}"]["train_s"] / results["deepens"][6]["train_s"]
    return results


def w2_workload() -> dict[str, Any]:
    x, y = w2_data()
    results: dict[str, Any] = {"workload": "w2", "deepens": {5: _deepens(x, y, **W2)}}
    for style in ("practical", "host"):
        results[f"sequential_{style}"] = _baseline_in_fresh_process("w2", style)
        results[f"speedup_vs_{style}"] = results[f"sequential_{style}"]["train_s"] / results["deepens"][5]["train_s"]
    return results


def _print(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"workload {results['workload']}")
    for column in ("method", "members", "compile s", "train s", "member-examples/s"):
        table.add_column(column, justify="right")
    for members, r in results["deepens"].items():
        table.add_row(f"deepens ({jax.device_count()} devices)", str(members), f"{r['compile_s']:.2f}",
                      f"{r['train_s']:.3f}", f"{r['member_examples_per_s']:,.0f}")
    members = 6 if results["workload"] == "toy" else 5
    for style in ("practical", "host"):
        s = results[f"sequential_{style}"]
        table.add_row(f"sequential, {style} (1 device)", str(members), f"{s['compile_s']:.2f}", f"{s['train_s']:.3f}",
                      f"{s['member_examples_per_s']:,.0f}")
    console = Console(width=110)
    console.print(table)
    for key, value in results.items():
        if isinstance(value, float):
            console.print(f"  {key}: {value:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("toy", "w2", "all"), default="all")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--baseline", choices=("practical", "host"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:  # the child process of _baseline_in_fresh_process
        x, y = toy_data() if args.workload == "toy" else w2_data()
        settings = {**TOY, "members": 6} if args.workload == "toy" else W2
        print(json.dumps(sequential_loop(x, y, style=args.baseline, **settings)))
        return
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")
    all_results = []
    for name, workload in (("toy", toy_workload), ("w2", w2_workload)):
        if args.workload in (name, "all"):
            results = workload()
            _print(results)
            all_results.append(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_results, f, indent=2, default=str)


if __name__ == "__main__":
    main()
