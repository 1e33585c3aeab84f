"""Deterministic, seeded dataset shifts of greyscale images (Ovadia et al. 2019; MNIST-C, Mu & Gilmer 2019).

Every function takes ``images`` as ``(N, H, W)`` or flattened ``(N, H * W)`` (square images) floats in
[0, 1], returns float32 of the *input's* shape, also in [0, 1], and never modifies its input.

- :func:`rotate` (degrees, counter-clockwise) and :func:`translate` (pixels, to the right) are the
  continuous shifts of Ovadia et al.'s MNIST experiment.
- :data:`CORRUPTIONS` are MNIST-C style corruptions ``(images, intensity, seed) -> images`` with integer
  intensity 0..5; 0 is the identity and the mean absolute pixel change grows with the intensity.

Only NumPy and SciPy; the randomness of a corruption comes from ``numpy.random.default_rng(seed)``,
so the same seed gives the same images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from scipy import ndimage

INTENSITIES = (0, 1, 2, 3, 4, 5)


def _as_images(name: str, images: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(N, H, W)`` float64 copy and the input's shape; ValueError on a bad shape or range."""
    x = np.asarray(images, dtype=np.float64)
    shape = x.shape
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1] or side == 0:
            raise ValueError(f"{name}: flattened images need a square number of pixels, got {x.shape[1]}")
        x = x.reshape(len(x), side, side)
    elif x.ndim != 3:
        raise ValueError(f"{name}: images must be (N, H, W) or (N, H*W), got shape {shape}")
    if x.size and (not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"{name}: pixel values must be finite and in [0, 1]")
    return x, shape


def _back(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).reshape(shape).astype(np.float32)


def _level(name: str, intensity: Any) -> int:
    if isinstance(intensity, bool) or not isinstance(intensity, (int, np.integer)) or intensity not in INTENSITIES:
        raise ValueError(f"{name}: intensity must be an integer in 0..5, got {intensity!r}")
    return int(intensity)


def _finite(name: str, what: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}: {what} must be finite, got {value!r}")
    return v


def rotate(images: Any, degrees: float) -> np.ndarray:
    """Rotate every image by ``degrees`` counter-clockwise about its centre (bilinear, zero fill)."""
    angle = _finite("rotate", "degrees", degrees)
    x, shape = _as_images("rotate", images)
    if angle % 360.0 == 0.0:
        return _back(x, shape)
    out = ndimage.rotate(x, angle, axes=(2, 1), reshape=False, order=1, mode="constant", cval=0.0)
    return _back(out, shape)


def translate(images: Any, pixels: float) -> np.ndarray:
    """Shift every image ``pixels`` to the right (negative: left), filling with zeros."""
    amount = _finite("translate", "pixels", pixels)
    x, shape = _as_images("translate", images)
    if amount == 0.0:
        return _back(x, shape)
    out = ndimage.shift(x, (0.0, 0.0, amount), order=1, mode="constant", cval=0.0)
    return _back(out, shape)


# Severities per intensity 1..5 (index 0 unused), chosen in the spirit of MNIST-C.
_SHOT = (None, 60.0, 25.0, 12.0, 5.0, 3.0)  # Poisson photons at full intensity: fewer = noisier
_IMPULSE = (None, 0.03, 0.06, 0.09, 0.17, 0.27)  # fraction of pixels set to 0 or 1
_BLUR = (None, 0.5, 0.8, 1.1, 1.5, 2.0)  # Gaussian sigma, pixels
_MOTION = (None, 3, 5, 7, 9, 11)  # line kernel length, pixels
_CONTRAST = (None, 0.6, 0.45, 0.3, 0.2, 0.1)  # factor on the deviation from each image's mean
_BRIGHTNESS = (None, 0.1, 0.2, 0.3, 0.4, 0.5)  # added to every pixel
_STRIPE = (None, 8, 6, 4, 3, 2)  # period of the inverted columns: every p-th column inverted
_SHEAR = (None, 0.1, 0.2, 0.3, 0.4, 0.5)  # horizontal shear factor
_SCALE = (None, 0.9, 0.8, 0.7, 0.6, 0.5)  # zoom factor about the centre

_T = TypeVar("_T")


def _setting(table: tuple[_T | None, ...], level: int) -> _T:
    """``table[level]`` for a level of 1 to 5 (level 0, the clean images, returns before reading one)."""
    value = table[level]
    assert value is not None, level
    return value


def shot_noise(images: Any, intensity: int, seed: int = 0) -> np.ndarray:
    """Poisson (photon) noise: ``Poisson(x * c) / c`` with fewer photons ``c`` at higher intensity."""
    level = _level("shot_noise", intensity)
    x, shape = _as_images("shot_noise", images)
    if level == 0:
        return _back(x, shape)
    c = _setting(_SHOT, level)
    return _back(np.random.default_rng(seed).poisson(x * c) / c, shape)


def impulse_noise(images: Any, intensity: int, seed: int = 0) -> np.ndarray:
    """Salt-and-pepper noise: a fraction of the pixels, half set to 0 and half to 1."""
    level = _level("impulse_noise", intensity)
    x, shape = _as_images("impulse_noise", images)
    if level == 0:
        return _back(x, shape)
    rng = np.random.default_rng(seed)
    hit = rng.random(x.shape) < _setting(_IMPULSE, level)
    salt = rng.random(x.shape) < 0.5
    return _back(np.where(hit, salt.astype(np.float64), x), shape)


def gaussian_blur(images: Any, intensity: int, seed: int = 0) -> np.ndarray:
    """Gaussian blur of each image (no blur across images); ``seed`` is unused (deterministic)."""
    level = _level("gaussian_blur", intensity)
    x, shape = _as_images("gaussian_blur", images)
    if level == 0:
        return _back(x, shape)
    return _back(ndimage.gaussian_filter(x, sigma=(0.0, _BLUR[level], _BLUR[level]), mode="constant"), shape)


