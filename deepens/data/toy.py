"""Toy data of the Deep Ensembles practical: a noisy cubic and three interleaved spirals."""

from __future__ import annotations

import numpy as np


def cubic(
    n: int = 40, *, low: float = -4.0, high: float = 4.0, noise: float = 3.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``x ~ U(low, high)``, ``y = x^3 + N(0, noise^2)`` (the practical: 40 points on [-4, 4], noise 3).

    Returns:
      ``x`` ``(n, 1)`` and ``y`` ``(n,)``, float32.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=(n, 1))
    y = cubic_truth(x[:, 0]) + rng.normal(0.0, noise, size=n)
    return x.astype(np.float32), y.astype(np.float32)


def cubic_truth(x: np.ndarray) -> np.ndarray:
    """The noise-free function ``x^3``."""
    return np.asarray(x) ** 3


def spirals(
    points_per_class: int = 1000, *, classes: int = 3, noise: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms, one per class (the CS231n construction used by the practical).

    Arm ``k`` has radius ``r`` evenly spaced on [0, 1] and angle ``theta = 4 (k + r)`` radians plus Gaussian
    noise of standard deviation ``noise``; the point is ``(r sin theta, r cos theta)``.

    Returns:
      ``x`` ``(K * points_per_class, 2)`` float32 and labels ``(K * points_per_class,)`` int32, in class order.
    """
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.0, 1.0, points_per_class), classes)
    label = np.repeat(np.arange(classes), points_per_class)
    theta = 4.0 * (label + radius) + rng.normal(0.0, noise, radius.shape)
    x = np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1)
    return x.astype(np.float32), label.astype(np.int32)
