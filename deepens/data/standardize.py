"""Standardisation with training statistics: per-column mean and standard deviation."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Standardizer:
    """Per-column mean and standard deviation of a training part, ``(D,)`` each.

    A column with no spread (to rounding: std at most 1e-12 of its magnitude) gets scale 1, so it is only
    centred rather than blown up by a division by (almost) zero.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, a: np.ndarray) -> Standardizer:
        a = np.asarray(a, np.float64)
        mean, std = a.mean(axis=0), a.std(axis=0)
        constant = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
        return cls(mean=mean, std=np.where(constant, 1.0, std))

    def transform(self, a: np.ndarray) -> np.ndarray:
        return (a - self.mean) / self.std
