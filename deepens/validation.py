"""Checks on user input, run before anything is computed, so bad input fails early with a ValueError
that names the problem and nothing is trained, written or changed."""

from __future__ import annotations

from typing import Any

import numpy as np


def _bad_rows(a: np.ndarray) -> np.ndarray:
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a[:, None]
    return np.flatnonzero(~np.all(np.isfinite(flat), axis=1))


def _describe_rows(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:10])
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def features(x: Any, *, name: str = "x", num_features: int | None = None) -> np.ndarray:
    """``x`` as a finite float32 array ``(N, D)`` (or ``(N, ...)`` for image-like inputs).

    Raises ValueError for non-numeric, 0-d or 1-d, empty, NaN/inf input, or a width other than
    ``num_features`` (the width seen in training).
    """
    arr = _float32(x, name)
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must be 2-D (examples, features), got shape {arr.shape}; "
            "for a single feature use x.reshape(-1, 1)"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no examples (shape {arr.shape})")
    if arr.size == 0:
        raise ValueError(f"{name} has no features (shape {arr.shape})")
    if num_features is not None and arr.shape[1:] != _as_shape(num_features):
        raise ValueError(
            f"{name} has {arr.shape[1:] if arr.ndim > 2 else arr.shape[1]} features per example, "
            f"but the model was trained on {num_features}"
        )
    bad = _bad_rows(arr)
    if len(bad):
        raise ValueError(f"{name} contains NaN or inf in {_describe_rows(bad)}")
    return arr


def _as_shape(num_features: int | tuple[int, ...]) -> tuple[int, ...]:
    return (num_features,) if isinstance(num_features, (int, np.integer)) else tuple(num_features)


def regression_targets(y: Any, n: int, *, name: str = "y") -> np.ndarray:
    """``y`` as a finite float32 array ``(N, T)`` from ``(N,)`` or ``(N, T)``."""
    arr = _float32(y, name)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (examples,) or 2-D (examples, targets), got shape {arr.shape}")
    _same_length(name, arr, n)
    bad = _bad_rows(arr)
    if len(bad):
        raise ValueError(f"{name} contains NaN or inf in {_describe_rows(bad)}")
    return arr.reshape(n, -1)


def class_labels(y: Any, n: int, *, num_classes: int | None = None, name: str = "y") -> tuple[np.ndarray, int]:
    """Integer labels ``(N,)`` in ``[0, K)`` and ``K`` (``num_classes``, or the largest label + 1)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels (examples,), got shape {arr.shape}")
    _same_length(name, arr, n)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold integer class labels 0..K-1, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = _bad_rows(arr)
        if len(bad):
            raise ValueError(f"{name} contains NaN or inf in {_describe_rows(bad)}")
        if np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must hold integer class labels, got non-integer values")
    _labels_fit_int32(name, arr)
    labels = arr.astype(np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    positive_int("num_classes", num_classes)
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(outside):
        raise ValueError(
            f"{name} has class labels outside [0, {num_classes}) in {_describe_rows(outside)} "
            f"(e.g. {labels[outside[0]]})"
        )
    if num_classes < 2:
        raise ValueError(f"classification needs at least 2 classes, got {num_classes}")
    return labels.astype(np.int32), int(num_classes)


def _same_length(name: str, arr: np.ndarray, n: int) -> None:
    if arr.shape[0] != n:
        raise ValueError(f"x has {n} examples but {name} has {arr.shape[0]}; they must have the same length")


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _float32(a: Any, name: str) -> np.ndarray:
    """``a`` as float32; ValueError for non-numbers, complex numbers (whose imaginary part would be dropped)
    and finite values too large for float32 (which would become inf), naming the rows of the latter."""
    try:
        raw = np.asarray(a)
        if raw.dtype.kind == "c":
            raise ValueError(f"{name} must be real numbers, got complex dtype {raw.dtype}")
        with np.errstate(over="ignore"):
            arr = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as err:
        if str(err).startswith(name):
            raise
        raise ValueError(f"{name} must be numeric: {err}") from None
    # Only floats wider than float32 can overflow it (every integer up to 2**64 fits its range).
    if raw.dtype.kind == "f" and raw.dtype.itemsize > 4 and arr.ndim and arr.shape[0] and not np.all(np.isfinite(arr)):
        rows = _bad_rows(arr)
        became_inf = np.isinf(arr.reshape(arr.shape[0], -1)[rows]) & np.isfinite(raw.reshape(raw.shape[0], -1)[rows])
        overflow = rows[np.any(became_inf, axis=1)]
        if len(overflow):
            raise ValueError(
                f"{name} is too large for float32 (magnitude above {float(np.finfo(np.float32).max):.3g}) in "
                f"{_describe_rows(overflow)}; rescale it"
            )
    return arr


def _labels_fit_int32(name: str, labels: np.ndarray) -> None:
    """Class labels must be indices a model can have: non-empty and below 2**31 - 1 (labels are int32)."""
    if labels.size == 0:
        raise ValueError(f"{name} is empty: it has no class labels")
    limit = np.iinfo(np.int32).max
    too_large = np.flatnonzero(np.abs(labels.astype(np.float64)) >= limit)
    if len(too_large):
        raise ValueError(
            f"{name} has class labels too large to be class indices in {_describe_rows(too_large)} "
            f"(e.g. {labels[too_large[0]]}); labels are 0..K-1"
        )
