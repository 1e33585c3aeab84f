"""The compiled training program: every member of an ensemble trained together.

Members live on a leading axis of one pytree. A call of the compiled program runs a chunk of epochs for
all members: ``vmap`` over members, ``lax.scan`` over epochs and, inside, over minibatch steps. Python
only draws the data order for the next chunk (on the host, which is far cheaper than a sort-based
permutation on XLA:CPU) and updates the progress bar; the program is compiled once per model, head,
loss, optimizer and data shape, and reused by every chunk and every later fit of the same shapes.
:func:`deepens.train.fit` is the front door; this module is its engine.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.sharding import Mesh, PartitionSpec

from deepens import devices as devices_module
from deepens.adversarial import Adversarial
from deepens.checkpoint import Checkpoint
from deepens.ensemble import Timings
from deepens.heads import Head
from deepens.methods import Method
from deepens.methods.ensemble import DeepEnsemble
from deepens.models import Model

LossFn = Callable[[Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything static about a training program; equal programs share one compiled executable, and so
    do programs that differ only in the adversarial eps, which reaches the program as an array."""

    model: Model
    head: Head
    loss: str | LossFn
    optimizer: optax.GradientTransformation
    adversarial: Adversarial | None
    batch_size: int
    epochs_per_call: int
    shared_data: bool
    method: Method = DeepEnsemble()  # methods seam: how a network holds members and how batches are built

    def loss_fn(self) -> LossFn:
        return self.head.loss(self.loss) if isinstance(self.loss, str) else self.loss

    @property
    def eps(self) -> float:
        """The adversarial step (0 without adversarial training); it reaches the compiled program as an array."""
        return 0.0 if self.adversarial is None else float(self.adversarial.eps)

    def without_eps(self) -> Program:
        """This program with its adversarial eps set to 0: the static key of the compiled executable, so
        programs that differ only in eps (an eps sweep) share one compilation."""
        if self.adversarial is None or self.adversarial.eps == 0.0:
            return self
        return dataclasses.replace(self, adversarial=dataclasses.replace(self.adversarial, eps=0.0))


INIT_STREAM, NOISE_STREAM = 0, 1


def member_keys(seed: int, member_ids: Sequence[int], stream: int = INIT_STREAM) -> np.ndarray:
    """One raw PRNG key per member, ``(M, 2)`` uint32, drawn on the host from
    ``default_rng([seed, id, stream])`` (no compilation, unlike ``fold_in`` on a CPU device)."""
    keys = [np.random.default_rng([seed, int(i), stream]).integers(0, 2**32, 2, dtype=np.uint32) for i in member_ids]
    return np.stack(keys)


@functools.partial(jax.jit, static_argnames=("model",))
def _init_on_device(model: Model, keys: Array, x: Array) -> tuple[Any, Any]:
    return jax.vmap(lambda k: model.init(k, x))(keys)


def init_members(model: Model, seed: int, member_ids: Sequence[int], x: np.ndarray) -> tuple[Any, Any]:
    """Initialise one member per id from the example input ``x`` ``(n, ...)``: stacked params and state.

    Uses the model's numpy initialiser when it has one (the built-in MLP does): a compiled random
    initialiser costs seconds of XLA compilation on a CPU, more than training a small ensemble.
    Otherwise one compiled, vmapped ``model.init`` with the keys of :func:`member_keys`.
    """
    members = [model.init_on_host(np.random.default_rng([seed, int(i), INIT_STREAM]), x) for i in member_ids]
    if members[0] is None:
        return _init_on_device(model, jnp.asarray(member_keys(seed, member_ids)), jnp.asarray(x))
    return jax.tree.map(lambda *leaves: np.stack(leaves), *members)


@functools.partial(jax.jit, static_argnames=("optimizer",))
def init_optimizer(optimizer: optax.GradientTransformation, params: Any) -> Any:
    """Each member's optimizer state (compiled once per optimizer and parameter shapes)."""
    return jax.vmap(optimizer.init)(params)


