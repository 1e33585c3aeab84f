"""Dataset shifts: shapes, range, identity at 0, monotone pixel change, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from deepens.data import shift


def _toy_digits(n: int = 16) -> np.ndarray:
    """Thick strokes (a bar, a ring, a diagonal) at random offsets: digit-like 28x28 images in [0, 1]."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:28, 0:28]
    out = np.zeros((n, 28, 28))
    for i in range(n):
        r0, c0 = rng.integers(10, 18, size=2)
        kind = i % 3
        if kind == 0:
            d = np.abs(cols - c0)
            mask = (d < 2.5) & (np.abs(rows - r0) < 9)
        elif kind == 1:
            d = np.abs(np.hypot(rows - r0, cols - c0) - 6)
            mask = d < 1.8
        else:
            d = np.abs((rows - r0) - (cols - c0)) / np.sqrt(2)
            mask = (d < 1.8) & (np.abs(rows - r0) < 8)
        out[i] = np.where(mask, 1.0 - 0.3 * rng.random((28, 28)), 0.0)
    return out


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    from deepens.data.mnist import load_mnist

    for folder in (None, "/work/shared/data"):
        try:
            _, test = load_mnist(folder)
            return (test.take(64).images / 255.0).astype(np.float32)
        except FileNotFoundError:
            continue
    return _toy_digits().astype(np.float32)


def _change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.mark.parametrize("name", sorted(shift.CORRUPTIONS))
def test_corruption_shape_range_identity_monotone(name: str, digits: np.ndarray) -> None:
    fn = shift.CORRUPTIONS[name]
    assert np.array_equal(fn(digits, 0, 3), digits)
    changes = []
    for level in range(6):
        out = fn(digits, level, 7)
        assert out.shape == digits.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        flat = fn(digits.reshape(len(digits), -1), level, 7)
        assert flat.shape == (len(digits), 784)
        np.testing.assert_array_equal(flat.reshape(digits.shape), out)
        changes.append(_change(out, digits))
    assert changes[0] == 0.0
    assert all(b > a for a, b in zip(changes, changes[1:])), changes


@pytest.mark.parametrize("name", sorted(shift.CORRUPTIONS))
def test_corruption_deterministic_for_a_seed(name: str, digits: np.ndarray) -> None:
    fn = shift.CORRUPTIONS[name]
    np.testing.assert_array_equal(fn(digits, 4, 11), fn(digits, 4, 11))
    np.testing.assert_array_equal(shift.apply_shift(name, digits, 4, seed=11), fn(digits, 4, 11))


def test_noise_depends_on_seed(digits: np.ndarray) -> None:
    for name in ("shot_noise", "impulse_noise"):
        assert not np.array_equal(shift.CORRUPTIONS[name](digits, 3, 0), shift.CORRUPTIONS[name](digits, 3, 1))


def test_at_least_six_corruptions() -> None:
    assert len(shift.CORRUPTIONS) >= 6
    assert set(shift.KINDS) == {"rotate", "translate", *shift.CORRUPTIONS}


def test_rotate_closed_forms(digits: np.ndarray) -> None:
    np.testing.assert_array_equal(shift.rotate(digits, 0), digits.astype(np.float32))
    np.testing.assert_array_equal(shift.rotate(digits, 360), digits.astype(np.float32))
    # A quarter turn on the pixel grid is exact: it equals np.rot90 (counter-clockwise).
    np.testing.assert_allclose(shift.rotate(digits, 90), np.rot90(digits, 1, axes=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(shift.rotate(digits, 180), digits[:, ::-1, ::-1], atol=1e-6)
    flat = shift.rotate(digits.reshape(len(digits), -1), 30)
    assert flat.shape == (len(digits), 784)
    changes = [_change(shift.rotate(digits, a), digits) for a in (0, 15, 30, 45)]
    assert all(b > a for a, b in zip(changes, changes[1:])), changes


def test_translate_closed_form(digits: np.ndarray) -> None:
    out = shift.translate(digits, 3)
    np.testing.assert_allclose(out[:, :, 3:], digits[:, :, :-3], atol=1e-6)
    assert np.all(out[:, :, :3] == 0)
    np.testing.assert_allclose(shift.translate(digits, -2)[:, :, :-2], digits[:, :, 2:], atol=1e-6)
    assert np.all(shift.translate(digits, 28) == 0)
    assert shift.apply_shift("translate", digits, 5).shape == digits.shape


def test_input_not_modified(digits: np.ndarray) -> None:
    before = digits.copy()
    for name in shift.CORRUPTIONS:
        shift.CORRUPTIONS[name](digits, 5, 0)
    shift.rotate(digits, 45)
    np.testing.assert_array_equal(digits, before)


@pytest.mark.parametrize("bad", [-1, 6, 2.5, True, "3", None])
def test_bad_intensity(bad: object, digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="intensity"):
        shift.apply_shift("contrast", digits, bad)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown shift"):
        shift.apply_shift("fog", np.zeros((2, 28, 28)), 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        shift.shot_noise(np.full((2, 28, 28), 255.0), 1)
    with pytest.raises(ValueError, match="square"):
        shift.rotate(np.zeros((2, 700)), 10)
    with pytest.raises(ValueError, match="shape"):
        shift.translate(np.zeros((2, 2, 28, 28)), 1)
    with pytest.raises(ValueError, match="degrees"):
        shift.rotate(np.zeros((2, 28, 28)), float("nan"))


def test_check_shift() -> None:
    shift.check_shift("rotate", 37.5)
    shift.check_shift("stripe", 5)
    with pytest.raises(ValueError, match="unknown shift"):
        shift.check_shift("fog", 1)
    with pytest.raises(ValueError, match="intensity"):
        shift.check_shift("stripe", 6)
    with pytest.raises(ValueError, match="pixels"):
        shift.check_shift("translate", "left")
