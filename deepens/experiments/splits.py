"""Train many independent data sets of one shape side by side: every split of a benchmark, each with its
own ensemble, in one compiled program.

The splits of a data set are independent experiments, exactly like the members of an ensemble, so the
member axis of :func:`deepens.train.train_members` carries ``splits x members`` networks, each with its
own copy of its split's data (``Program(shared_data=False)``). Member ``m`` of every split uses stream
``m`` of the seed, so each split's ensemble is the very ensemble ``deepens.fit(x_split, y_split,
seed=seed)`` would train alone (same initialisation, same data order).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import optax

from deepens.adversarial import Adversarial, input_scale
from deepens.devices import Devices, MemberPlan
from deepens.ensemble import Ensemble, Timings
from deepens.heads import Head
from deepens.models import MLP, as_model
from deepens.train import Program, epochs_per_call, init_members, make_optimizer, train_members


@dataclasses.dataclass(frozen=True)
class SplitEnsembles:
    """One trained ensemble per split.

    Attributes:
      ensembles: one :class:`~deepens.ensemble.Ensemble` per split, each of ``members`` networks.
      history: training loss ``(epochs, splits, members)``.
      timings: compile and training seconds of the one program that trained them all.
    """

    ensembles: tuple[Ensemble, ...]
    history: np.ndarray
    timings: Timings


def train_splits(
    x: np.ndarray,
    y: np.ndarray,
    *,
    head: Head,
    loss: str,
    hidden: tuple[int, ...],
    members: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    adversarial: Adversarial | None = None,
    optimizer: optax.GradientTransformation | None = None,
    seed: int = 0,
    devices: Devices = None,
) -> SplitEnsembles:
    """Train ``members`` networks on each of ``S`` data sets of equal size, together.

    Args:
      x: inputs ``(S, N, D)``; y: targets ``(S, N)`` (already standardised if wanted).
      head, loss: the members' head and its training loss name.
      adversarial: FGSM/VAT; a relative eps is taken per split from that split's feature ranges.
      optimizer: any Optax transformation (default Adam at ``learning_rate``).
      devices: where to train (as ``deepens.fit``'s ``devices``).
    Returns:
      :class:`SplitEnsembles`.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    if x.ndim != 3 or y.shape != x.shape[:2]:
        raise ValueError(f"train_splits needs x (splits, N, D) and y (splits, N), got {x.shape} and {y.shape}")
    splits, n, _ = x.shape
    networks = splits * members
    batch = min(batch_size, n)
    # Split s, member m is network s * members + m with stream m; any padding that evens out the devices
    # reuses the last split's data with fresh streams and is dropped afterwards.
    plan = MemberPlan.make([m for _ in range(splits) for m in range(members)], batch, devices)
    ids, padded = list(plan.trained_ids), len(plan.trained_ids)
    of_split = np.r_[np.repeat(np.arange(splits), members), np.full(padded - networks, splits - 1)]
    if adversarial is not None:
        scale = np.stack([input_scale(xs, adversarial.relative) for xs in x])[of_split]
    else:
        scale = np.ones((padded, x.shape[2]), np.float32)
    model = as_model(MLP(tuple(hidden), head.num_outputs(1)))
    optimizer = make_optimizer(float(learning_rate)) if optimizer is None else optimizer
    program = Program(model, head, loss, optimizer, adversarial, batch, epochs_per_call(epochs, -(-n // batch)), False)
    start = time.perf_counter()
    params, state = init_members(model, seed, ids, x[0, :1])
    init_s = time.perf_counter() - start
    params, state, history, timings = train_members(
        program,
        params,
        state,
        x[of_split],
        y[of_split][..., None],
        epochs=epochs,
        seed=seed,
        member_ids=ids,
        scale=scale,
        mesh=plan.training_mesh,
    )
    params, state = jax.device_get((params, state))
    ensembles = []
    for s in range(splits):
        part = slice(s * members, (s + 1) * members)
        take = lambda leaf: np.asarray(leaf[part])  # noqa: E731
        ensembles.append(
            Ensemble(
                model=model,
                head=head,
                params=jax.tree.map(take, params),
                state=jax.tree.map(take, state),
                input_shape=x.shape[2:],
                target_size=1,
                squeeze_target=True,
                history=history[:, part],
                member_ids=tuple(range(members)),
                seed=seed,
            )
        )
    history = history[:, :networks].reshape(epochs, splits, members)
    return SplitEnsembles(tuple(ensembles), history, Timings(init_s + timings.compile_s, timings.train_s))


def group_by_size(sizes: list[int]) -> list[list[int]]:
    """Split indices grouped by training-set size, in order of first appearance (equal sizes train
    together; the standard UCI splits all have one size per data set)."""
    groups: dict[int, list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(size, []).append(i)
    return list(groups.values())