def _batch_objective(
    program: Program,
    params: Any,
    state: Any,
    x: Array,
    y: Array,
    weights: Array,
    scale: Array,
    key: Array,
    eps: Array | float = 0.0,
) -> tuple[Array, Any]:
    """Weighted mean of the per-example (adversarial) loss of one member on one batch, and its new state.

    Args:
      x, y: the batch ``(B, ...)``; weights: ``(B,)``, 0 for padding rows.
      scale: per-feature multiplier of ``eps``; key: this step's VAT noise; eps: the adversarial step
        (used instead of ``program.adversarial.eps``).
    """
    loss_fn = program.loss_fn()

    def predict(inputs: Array) -> Array:
        return program.model.apply(params, state, inputs, True)[0]

    # The clean pass gives the new model state (batch statistics); adversarial passes only read it.
    outputs, new_state = program.model.apply(params, state, x, True)
    if program.adversarial is None:
        per_example = loss_fn(outputs, y)
    else:
        per_example = program.adversarial.objective(
            loss_fn, predict, x, y, eps=eps, scale=scale, outputs=outputs, key=key, kl=program.head.kl
        )
    per_example = program.method.reduce_slots(per_example)  # methods seam: (B, slots) -> (B,)
    return jnp.sum(weights * per_example) / jnp.sum(weights), new_state


def _member_epochs(
    program: Program,
    carry: tuple[Any, Any, Any],
    key: Array,
    first_epoch: Array,
    order: Array | None,
    weights: Array,
    x: Array,
    y: Array,
    scale: Array,
    eps: Array,
) -> tuple[tuple[Any, Any, Any], Array]:
    """Train one member for ``program.epochs_per_call`` epochs.

    Args:
      carry: ``(params, state, opt_state)`` of this member.
      order: ``(E, S, B)`` row indices for each epoch and step, or None for full-batch training.
      weights: ``(S, B)`` 1 for real rows, 0 for the padding that fills the last batch.
      eps: the adversarial step, a scalar array (traced, so an eps sweep reuses the program).
    Returns:
      The new carry and the mean training loss of each epoch, ``(E,)``.
    """
    steps = weights.shape[0]
    total_weight = jnp.sum(weights)

    def step(carry, inputs):
        params, state, opt_state = carry
        index, batch_weights, step_id = inputs
        xb, yb = (x, y) if index is None else (program.method.take(x, index), program.method.take(y, index))
        step_key = jax.random.fold_in(key, step_id)
        (loss, state), grads = jax.value_and_grad(
            lambda p: _batch_objective(program, p, state, xb, yb, batch_weights, scale, step_key, eps), has_aux=True
        )(params)
        updates, opt_state = program.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, state, opt_state), loss * jnp.sum(batch_weights)

    def epoch(carry, inputs):
        epoch_id, epoch_order = inputs
        step_ids = (first_epoch + epoch_id) * steps + jnp.arange(steps)
        carry, batch_losses = jax.lax.scan(step, carry, (epoch_order, weights, step_ids))
        return carry, jnp.sum(batch_losses) / total_weight

    return jax.lax.scan(epoch, carry, (jnp.arange(program.epochs_per_call), order))


@functools.partial(jax.jit, static_argnames=("program",))
def run_epochs(
    program: Program,
    carry: tuple[Any, Any, Any],
    keys: Array,
    first_epoch: Array,
    order: Array | None,
    weights: Array,
    x: Array,
    y: Array,
    scale: Array,
    eps: Array,
) -> tuple[tuple[Any, Any, Any], Array]:
    """All members, one chunk of epochs: the compiled training program. Returns the new carry and the
    loss per member and epoch, ``(M, E)``. Data ``x``, ``y``, ``scale`` are shared by all members, or
    carry a leading member axis when ``program.shared_data`` is False. ``eps``, a float32 scalar shared by
    all members, is the adversarial step; ``program.adversarial.eps`` is not read (see
    :meth:`Program.without_eps`)."""
    data_axis = None if program.shared_data else 0
    train = jax.vmap(
        functools.partial(_member_epochs, program),
        in_axes=(0, 0, None, None if order is None else 0, None, data_axis, data_axis, data_axis, None),
    )
    return train(carry, keys, first_epoch, order, weights, x, y, scale, eps)


def epochs_per_call(epochs: int, steps_per_epoch: int, checkpoint_every: int | None = None) -> int:
    """Epochs per compiled call: the largest divisor of ``epochs`` (and of ``checkpoint_every``) that still
    leaves about 25 calls, so the progress bar moves; one epoch when an epoch has 25 steps or more, as
    dispatch is then already cheap next to the work."""
    if steps_per_epoch >= 25:
        return 1
    period = math.gcd(epochs, checkpoint_every) if checkpoint_every else epochs
    best = 1
    for chunk in range(1, period + 1):
        if period % chunk == 0 and epochs // chunk >= min(epochs, 25):
            best = chunk
    return best


