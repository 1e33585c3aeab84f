"""Input checks shared by the metric families: every metric fails early, with a ValueError that names the
metric and the problem, rather than returning a silently wrong number."""

from __future__ import annotations

from typing import Any

import numpy as np


def floats(metric: str, name: str, a: Any, *, min_ndim: int = 0) -> np.ndarray:
    """``a`` as a finite float64 array (evaluation is done in double precision on the host)."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{metric}: {name} must be numeric ({err})") from None
    if arr.ndim < min_ndim:
        raise ValueError(f"{metric}: {name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{metric}: {name} contains NaN or inf")
    return arr


def nonempty(metric: str, name: str, arr: np.ndarray) -> np.ndarray:
    if arr.size == 0 or (arr.ndim and arr.shape[0] == 0):
        raise ValueError(f"{metric}: {name} is empty (shape {arr.shape}); a metric needs at least one example")
    return arr


def same_shape(metric: str, **arrays: np.ndarray) -> None:
    shapes = {key: np.shape(value) for key, value in arrays.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
        raise ValueError(f"{metric}: arguments must have the same shape, got {described}")


def positive(metric: str, name: str, arr: np.ndarray, *, allow_zero: bool = False) -> np.ndarray:
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{metric}: {name} must be {bound} everywhere, got minimum {arr.min()}")
    return arr


def members(metric: str, y: np.ndarray, **arrays: np.ndarray) -> None:
    """Member arrays must be ``(M,) + y.shape``."""
    for key, value in arrays.items():
        if value.ndim != y.ndim + 1 or value.shape[1:] != y.shape or value.shape[0] < 1:
            raise ValueError(
                f"{metric}: {key} must have shape (members,) + y.shape = (M, {', '.join(map(str, y.shape))}), "
                f"got {value.shape}"
            )
    same_shape(metric, **arrays)


def binary(metric: str, name: str, a: Any) -> np.ndarray:
    """A 1-D boolean array from booleans or 0/1 numbers."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{metric}: {name} must be 1-D (examples,), got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isin(arr, (0, 1))):
            raise ValueError(f"{metric}: {name} must hold booleans or 0/1, got values other than 0 and 1")
        arr = arr.astype(bool)
    return nonempty(metric, name, arr)


def scores(metric: str, name: str, a: Any, n: int) -> np.ndarray:
    """A 1-D finite float array of length ``n``."""
    arr = floats(metric, name, a)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{metric}: {name} must be 1-D with one value per example ({n}), got shape {arr.shape}")
    return arr


def labels_and_probs(metric: str, labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Integer labels ``(N,)`` in ``[0, K)`` and class probabilities ``(N, K)`` whose rows sum to 1."""
    p = floats(metric, "probs", probs)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{metric}: probs must be 2-D (examples, classes >= 2), got shape {p.shape}")
    nonempty(metric, "probs", p)
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"{metric}: probs must lie in [0, 1], got values in [{p.min()}, {p.max()}]")
    sums = p.sum(axis=1)
    # float32 softmax averages sum to 1 within a few 1e-7; anything further off is not a distribution.
    if np.any(np.abs(sums - 1.0) > 1e-3):
        worst = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(f"{metric}: each row of probs must sum to 1, row {worst} sums to {sums[worst]}")
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"{metric}: labels must be 1-D with one label per row of probs ({p.shape[0]}), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or np.any(y != np.round(y)):
            raise ValueError(f"{metric}: labels must be integer class indices, got dtype {y.dtype}")
        y = y.astype(np.int64)
    if np.any(y < 0) or np.any(y >= p.shape[1]):
        raise ValueError(f"{metric}: labels must lie in [0, {p.shape[1]}), got values in [{y.min()}, {y.max()}]")
    return y.astype(np.int64), p