def _line_kernel(length: int, angle: float) -> np.ndarray:
    """A normalised ``(length, length)`` kernel: a bilinear line through the centre at ``angle`` radians."""
    kernel = np.zeros((length, length))
    centre = (length - 1) / 2.0
    for t in np.linspace(-centre, centre, 4 * length):
        r, c = centre - t * math.sin(angle), centre + t * math.cos(angle)
        r0, c0 = int(math.floor(r)), int(math.floor(c))
        for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
            rr, cc = r0 + dr, c0 + dc
            if 0 <= rr < length and 0 <= cc < length:
                kernel[rr, cc] += (1 - abs(r - rr)) * (1 - abs(c - cc))
    return kernel / kernel.sum()


def motion_blur(images: Any, intensity: int, seed: int = 0) -> np.ndarray:
    """Blur along a line of growing length, at one angle drawn from ``seed`` for the whole batch."""
    level = _level("motion_blur", intensity)
    x, shape = _as_images("motion_blur", images)
    if level == 0:
        return _back(x, shape)
    angle = np.random.default_rng(seed).uniform(-math.pi / 4, math.pi / 4)
    kernel = _line_kernel(_setting(_MOTION, level), angle)[None]
    return _back(ndimage.convolve(x, kernel, mode="constant", cval=0.0), shape)


def contrast(images: Any, intensity: int, seed: int = 0) -> np.ndarray:
    """Shrink each image's deviation from its own mean pixel value; ``seed`` is unused."""
    level = _level("contrast", intensity)
    x, shape = _as_images("contrast", images)
    if level == 0:
        return _back(x, shape)
    mean = x.mean(axis=(1, 2), keepdims=True)
    return _back(mean + _CONTRAST[level] * (x - mean), shape)


def brightness(images: Any, intensity: int, seed: int = 0) -> np.ndarray:
    """Add a constant to every pixel (then clip to [0, 1]); ``seed`` is unused."""
    level = _level("brightness", intensity)
    x, shape = _as_images("brightness", images)
    return _back(x + (_BRIGHTNESS[level] if level else 0.0), shape)


def stripe(images: Any, intensity: int, seed: int = 0) -> np.ndarray:
    """Invert every p-th pixel column (``1 - x``), denser at higher intensity, offset drawn from ``seed``."""
    level = _level("stripe", intensity)
    x, shape = _as_images("stripe", images)
    if level == 0:
        return _back(x, shape)
    period = _setting(_STRIPE, level)
    offset = int(np.random.default_rng(seed).integers(period))
    columns = (np.arange(x.shape[2]) % period) == offset
    return _back(np.where(columns[None, None, :], 1.0 - x, x), shape)


def _affine(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply the 2x2 output-to-input ``matrix`` about each image's centre, bilinear, zero fill."""
    centre = (np.array(x.shape[1:]) - 1) / 2.0
    full = np.eye(3)
    full[1:, 1:] = matrix
    offset = np.concatenate([[0.0], centre - matrix @ centre])
    # scipy's stubs say offset: float; it takes one offset per axis as well
    return ndimage.affine_transform(x, full, offset=offset, order=1, mode="constant", cval=0.0)  # pyright: ignore[reportArgumentType]


def shear(images: Any, intensity: int, seed: int = 0) -> np.ndarray:
    """Horizontal shear about the centre by a growing factor, its sign drawn from ``seed``."""
    level = _level("shear", intensity)
    x, shape = _as_images("shear", images)
    if level == 0:
        return _back(x, shape)
    sign = 1.0 if np.random.default_rng(seed).random() < 0.5 else -1.0
    return _back(_affine(x, np.array([[1.0, 0.0], [sign * _setting(_SHEAR, level), 1.0]])), shape)


def scale(images: Any, intensity: int, seed: int = 0) -> np.ndarray:
    """Shrink each image about its centre by a growing factor (zero fill); ``seed`` is unused."""
    level = _level("scale", intensity)
    x, shape = _as_images("scale", images)
    if level == 0:
        return _back(x, shape)
    return _back(_affine(x, np.eye(2) / _setting(_SCALE, level)), shape)


Corruption = Callable[..., np.ndarray]

CORRUPTIONS: dict[str, Corruption] = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "contrast": contrast,
    "brightness": brightness,
    "stripe": stripe,
    "shear": shear,
    "scale": scale,
}

KINDS = ("rotate", "translate", *CORRUPTIONS)


def check_shift(kind: str, intensity: Any) -> None:
    """ValueError unless ``(kind, intensity)`` names a shift :func:`apply_shift` can make."""
    if kind not in KINDS:
        raise ValueError(f"unknown shift {kind!r}; choose from {', '.join(KINDS)}")
    if kind in CORRUPTIONS:
        _level(kind, intensity)
    else:
        _finite(kind, "degrees" if kind == "rotate" else "pixels", intensity)


def apply_shift(kind: str, images: Any, intensity: float, seed: int = 0) -> np.ndarray:
    """One shift by name: ``rotate`` (intensity in degrees), ``translate`` (pixels) or a corruption of
    :data:`CORRUPTIONS` (integer intensity 0..5, randomness from ``seed``)."""
    if kind == "rotate":
        return rotate(images, intensity)
    if kind == "translate":
        return translate(images, intensity)
    if kind not in CORRUPTIONS:
        raise ValueError(f"apply_shift: unknown shift {kind!r}; choose from {', '.join(KINDS)}")
    return CORRUPTIONS[kind](images, intensity, seed)
