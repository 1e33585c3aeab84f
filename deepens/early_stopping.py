"""Early stopping on held-out rows: keep, per member, the parameters of the epoch with the lowest
validation NLL, and stop once every member has gone ``patience`` epochs without improving.

The training program runs in compiled chunks of epochs (:mod:`deepens.program`); the validation NLL of
all members is computed by one more compiled program at the end of each chunk, and the best parameters
are kept per member on the device by a compiled ``where``. Nothing is recompiled from chunk to chunk and
there is no Python loop per epoch, so the best epoch is the best *chunk end*: the granularity is
``epochs_per_call`` epochs (about ``epochs / 25``, or 1 when an epoch has 25 steps or more), and
``patience`` is counted in epochs at that granularity.

Scores: the head's negative log-likelihood (for a ``point`` head, which has no density, its training
loss), averaged over the held-out rows, on the scale the networks are trained on.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from deepens.heads import Head
from deepens.models import Model


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """What to stop on: held-out inputs ``x`` ``(Nv, ...)`` and targets ``y`` (``(Nv,)``/``(Nv, T)``, or
    labels), on the training scale; ``patience`` in epochs (>= 1); ``on_result(best_epoch, scores)``,
    if given, receives each member's best epoch ``(M,)`` (0: the initialisation) and the validation NLL
    at each check ``(checks, M)`` with the epochs checked, as ``(epochs (checks,), scores)``; the first check
    is after the first chunk, and a member whose score is never finite keeps its initialisation."""

    x: Any
    y: Any
    patience: int = 10
    on_result: Callable[[np.ndarray, tuple[np.ndarray, np.ndarray]], None] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, (int, np.integer)) or self.patience < 1:
            raise ValueError(f"patience must be an integer >= 1 (epochs), got {self.patience!r}")


@functools.partial(jax.jit, static_argnames=("model", "score"))
def member_scores(model: Model, score: Callable[[Any, Any], Any], params: Any, state: Any, x: Any, y: Any) -> Any:
    """Mean held-out score of every member, ``(M,)``: params/state ``(M, ...)``, x ``(Nv, ...)``."""
    outputs = jax.vmap(lambda p, s: model.apply(p, s, x, False)[0])(params, state)
    return jnp.mean(jax.vmap(lambda o: score(o, y))(outputs), axis=-1)


@jax.jit
def _keep_best(improved: Any, best: Any, current: Any) -> Any:
    def pick(b: Any, c: Any) -> Any:
        return jnp.where(improved.reshape(improved.shape + (1,) * (c.ndim - 1)), c, b)

    return jax.tree.map(pick, best, current)


class Monitor:
    """The running state of one early-stopped training run (made by :func:`deepens.train.fit`).

    ``update(epoch, params, state)`` after each chunk returns True when training should stop;
    ``best()`` gives the kept parameters at the end. ``members``: how many of the trained members are
    the user's (the rest fill devices and are dropped): only they decide when to stop, and are reported."""

    def __init__(
        self,
        stopping: EarlyStopping,
        model: Model,
        head: Head,
        loss: Callable[[Any, Any], Any],
        x: np.ndarray,
        y: np.ndarray,
        params: Any,
        state: Any,
        members: int | None = None,
    ) -> None:
        self.stopping, self.model = stopping, model
        self.members = members
        self.score = loss if head.name == "point" else head.nll
        self.x, self.y = jnp.asarray(x), jnp.asarray(y)
        self.kept = (params, state)
        size = jax.tree.leaves(params)[0].shape[0]
        self.best_score = np.full(size, np.inf)
        self.best_epoch = np.zeros(size, np.int64)
        self.epochs: list[int] = []
        self.scores: list[np.ndarray] = []
        # The initialisation is kept until a check improves on it, but not scored: its parameters live on
        # the host, the trained ones on the devices, and scoring both would compile twice.

    def update(self, epoch: int, params: Any, state: Any) -> bool:
        scores = np.asarray(member_scores(self.model, self.score, params, state, self.x, self.y), np.float64)
        # A non-finite score (a diverged member) never counts as an improvement.
        improved = np.isfinite(scores) & (scores < self.best_score)
        if improved.all():
            self.kept = (params, state)
        elif improved.any():
            self.kept = _keep_best(jnp.asarray(improved), self.kept, (params, state))
        if improved.any():
            self.best_score = np.where(improved, scores, self.best_score)
            self.best_epoch = np.where(improved, epoch, self.best_epoch)
        self.epochs.append(epoch)
        self.scores.append(scores)
        return bool(np.all(epoch - self.best_epoch[: self.members] >= self.stopping.patience))

    def best(self) -> tuple[Any, Any]:
        if self.stopping.on_result is not None:
            k = self.members
            self.stopping.on_result(self.best_epoch[:k].copy(), (np.asarray(self.epochs), np.stack(self.scores)[:, :k]))
        return self.kept


def wanted(flag: Any, patience: Any, held_out: bool) -> bool:
    """An estimator's ``early_stopping``/``patience`` checked: True to stop early on the held-out rows.
    ValueError for a non-bool flag, a bad patience, or early stopping without held-out (calibration) rows."""
    if not isinstance(flag, (bool, np.bool_)):
        raise ValueError(f"early_stopping must be True or False, got {flag!r}")
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(f"patience must be an integer >= 1 (epochs), got {patience!r}")
    if flag and not held_out:
        raise ValueError(
            "early_stopping needs the calibration rows to stop on: turn calibration on "
            "(with 'auto' it is skipped below 50 rows) or set early_stopping=False"
        )
    return bool(flag)
