"""Where members run: a one-axis ``jax.sharding.Mesh`` named ``members`` over the visible devices.

Members are independent, so the ensemble's leading axis is split over devices and XLA runs each
device's share of the one compiled program; data are replicated. On a CPU-only machine, JAX shows one
device that spreads each operation over the cores, which does little for the small matrices of typical
members (a 100-unit layer at batch 100 takes microseconds); :func:`use_cpu_cores` instead makes one
device per core, so different members run on different cores at once (about 2x on two cores).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "members"


def use_cpu_cores(count: int | None = None) -> bool:
    """Ask JAX for one CPU device per core (or ``count``), if nothing has configured it yet.

    Does nothing when the user chose a device count (``JAX_NUM_CPU_DEVICES``, ``XLA_FLAGS`` with
    ``xla_force_host_platform_device_count``, or ``DEEPENS_CPU_DEVICES``), or when JAX has already started
    its backends (the setting can only be made before the first computation). Returns whether it applied.
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False
    if os.environ.get("JAX_NUM_CPU_DEVICES"):
        return False
    requested = os.environ.get("DEEPENS_CPU_DEVICES")
    if count is None:
        count = int(requested) if requested else len(os.sched_getaffinity(0))
    if count < 1 or jax.config.jax_num_cpu_devices not in (-1, count):
        return False
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # backends already initialised: keep what the process has
        return False
    return True


def member_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices``: all devices of the default backend (None), the first ``n``, or a list."""
    available = jax.devices()
    if devices is None:
        chosen = available
    elif isinstance(devices, (int, np.integer)):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices must be between 1 and {len(available)} (the devices JAX sees), got {devices}")
        chosen = available[:devices]
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices must not be empty")
    return Mesh(np.array(chosen), (AXIS,))


def padded_size(members: int, mesh: Mesh) -> int:
    """Members rounded up to a multiple of the mesh size (the extra members are trained, then dropped)."""
    size = mesh.size
    return -(-members // size) * size


def shard_members(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf's leading (member) axis across the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(AXIS)))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a full copy of every leaf on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
