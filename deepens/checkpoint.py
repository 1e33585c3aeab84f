"""A training checkpoint, and the identity of the run it belongs to.

A checkpoint continues a run only with the same data, the settings that change its result, the same
model (parameter shapes) and the same device layout. :func:`run_identity` keeps each of these parts
apart, so :func:`check_resume` can refuse a checkpoint of another run and say *what* differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

_SHOWN = 60  # characters of a setting's value shown in a message


@dataclasses.dataclass(frozen=True)
class RunIdentity:
    """What a run is, part by part (all plain values, so it is stored as JSON with a checkpoint).

    Attributes:
      x, y: sha256 of the inputs and targets (bytes, dtype and shape; see :func:`data_sha256`).
      x_shape, y_shape: their shapes, to say how they differ.
      settings: ``(name, repr(value))`` pairs, sorted by name.
      shapes: ``(leaf name, shape)`` of the parameters, member axis included (None: not recorded).
      devices: the device layout the run trains on, e.g. ``(("data", 1), ("members", 2), ("platform",
        "cpu"))`` (None: not recorded).
    """

    x: str
    y: str
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    settings: tuple[tuple[str, str], ...]
    shapes: tuple[tuple[str, tuple[int, ...]], ...] | None = None
    devices: tuple[tuple[str, Any], ...] | None = None

    @property
    def digest(self) -> str:
        """sha256 of every part: one name for the run (kept in a checkpoint's manifest)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "y": self.y,
            "x_shape": list(self.x_shape),
            "y_shape": list(self.y_shape),
            "settings": dict(self.settings),
            "shapes": None if self.shapes is None else {name: list(shape) for name, shape in self.shapes},
            "devices": None if self.devices is None else dict(self.devices),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> RunIdentity:
        """The identity :meth:`to_json` wrote; a ValueError for anything else."""
        try:
            shapes, layout = value["shapes"], value["devices"]
            return cls(
                x=str(value["x"]),
                y=str(value["y"]),
                x_shape=tuple(int(d) for d in value["x_shape"]),
                y_shape=tuple(int(d) for d in value["y_shape"]),
                settings=tuple(sorted((str(k), str(v)) for k, v in value["settings"].items())),
                shapes=None
                if shapes is None
                else tuple(sorted((str(k), tuple(int(d) for d in v)) for k, v in shapes.items())),
                devices=None if layout is None else tuple(sorted((str(k), v) for k, v in layout.items())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"not a run identity ({type(err).__name__}: {err})") from None


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Everything needed to continue training to the same result as an uninterrupted run.

    Attributes:
      params, state, opt_state: the members' parameters, model state and optimizer state (leading axis M).
      epoch: epochs completed.
      history: training loss so far, ``(epoch, M)``.
      identity: :func:`run_identity` of the run that wrote it (None: unknown, refused by a resume; a
        string: the single digest of an older deepens, refused too).
    """

    params: Any
    state: Any
    opt_state: Any
    epoch: int
    history: np.ndarray
    identity: RunIdentity | str | None = None


def data_sha256(*arrays: np.ndarray) -> str:
    """sha256 over the bytes, dtypes and shapes of the arrays (as given: callers pass the checked data)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def parameter_shapes(params: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``(leaf name, shape)`` of a pytree of arrays (or ``jax.ShapeDtypeStruct``), sorted by name."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return tuple(sorted((jax.tree_util.keystr(p), tuple(int(d) for d in np.shape(leaf))) for p, leaf in leaves))


def run_identity(
    x: np.ndarray,
    y: np.ndarray,
    settings: Mapping[str, Any],
    *,
    params: Any = None,
    devices: Mapping[str, Any] | None = None,
) -> RunIdentity:
    """The identity of a training run, part by part.

    Args:
      x, y: the checked training data (hashed with dtypes and shapes).
      settings: plain values whose ``repr`` is stable (the head, loss, model, seed, member ids, batch size,
        adversarial training, method and optimizer settings).
      params: the freshly initialised parameters (any pytree of arrays or shapes), whose shapes a
        checkpoint's parameters must have; None records none.
      devices: the device layout that decides the compiled program, e.g. ``{"members": 2, "data": 1,
        "platform": "cpu"}`` from the training mesh; None records none. Not the number of devices JAX
        sees: see :func:`check_resume`.
    """
    return RunIdentity(
        x=data_sha256(x),
        y=data_sha256(y),
        x_shape=tuple(np.shape(x)),
        y_shape=tuple(np.shape(y)),
        settings=tuple(sorted((str(k), repr(v)) for k, v in settings.items())),
        shapes=None if params is None else parameter_shapes(params),
        devices=None if devices is None else tuple(sorted((str(k), v) for k, v in devices.items())),
    )


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _shape_differences(
    saved: tuple[tuple[str, tuple[int, ...]], ...], now: tuple[tuple[str, tuple[int, ...]], ...]
) -> str | None:
    a, b = dict(saved), dict(now)
    lines = [
        f"{name} {list(a[name]) if name in a else 'absent'} in the checkpoint, {list(b[name]) if name in b else 'absent'} now"
        for name in sorted(set(a) | set(b))
        if a.get(name) != b.get(name)
    ]
    if not lines:
        return None
    more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
    return "model parameter shapes differ (another model or hidden sizes): " + "; ".join(lines[:3]) + more


def _layout(layout: tuple[tuple[str, Any], ...] | None) -> str:
    return "unrecorded" if layout is None else ", ".join(f"{k}={v}" for k, v in layout)


def differences(saved: RunIdentity, now: RunIdentity) -> list[str]:
    """What differs between the run that wrote a checkpoint (``saved``) and this one, one phrase per part."""
    found = []
    for name, digest, shape, new_digest, new_shape in (
        ("x", saved.x, saved.x_shape, now.x, now.x_shape),
        ("y", saved.y, saved.y_shape, now.y, now.y_shape),
    ):
        if digest != new_digest:
            how = (
                f"other values of the same shape {_dims(shape)}"
                if shape == new_shape
                else f"shape {_dims(shape)} in the checkpoint, {_dims(new_shape)} now"
            )
            found.append(f"the data {name} differ ({how})")
    a, b = dict(saved.settings), dict(now.settings)
    changed = [
        f"{k} ({_shown(a.get(k, 'absent'))} in the checkpoint, {_shown(b.get(k, 'absent'))} now)"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]
    if changed:
        found.append("settings differ: " + ", ".join(changed))
    if saved.shapes is not None and now.shapes is not None and (text := _shape_differences(saved.shapes, now.shapes)):
        found.append(text)
    if saved.devices != now.devices:
        found.append(
            f"the device layout differs ({_layout(saved.devices)} in the checkpoint, {_layout(now.devices)} now): "
            "a resume must train on the same mesh of devices, whose one compiled program gives the "
            "uninterrupted result bitwise; the number of devices may differ only when the mesh is the same"
        )
    return found


def check_resume(checkpoint: Checkpoint, identity: RunIdentity) -> None:
    """Refuse to resume ``checkpoint`` in the run ``identity`` unless it provably continues that very run.

    Compared part by part: the data x and y, every setting, the parameter shapes (recorded in the identity
    and those of the checkpoint's own parameters, so a checkpoint of other hidden sizes or of another
    model is refused here rather than failing inside the model), and the device layout. The number of
    devices may differ when the result is provably the same: what is compared is the mesh the run trains
    on (devices along the members axis and along the data axis, and their platform), since the same mesh
    runs the same compiled program on the same values; e.g. two members resume on a machine with four
    CPU devices from a checkpoint written on two. Another mesh regroups members per device or splits each
    batch's gradient sum, which changes the last bits of the result, so it is refused.

    Raises:
      ValueError: "the checkpoint belongs to another run: <what differs>", or that it carries no (or an
        older deepens') run identity.
    """
    stored = checkpoint.identity
    if not isinstance(stored, RunIdentity):
        why = (
            "it carries no run identity"
            if stored is None
            else "it carries the single-digest run identity of an older deepens, which cannot be compared part by part"
        )
        raise ValueError(f"the checkpoint cannot be shown to belong to this run: {why}; start the run afresh")
    found = differences(stored, identity)
    own = None if identity.shapes is None else _shape_differences(parameter_shapes(checkpoint.params), identity.shapes)
    if own and not any(line.startswith("model parameter shapes") for line in found):
        found.append(own.replace("in the checkpoint", "in the checkpoint's parameters"))
    if found:
        raise ValueError(
            "the checkpoint belongs to another run: "
            + "; ".join(found)
            + ". Resume with the data, settings, model and devices of the run that wrote it, or start afresh"
        )
