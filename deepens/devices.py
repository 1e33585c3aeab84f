"""Where members run: a ``jax.sharding.Mesh`` with a ``members`` axis and a ``data`` axis.

Members are independent, so the ensemble's leading axis is split over devices and XLA runs each device's
share of the one compiled program. When there are fewer members than devices (on accelerators), the
devices left over form a ``data`` axis that splits each batch, and XLA adds the gradient all-reduce.
Data are replicated. The same code runs on several hosts after :func:`initialize_distributed`: every
process builds the same global arrays from the same host data and runs the same program.

On a CPU-only machine, JAX shows one device that spreads each operation over the cores, which does little
for the small matrices of typical members (a 100-unit layer at batch 100 takes microseconds);
:func:`use_cpu_cores` instead makes one device per core, so different members run on different cores at
once (about 2x on two cores).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MEMBERS, DATA = "members", "data"
if TYPE_CHECKING:
    # jax.Device names a class of a compiled extension that ships no stubs: type checkers cannot see it.
    Device: TypeAlias = Any
else:
    Device = jax.Device
Devices: TypeAlias = int | Sequence[Device] | Mesh | None


def use_cpu_cores(count: int | None = None) -> bool:
    """Ask JAX for one CPU device per core (or ``count``), if nothing has configured it yet.

    Does nothing when the user chose a device count (``JAX_NUM_CPU_DEVICES`` or ``XLA_FLAGS`` with
    ``xla_force_host_platform_device_count``), or when JAX has already started its backends (the setting
    can only be made before the first computation). Returns whether it applied.

    ``DEEPENS_CPU_DEVICES=N`` asks for N devices instead of one per core. It is read only here (never on
    ``import deepens``), so a bad value such as ``abc`` or ``0`` is a ValueError naming the variable when the
    CLI or an estimator's ``fit`` calls this, and nothing else is affected.
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False
    if os.environ.get("JAX_NUM_CPU_DEVICES"):
        return False
    if count is None:
        count = requested_cpu_devices() or len(os.sched_getaffinity(0))
    # JAX sets its flags as attributes at run time, which type checkers cannot see.
    if count < 1 or jax.config.jax_num_cpu_devices not in (-1, count):  # pyright: ignore[reportAttributeAccessIssue]
        return False
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # backends already initialised: keep what the process has
        return False
    return True


def requested_cpu_devices() -> int | None:
    """``DEEPENS_CPU_DEVICES`` as an integer >= 1, None when unset or empty; ValueError for anything else."""
    text = os.environ.get("DEEPENS_CPU_DEVICES", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"DEEPENS_CPU_DEVICES must be a whole number of devices >= 1, got {text!r} "
            "(unset it for one device per core)"
        )
    return value


def initialize_distributed(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Join a multi-host run through ``jax.distributed.initialize``.

    Arguments left as None come from ``DEEPENS_COORDINATOR`` / ``DEEPENS_NUM_PROCESSES`` /
    ``DEEPENS_PROCESS_ID``, then from JAX's own ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
    ``JAX_PROCESS_ID``; with none of them set this is a single-process run and nothing happens. Must be
    called before the first JAX computation. On CPUs the processes exchange results through gloo.
    Returns whether a multi-process run was initialised.
    """
    env = os.environ
    coordinator = coordinator or env.get("DEEPENS_COORDINATOR") or env.get("JAX_COORDINATOR_ADDRESS")
    processes = num_processes or _env_int("DEEPENS_NUM_PROCESSES") or _env_int("JAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _env_int("DEEPENS_PROCESS_ID")
    if process_id is None:
        process_id = _env_int("JAX_PROCESS_ID")
    if coordinator is None and processes is None:
        return False
    if coordinator is None or processes is None or process_id is None:
        raise ValueError(
            "a multi-host run needs the coordinator address, the number of processes and this process's id "
            f"(got coordinator={coordinator!r}, num_processes={processes!r}, process_id={process_id!r})"
        )
    if not 0 <= process_id < processes:
        raise ValueError(f"process id must be in [0, {processes}), got {process_id}")
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):  # pyright: ignore[reportAttributeAccessIssue]
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=processes, process_id=process_id)
    return True


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def _chosen_devices(devices: int | Sequence[Device] | None) -> list[Device]:
    available = jax.devices()
    if devices is None:
        return list(available)
    if isinstance(devices, (int, np.integer)):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices must be between 1 and {len(available)} (the devices JAX sees), got {devices}")
        return list(available[:devices])
    chosen = list(devices)
    if not chosen:
        raise ValueError("devices must not be empty")
    return chosen


def plan_mesh(members: int, rows_per_step: int, devices: Devices = None) -> Mesh:
    """The ``(members, data)`` mesh for training ``members`` members on batches of ``rows_per_step`` rows.

    ``devices`` may be a ready mesh with those two axes (used as given), a number of devices, a list, or
    None for all. Members come first: with at least as many members as devices every device holds whole
    members (M is then padded to a multiple of the device count). With fewer, the mesh's members axis is
    the largest device count that divides evenly and does not exceed M, and on accelerators the remaining
    devices split each batch (when the batch divides evenly); on CPUs, whose "devices" are cores sharing
    one memory, splitting a member's batch only adds all-reduces, so the spare cores stay out of the mesh
    (XLA still uses them inside each operation).
    """
    if isinstance(devices, Mesh):
        if tuple(devices.axis_names) != (MEMBERS, DATA):
            raise ValueError(f"a mesh for deepens needs the axes ('members', 'data'), got {devices.axis_names}")
        return devices
    chosen = _chosen_devices(devices)
    count = len(chosen)
    if members >= count:
        return Mesh(np.array(chosen).reshape(count, 1), (MEMBERS, DATA))
    member_axis = max(d for d in range(1, members + 1) if count % d == 0)
    data_axis = 1
    if chosen[0].platform != "cpu":
        data_axis = max(
            d for d in range(1, count // member_axis + 1) if (count // member_axis) % d == 0 and rows_per_step % d == 0
        )
    used = np.array(chosen[: member_axis * data_axis]).reshape(member_axis, data_axis)
    return Mesh(used, (MEMBERS, DATA))


def padded_size(members: int, mesh: Mesh) -> int:
    """Members rounded up to a multiple of the mesh's members axis (the extra ones are trained, then dropped)."""
    size = mesh.shape[MEMBERS]
    return -(-members // size) * size


def place_for_prediction(tree: Any, members: int) -> Any:
    """Put a trained ensemble's arrays (leading member axis) where it predicts fastest: split over the
    most devices of this process that divide M evenly, else on one device. (Replicating an uneven
    ensemble instead would make every device compute every member.) ``fit`` and ``deepens.load`` both
    place members this way, so a loaded ensemble runs the very program the trained one did."""
    local = jax.local_devices()
    count = max(d for d in range(1, min(members, len(local)) + 1) if members % d == 0)
    if count == 1:
        return jax.device_put(tree, local[0])
    mesh = Mesh(np.array(local[:count]).reshape(count, 1), (MEMBERS, DATA))
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(MEMBERS)))