def _batch_layout(n: int, batch_size: int) -> tuple[int, np.ndarray]:
    """Steps per epoch and the ``(S, B)`` weight mask: the last batch is padded, with weight 0, to B rows."""
    steps = -(-n // batch_size)
    weights = np.zeros(steps * batch_size, np.float32)
    weights[:n] = 1.0
    return steps, weights.reshape(steps, batch_size)


def _draw_order(
    seed: int, member_ids: Sequence[int], epochs: Sequence[int], n: int, steps: int, batch_size: int
) -> np.ndarray:
    """Row order ``(M, E, S, B)`` int32 (see :meth:`deepens.methods.ensemble.DeepEnsemble.draw_order`)."""
    return DeepEnsemble().draw_order(seed, member_ids, epochs, n, steps, batch_size)  # methods seam


def _compiled(program: Program, *args: Any) -> tuple[Callable, float]:
    start = time.perf_counter()
    # methods seam: BatchEnsemble compiles without YNNPACK fusions; the deep ensemble's and MIMO's programs
    # stay as they were, so MIMO with one member is one network bit for bit.
    options = program.method.compiler_options()
    executable = run_epochs.lower(program, *args).compile(compiler_options=options)
    return executable, time.perf_counter() - start


# Compiled training programs by program and argument layout, least recently used first.
_EXECUTABLES: collections.OrderedDict[Any, Callable] = collections.OrderedDict()
MAX_EXECUTABLES = 32


def _executable(program: Program, *args: Any) -> tuple[Callable, float]:
    """The compiled training program for these argument shapes, compiling (and timing) it only once."""
    leaves, tree = jax.tree.flatten(args)
    key = (program, tree, tuple((np.shape(a), str(a.dtype), getattr(a, "sharding", None)) for a in leaves))
    if key in _EXECUTABLES:
        _EXECUTABLES.move_to_end(key)
        return _EXECUTABLES[key], 0.0
    executable, seconds = _compiled(program, *args)
    _EXECUTABLES[key] = executable
    while len(_EXECUTABLES) > MAX_EXECUTABLES:
        _EXECUTABLES.popitem(last=False)
    return executable, seconds


def train_members(
    program: Program,
    params: Any,
    state: Any,
    x: Array | np.ndarray,
    y: Array | np.ndarray,
    *,
    epochs: int,
    seed: int,
    member_ids: Sequence[int],
    scale: Array | np.ndarray,
    mesh: Mesh | None = None,
    resume: Checkpoint | None = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    progress: bool = False,
    description: str = "training",
    monitor: Any | None = None,
) -> tuple[Any, Any, np.ndarray, Timings]:
    """Train already initialised members; the engine under :func:`fit`.

    Args:
      program: the static description of the training program (its ``epochs_per_call`` must divide
        ``epochs``, ``checkpoint_every`` and the resumed epoch).
      params, state: stacked member parameters and model state, leading axis M.
      x, y: training data ``(N, ...)`` shared by all members, or ``(M, N, ...)`` when
        ``program.shared_data`` is False (independent data sets trained side by side, e.g. UCI splits).
      epochs: number of passes over the data.
      seed, member_ids: the member streams (data order and VAT noise).
      scale: per-feature multiplier of the adversarial eps, ``(D,)`` or ``(M, D)``.
      mesh: a ``members`` mesh (see :mod:`deepens.devices`) whose size divides M, to split the members
        over devices; None keeps everything on the default device.
      resume: continue from this checkpoint (``params`` and ``state`` are then ignored).
      checkpoint_every, on_checkpoint: call ``on_checkpoint`` after every ``checkpoint_every`` epochs.
      monitor: a :class:`deepens.early_stopping.Monitor`, told the members after every chunk: it may stop
        the run (the history then ends there) and gives the parameters it kept.
    Returns:
      Trained ``params``, ``state``, the loss history ``(epochs, M)`` and the timings.
    """
    members = len(member_ids)
    n = x.shape[0] if program.shared_data else x.shape[1]
    # methods seam: slotted methods always index rows; MIMO's batch repetition b makes each batch b times longer.
    full_batch = program.method.slots is None and program.batch_size >= n
    repetition = int(getattr(program.method, "batch_repetition", 1))
    batch_size = n if full_batch else min(program.batch_size, n) * repetition
    steps, weights = _batch_layout(n * repetition, batch_size)
    chunk = program.epochs_per_call
    first_epoch = 0 if resume is None else resume.epoch
    for name, value in (("epochs", epochs), ("checkpoint_every", checkpoint_every), ("the resumed epoch", first_epoch)):
        if value and value % chunk:
            raise ValueError(f"epochs_per_call={chunk} must divide {name}={value}")
    if first_epoch > epochs:
        raise ValueError(f"cannot resume at epoch {first_epoch} of a {epochs}-epoch run")
    if resume is not None and jax.tree.leaves(resume.params)[0].shape[0] != members:
        raise ValueError(
            f"the checkpoint holds {jax.tree.leaves(resume.params)[0].shape[0]} members but this run trains "
            f"{members} (members, and the padding to fill the devices, must match the interrupted run)"
        )
    if mesh is not None and members % mesh.shape[devices_module.MEMBERS]:
        raise ValueError(f"{members} members cannot be split evenly over {mesh.shape[devices_module.MEMBERS]} devices")
    keys = member_keys(seed, member_ids, NOISE_STREAM)
    if resume is None:
        carry = (params, state, init_optimizer(program.optimizer, params))
    else:
        carry = (resume.params, resume.state, resume.opt_state)
    place_order: Callable[[np.ndarray], Array] = jnp.asarray
    eps, program = np.float32(program.eps), program.without_eps()  # eps as an array: a sweep compiles once
    if mesh is None:
        x, y, scale, weights, eps = (
            jnp.asarray(x),
            jnp.asarray(y),
            jnp.asarray(scale),
            jnp.asarray(weights),
            jnp.asarray(eps),
        )
    else:
        x, y, scale, weights, carry, keys, place_order = _place(
            mesh, program.shared_data, full_batch, x, y, scale, weights, carry, keys
        )
        eps = devices_module.put(eps, mesh, PartitionSpec())

    def order_for(first: int) -> Array | None:
        if full_batch:
            return None
        return place_order(
            program.method.draw_order(seed, member_ids, range(first, first + chunk), n, steps, batch_size)
        )

    order = order_for(first_epoch)
    executable, compile_s = _executable(program, carry, keys, jnp.int32(0), order, weights, x, y, scale, eps)
    history = np.empty((epochs, members), np.float32)
    if resume is not None:
        history[:first_epoch] = resume.history[:first_epoch]
    start = time.perf_counter()
    with _progress_bar(progress, description, epochs, first_epoch) as advance:
        for first in range(first_epoch, epochs, chunk):
            carry, losses = executable(carry, keys, jnp.int32(first), order, weights, x, y, scale, eps)
            if first + chunk < epochs:
                order = order_for(first + chunk)  # drawn on the host while the device trains
            done = first + chunk
            history[first:done] = devices_module.to_host(losses).T
            advance(chunk, float(np.mean(history[done - 1])))
            if on_checkpoint is not None and checkpoint_every and done % checkpoint_every == 0:
                host_carry = devices_module.to_host(carry) if jax.process_count() > 1 else carry
                on_checkpoint(Checkpoint(*host_carry, epoch=done, history=history[:done].copy()))
            if monitor is not None and monitor.update(done, carry[0], carry[1]):
                history = history[:done]
                break
    if monitor is not None:
        carry = (*monitor.best(), carry[2])
    jax.block_until_ready(carry)
    params, state, _ = devices_module.to_host(carry) if jax.process_count() > 1 else carry
    return params, state, history, Timings(compile_s=compile_s, train_s=time.perf_counter() - start)


def _place(
    mesh: Mesh, shared_data: bool, full_batch: bool, x: Any, y: Any, scale: Any, weights: Any, carry: Any, keys: Any
):
    """Lay the training arrays out on the mesh: members over the ``members`` axis, batch rows over the
    ``data`` axis (through the row order for minibatches, the data rows themselves for full batches), the
    rest replicated. Returns the placed arrays and the function that places each chunk's row order."""
    put, P = devices_module.put, PartitionSpec
    members, data = devices_module.MEMBERS, devices_module.DATA
    rows = P(data) if full_batch else P()
    if shared_data:
        x, y = put((x, y), mesh, rows)
        scale = put(scale, mesh, P())
    else:
        x, y = put((x, y), mesh, P(members, *rows))
        scale = put(scale, mesh, P(members))
    weights = put(weights, mesh, P(None, data))
    carry, keys = put((carry, keys), mesh, P(members))
    place_order = functools.partial(put, mesh=mesh, spec=P(members, None, None, data))
    return x, y, scale, weights, carry, keys, place_order


class _progress_bar:
    """A rich progress bar over epochs showing the members' mean loss; a no-op when disabled."""

    def __init__(self, enabled: bool, description: str, epochs: int, completed: int = 0) -> None:
        self.enabled, self.description, self.epochs, self.completed = enabled, description, epochs, completed

    def __enter__(self) -> Callable[[int, float], None]:
        if not self.enabled:
            return lambda advance, loss: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs  loss {task.fields[loss]:.4g}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.bar.start()
        task = self.bar.add_task(self.description, total=self.epochs, completed=self.completed, loss=float("nan"))
        return lambda advance, loss: self.bar.update(task, advance=advance, loss=loss)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.stop()
