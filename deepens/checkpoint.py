"""A training checkpoint, and the identity of the run it belongs to.

A checkpoint continues a run only with the same data and the settings that change its result; the
identity (a sha256 over both) is stored with it, and :func:`deepens.fit` refuses to resume from a
checkpoint whose identity differs from the run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Everything needed to continue training to the same result as an uninterrupted run.

    Attributes:
      params, state, opt_state: the members' parameters, model state and optimizer state (leading axis M).
      epoch: epochs completed.
      history: training loss so far, ``(epoch, M)``.
      identity: :func:`run_identity` of the run that wrote it (None: unknown, refused by a resume).
    """

    params: Any
    state: Any
    opt_state: Any
    epoch: int
    history: np.ndarray
    identity: str | None = None


def data_sha256(*arrays: np.ndarray) -> str:
    """sha256 over the bytes, dtypes and shapes of the arrays (as given: callers pass the checked data)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def run_identity(x: np.ndarray, y: np.ndarray, settings: Mapping[str, Any]) -> str:
    """The identity of a training run: sha256 of the data ``x``, ``y`` (bytes, dtypes and shapes) and
    of ``settings`` (plain values whose ``repr`` is stable, e.g. the head, loss, model, seed, members,
    epochs, batch size and optimizer settings)."""
    text = json.dumps({k: repr(v) for k, v in settings.items()}, sort_keys=True)
    return hashlib.sha256((data_sha256(x, y) + text).encode()).hexdigest()