@dataclasses.dataclass(frozen=True)
class MemberPlan:
    """Where the members of one training run train and then predict: the one place that pads M to fill
    the devices, says so, trims the padding off and places the trained members.

    Attributes:
      member_ids: the M requested member streams (repeats allowed: independent data sets side by side).
      trained_ids: ``member_ids`` then the padding members, fresh streams after the largest id, that make
        the count a multiple of the mesh's members axis; they train alongside and are dropped.
      mesh: the ``(members, data)`` mesh of :func:`plan_mesh`.
    """

    member_ids: tuple[int, ...]
    trained_ids: tuple[int, ...]
    mesh: Mesh

    @classmethod
    def make(cls, member_ids: Sequence[int], rows_per_step: int, devices: Devices = None) -> MemberPlan:
        """The plan for ``member_ids`` trained on batches of ``rows_per_step`` rows (``devices`` as
        :func:`plan_mesh`)."""
        ids = tuple(int(i) for i in member_ids)
        mesh = plan_mesh(len(ids), rows_per_step, devices)
        first = max(ids) + 1
        return cls(ids, ids + tuple(range(first, first + padded_size(len(ids), mesh) - len(ids))), mesh)

    @property
    def members(self) -> int:
        """M, the members kept."""
        return len(self.member_ids)

    @property
    def padding(self) -> int:
        """Members trained only to fill the devices."""
        return len(self.trained_ids) - len(self.member_ids)

    @property
    def training_mesh(self) -> Mesh | None:
        """The mesh to train on, or None for one device in one process (no placement needed)."""
        return self.mesh if self.mesh.size > 1 or jax.process_count() > 1 else None

    def note(self) -> str:
        """What the progress bar adds when members were padded, e.g. ``" (3 members + 1 to fill 2 devices)"``."""
        if not self.padding:
            return ""
        return f" ({self.members} members + {self.padding} to fill {self.mesh.shape[MEMBERS]} devices)"

    def trim(self, tree: Any, axis: int = 0) -> Any:
        """Drop the padding members from every leaf's member ``axis``."""
        if not self.padding:
            return tree
        return jax.tree.map(lambda leaf: leaf[(slice(None),) * axis + (slice(self.members),)], tree)

    def place_for_prediction(self, tree: Any) -> Any:
        """The trimmed members placed where they predict fastest (:func:`place_for_prediction`)."""
        return place_for_prediction(tree, self.members)


def put(tree: Any, mesh: Mesh, spec: PartitionSpec) -> Any:
    """Place host or device arrays as global arrays with ``spec`` on ``mesh``.

    Built shard by shard from the full value, which every process holds, so the same call works on one
    host and on several (where ``jax.device_put`` cannot reach other processes' devices).
    """
    sharding = NamedSharding(mesh, spec)

    def place(leaf: Any) -> jax.Array:
        if isinstance(leaf, jax.Array) and leaf.is_fully_addressable and jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(place, tree)


def to_host(tree: Any) -> Any:
    """Every leaf as a full numpy array on this process, gathered from other processes when needed."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(
        lambda leaf: (
            np.asarray(leaf)
            if getattr(leaf, "is_fully_addressable", True)
            else multihost_utils.process_allgather(leaf, tiled=True)
        ),
        tree,
    )
