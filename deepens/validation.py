"""Checks on user input, run before anything is computed, so bad input fails early with a ValueError
that names the problem and nothing is trained, written or changed."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)
SQUARE_LIMIT = float(np.sqrt(FLOAT32_MAX))
"""About 1.8e19: the largest magnitude whose square is finite in float32. Losses square their inputs' scale
(a Gaussian NLL squares the residual), so unstandardised values beyond it train to NaN."""


def _bad_rows(a: np.ndarray) -> np.ndarray:
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a[:, None]
    return np.flatnonzero(~np.all(np.isfinite(flat), axis=1))


def _describe_rows(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:10])
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _real(x: Any, name: str) -> np.ndarray:
    """``x`` as a real numeric array (float32 when that loses no range: floats up to 32 bits, booleans and
    integers up to 32 bits; anything else as float64, so values beyond float32 can be told apart from NaN and
    inf); ValueError for text, objects and complex numbers."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric: {err}") from None
    if np.issubdtype(arr.dtype, np.complexfloating) or (
        arr.dtype == object and any(isinstance(v, complex) for v in arr.reshape(-1)[:1000])
    ):
        raise ValueError(
            f"{name} must be real, got complex values (dtype {arr.dtype}); pass the real and "
            "imaginary parts as separate features"
        )
    if arr.dtype in (np.float16, np.float32) or (arr.dtype.kind in "biu" and arr.dtype.itemsize <= 4):
        return arr.astype(np.float32, copy=False)  # exact or rounded, never beyond float32: no float64 copy
    try:
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric: {err}") from None


def _check_magnitude(arr: np.ndarray, name: str, square_safe: bool, standardised: bool = False) -> None:
    """ValueError naming the rows (and the first row and column) of NaN/inf, of values beyond float32,
    and, with ``square_safe``, of values whose squares overflow float32 (:data:`SQUARE_LIMIT`);
    ``standardised``: ``arr`` is in training standard deviations from the training mean (say so)."""
    bad = _bad_rows(arr)
    if len(bad):
        raise ValueError(f"{name} contains NaN or inf in {_describe_rows(bad)}")
    flat = np.abs(arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr[:, None])
    limit = SQUARE_LIMIT if square_safe else FLOAT32_MAX
    if not np.any(flat > limit):
        return
    huge = flat > FLOAT32_MAX
    if huge.any():
        what = f"values too large for float32 (|{name}| > {FLOAT32_MAX:.3g})"
        where = huge
    else:
        where = flat > limit
        if standardised:
            what = (
                f"values more than {SQUARE_LIMIT:.3g} training standard deviations from the training mean "
                "(their squares overflow float32, so the prediction would be NaN)"
            )
        else:
            what = (
                f"values whose squares overflow float32 (|{name}| > {SQUARE_LIMIT:.3g}; training on them gives "
                f"NaN); standardise {name} first (subtract its mean, divide by its std; the estimators do)"
            )
    rows = np.flatnonzero(where.any(axis=1))
    row = int(rows[0])
    column = int(np.flatnonzero(where[row])[0])
    column_text = str(tuple(int(i) for i in np.unravel_index(column, arr.shape[1:]))) if arr.ndim > 2 else str(column)
    value = arr.reshape(arr.shape[0], -1)[row, column] if arr.ndim > 1 else arr[row]
    raise ValueError(
        f"{name} has {what} in {_describe_rows(rows)}: the first is {float(value):.6g} in row {row}, "
        f"column {column_text}"
    )


def standardised(z: Any, *, name: str = "X") -> np.ndarray:
    """Standardised inputs ``z`` ``(N, D)`` (``(x - mean) / std`` with training statistics, float64) as
    float32, or a ValueError naming the rows lying so far from the training data that float32 overflows."""
    arr = np.asarray(z, np.float64)
    _check_magnitude(arr, name, square_safe=True, standardised=True)
    return arr.astype(np.float32)


def features(
    x: Any, *, name: str = "x", num_features: int | tuple[int, ...] | None = None, square_safe: bool = True
) -> np.ndarray:
    """``x`` as a finite float32 array ``(N, D)`` (or ``(N, ...)`` for image-like inputs).

    Raises ValueError for non-numeric or complex, 0-d or 1-d, empty, NaN/inf input, values too large for
    float32, a width other than ``num_features`` (the width seen in training), and, with ``square_safe``
    (for data the networks see unstandardised), values whose squares overflow float32.
    """
    arr = _real(x, name)
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must be 2-D (examples, features), got shape {arr.shape}; for a single feature use x.reshape(-1, 1)"
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
    _check_magnitude(arr, name, square_safe)
    return arr.astype(np.float32, copy=False)


def _as_shape(num_features: int | tuple[int, ...]) -> tuple[int, ...]:
    return (num_features,) if isinstance(num_features, (int, np.integer)) else tuple(num_features)


def regression_targets(y: Any, n: int, *, name: str = "y", square_safe: bool = True) -> np.ndarray:
    """``y`` as a finite float32 array ``(N, T)`` from ``(N,)`` or ``(N, T)``; the magnitude checks of
    :func:`features` (``square_safe=False`` for targets that are standardised before training)."""
    arr = _real(y, name)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (examples,) or 2-D (examples, targets), got shape {arr.shape}")
    _same_length(name, arr, n)
    if n == 0:
        raise ValueError(f"{name} is empty: it has no examples")
    _check_magnitude(arr, name, square_safe)
    return arr.astype(np.float32, copy=False).reshape(n, -1)


def warn_if_diverged(history: Any, member_ids: Any) -> bool:
    """A RuntimeWarning naming the members whose loss is NaN or inf at the last epoch of ``history``
    ``(epochs, M)``: training diverged and their predictions will be NaN. Returns whether it warned.

    A warning, not an error, so that a long run keeps its result (and its history) for inspection."""
    last = np.asarray(history, np.float64)[-1]
    bad = np.flatnonzero(~np.isfinite(last))
    if len(bad) == 0:
        return False
    ids = [int(member_ids[i]) for i in bad]
    warnings.warn(
        f"training diverged: the loss of member{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids[:10]))}"
        f"{' and more' if len(ids) > 10 else ''} is {last[bad[0]]} after the last epoch, so the ensemble's "
        "predictions will be NaN; standardise x and y (the estimators do), lower learning_rate or clip the "
        "gradient (clip_norm)",
        RuntimeWarning,
        stacklevel=3,
    )
    return True


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


def level(value: Any, *, name: str = "level") -> float:
    """A probability ``value`` (an interval's or a calibration's level) as a float strictly inside (0, 1),
    or a ValueError naming it (None and text included)."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}") from None
    if not 0.0 < result < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return result


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


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
