"""A trained ensemble: members stacked on a leading axis of one pytree, and how it predicts."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from deepens import validation
from deepens.heads import Head
from deepens.methods import DeepEnsemble, Method
from deepens.models import Model
from deepens.prediction import ClassificationPrediction, RegressionPrediction

# Rows per compiled prediction call. Smaller inputs are padded up to a power of two, so a handful of
# programs serve every batch size instead of one compilation per new size.
PREDICT_CHUNK = 8192


@functools.partial(jax.jit, static_argnames=("model",))
def apply_members(model: Model, params: Any, state: Any, x: Array) -> Array:
    """Every member's outputs in evaluation mode: params/state ``(M, ...)``, x ``(N, ...)`` -> ``(M, N, O)``."""
    return jax.vmap(lambda p, s: model.apply(p, s, x, False)[0])(params, state)


def _bucket(n: int) -> int:
    return min(PREDICT_CHUNK, max(8, 1 << (n - 1).bit_length()))


@dataclasses.dataclass(frozen=True)
class Timings:
    """Seconds spent building an ensemble: compiling (initialisation and training programs, zero when a
    compiled program was reused) and running the training program."""

    compile_s: float
    train_s: float


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """M trained members of one model.

    Attributes:
      model: the network (see :mod:`deepens.models`).
      head: how outputs become distributions (see :mod:`deepens.heads`).
      params: trained parameters; every leaf has a leading member axis of length M.
      state: non-trained model state (e.g. batch-norm statistics), leading axis M; ``{}`` if none.
      input_shape: shape of one input example, e.g. ``(D,)``.
      target_size: regression targets T, or classes K.
      squeeze_target: regression trained on a 1-D ``y``: predictions are ``(N,)`` rather than ``(N, 1)``.
      history: training loss per epoch and member, ``(epochs, M)``.
      member_ids: each member's stream id (its init key and data order derive from the seed and this id).
      seed: the seed the members were trained with.
      timings: compile and training seconds of the fit that made it.
    """

    model: Model
    head: Head
    params: Any
    state: Any
    input_shape: tuple[int, ...]
    target_size: int
    squeeze_target: bool = False
    history: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), np.float32))
    member_ids: tuple[int, ...] = ()
    seed: int = 0
    timings: Timings | None = None
    method: Method = DeepEnsemble()  # methods seam: how the networks hold the members (see deepens.methods)

    @property
    def networks(self) -> int:
        """Networks trained side by side (the leading axis of ``params``): M for a deep ensemble, M / k for
        methods holding k members in one network."""
        return int(jax.tree.leaves(self.params)[0].shape[0])

    @property
    def members(self) -> int:
        return int(jax.tree.leaves(self.params)[0].shape[0]) * self.method.members_per_network

    @property
    def is_classifier(self) -> bool:
        return self.head.is_classifier

    def member_outputs(self, x: Any) -> Array:
        """Raw outputs of every member, ``(M, N, O)``, after checking ``x``."""
        features = validation.features(x, num_features=self._feature_spec())
        n = features.shape[0]
        chunks = []
        for start in range(0, n, PREDICT_CHUNK):
            part = features[start : start + PREDICT_CHUNK]
            size = _bucket(len(part))
            padded = np.concatenate([part, np.zeros((size - len(part), *part.shape[1:]), part.dtype)])
            outputs = self.method.member_outputs(self.model, self.params, self.state, jnp.asarray(padded))
            chunks.append(outputs[:, : len(part)])
        return chunks[0] if len(chunks) == 1 else jnp.concatenate(chunks, axis=1)

    def _feature_spec(self) -> int | tuple[int, ...]:
        return self.input_shape[0] if len(self.input_shape) == 1 else self.input_shape

    def predict(self, x: Any) -> RegressionPrediction | ClassificationPrediction:
        """The ensemble's predictive distribution for inputs ``x`` (``(N, D)``)."""
        outputs = self.member_outputs(x)
        if self.is_classifier:
            return ClassificationPrediction(outputs, self.head)
        return RegressionPrediction(self.head, outputs, self.squeeze_target)

    def select(self, members: Sequence[int] | slice) -> Ensemble:
        """A smaller ensemble made of the chosen members (by position)."""
        if self.method.members_per_network != 1:  # methods seam: members inside one network cannot be split
            raise ValueError(
                f"select needs one member per network; a {self.method.name} ensemble has {self.method.members_per_network}"
            )
        index = np.arange(self.members)[members] if isinstance(members, slice) else np.asarray(members)
        if index.size == 0:
            raise ValueError("select needs at least one member")
        take = lambda leaf: leaf[index]  # noqa: E731
        return dataclasses.replace(
            self,
            params=jax.tree.map(take, self.params),
            state=jax.tree.map(take, self.state),
            history=self.history[:, index] if self.history.size else self.history,
            member_ids=tuple(np.asarray(self.member_ids)[index].tolist()) if self.member_ids else (),
        )
