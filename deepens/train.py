"""One compiled program trains every member of an ensemble together.

Members live on a leading axis of one pytree. A call of the compiled program runs a chunk of epochs for
all members: ``vmap`` over members, ``lax.scan`` over epochs and, inside, over minibatch steps. Python
only draws the data order for the next chunk (on the host, which is far cheaper than a sort-based
permutation on XLA:CPU) and updates the progress bar; the program is compiled once per model, head,
loss, optimizer and data shape, and reused by every chunk and every later fit of the same shapes.

Reproducibility: member ``i`` of a fit with seed ``s`` is initialised from ``default_rng([s, i, 0])``
(or, for models without a numpy initialiser, from a key drawn from it), takes its VAT noise from a key
drawn from ``default_rng([s, i, 1])``, and sees its data, in epoch ``e``, in the order drawn by
``default_rng([s, i, e])``. So it is the same network whatever the ensemble's size, training M members
together equals training each alone, and a run resumed from a checkpoint ends where an uninterrupted
one does.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.sharding import Mesh, PartitionSpec

from deepens import devices as devices_module
from deepens import validation
from deepens.adversarial import FGSM, VAT, Adversarial, fgsm_perturb, get_adversarial, input_scale, vat_divergence
from deepens.checkpoint import Checkpoint, run_identity
from deepens.ensemble import Ensemble, Timings
from deepens.heads import Head, get_head
from deepens.methods import Method, get_method
from deepens.methods.ensemble import DeepEnsemble
from deepens.models import MLP, FlaxModel, Model, as_model

LossFn = Callable[[Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything static about a training program; equal programs share one compiled executable."""

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


@functools.lru_cache(maxsize=64)
def make_optimizer(
    learning_rate: float, weight_decay: float = 0.0, clip_norm: float | None = None
) -> optax.GradientTransformation:
    """Adam, with L2 weight decay added to the gradient as in PyTorch's ``Adam(weight_decay=...)``, and
    with ``clip_norm`` set, the gradient first rescaled to global norm at most ``clip_norm``.

    Cached so that fits with equal settings get the same object and share a compiled program.
    """
    if weight_decay:
        optimizer = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))
    else:
        optimizer = optax.adam(learning_rate)
    if clip_norm is None:
        return optimizer
    return optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)


# Heads whose NLL divides by a learned scale: a member that shrinks its scale gets gradients that grow
# without bound and can blow up in one Adam step, so "auto" clips them (issue 9).
CLIPPED_HEADS = frozenset({"gaussian", "laplace", "student_t"})
AUTO_CLIP_NORM = 1.0


def resolve_clip_norm(clip_norm: float | str | None, head: Head) -> float | None:
    """``"auto"``: AUTO_CLIP_NORM for heads in CLIPPED_HEADS, else None; None: off; a number > 0: itself."""
    if isinstance(clip_norm, str):
        if clip_norm != "auto":
            raise ValueError(f"clip_norm must be a positive number, None or 'auto', got {clip_norm!r}")
        return AUTO_CLIP_NORM if head.name in CLIPPED_HEADS else None
    if clip_norm is None:
        return None
    try:
        value = float(clip_norm)
    except (TypeError, ValueError):
        raise ValueError(f"clip_norm must be a positive number, None or 'auto', got {clip_norm!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"clip_norm must be a positive finite number, got {clip_norm!r}")
    return value


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
    program: Program, params: Any, state: Any, x: Array, y: Array, weights: Array, scale: Array, key: Array
) -> tuple[Array, Any]:
    """Weighted mean of the per-example (adversarial) loss of one member on one batch, and its new state."""
    loss_fn = program.loss_fn()
    adversarial = program.adversarial

    def forward(inputs: Array) -> tuple[Array, Any]:
        return program.model.apply(params, state, inputs, True)

    outputs, new_state = forward(x)
    per_example = loss_fn(outputs, y)
    if isinstance(adversarial, FGSM):
        # (loss(x) + loss(x_adv)) / 2, reusing the clean loss already computed.
        x_adv = fgsm_perturb(lambda inputs: loss_fn(forward(inputs)[0], y), x, adversarial.eps * scale)
        per_example = 0.5 * (per_example + loss_fn(forward(x_adv)[0], y))
    elif isinstance(adversarial, VAT):
        predict = lambda inputs: forward(inputs)[0]  # noqa: E731
        divergence = vat_divergence(predict, program.head.kl, x, outputs, key, adversarial, scale)
        per_example = per_example + adversarial.weight * divergence
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
) -> tuple[tuple[Any, Any, Any], Array]:
    """Train one member for ``program.epochs_per_call`` epochs.

    Args:
      carry: ``(params, state, opt_state)`` of this member.
      order: ``(E, S, B)`` row indices for each epoch and step, or None for full-batch training.
      weights: ``(S, B)`` 1 for real rows, 0 for the padding that fills the last batch.
    Returns:
      The new carry and the mean training loss of each epoch, ``(E,)``.
    """
    steps = weights.shape[0]
    total_weight = jnp.sum(weights)

    def step(carry, inputs):
        params, state, opt_state = carry
        index, batch_weights, step_id = inputs
        xb, yb = (x, y) if index is None else (x[index], y[index])
        step_key = jax.random.fold_in(key, step_id)
        (loss, state), grads = jax.value_and_grad(
            lambda p: _batch_objective(program, p, state, xb, yb, batch_weights, scale, step_key), has_aux=True
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
) -> tuple[tuple[Any, Any, Any], Array]:
    """All members, one chunk of epochs: the compiled training program. Returns the new carry and the
    loss per member and epoch, ``(M, E)``. Data ``x``, ``y``, ``scale`` are shared by all members, or
    carry a leading member axis when ``program.shared_data`` is False."""
    data_axis = None if program.shared_data else 0
    train = jax.vmap(
        functools.partial(_member_epochs, program),
        in_axes=(0, 0, None, None if order is None else 0, None, data_axis, data_axis, data_axis),
    )
    return train(carry, keys, first_epoch, order, weights, x, y, scale)


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
    executable = run_epochs.lower(program, *args).compile()
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
    x: Array,
    y: Array,
    *,
    epochs: int,
    seed: int,
    member_ids: Sequence[int],
    scale: Array,
    mesh: Mesh | None = None,
    resume: Checkpoint | None = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    progress: bool = False,
    description: str = "training",
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
    if mesh is None:
        x, y, scale, weights = jnp.asarray(x), jnp.asarray(y), jnp.asarray(scale), jnp.asarray(weights)
    else:
        x, y, scale, weights, carry, keys, place_order = _place(mesh, program.shared_data, full_batch, x, y, scale, weights, carry, keys)

    def order_for(first: int) -> Array | None:
        if full_batch:
            return None
        return place_order(program.method.draw_order(seed, member_ids, range(first, first + chunk), n, steps, batch_size))

    order = order_for(first_epoch)
    executable, compile_s = _executable(program, carry, keys, jnp.int32(0), order, weights, x, y, scale)
    history = np.empty((epochs, members), np.float32)
    if resume is not None:
        history[:first_epoch] = resume.history[:first_epoch]
    start = time.perf_counter()
    with _progress_bar(progress, description, epochs, first_epoch) as advance:
        for first in range(first_epoch, epochs, chunk):
            carry, losses = executable(carry, keys, jnp.int32(first), order, weights, x, y, scale)
            if first + chunk < epochs:
                order = order_for(first + chunk)  # drawn on the host while the device trains
            done = first + chunk
            history[first:done] = devices_module.to_host(losses).T
            advance(chunk, float(np.mean(history[done - 1])))
            if on_checkpoint is not None and checkpoint_every and done % checkpoint_every == 0:
                host_carry = devices_module.to_host(carry) if jax.process_count() > 1 else carry
                on_checkpoint(Checkpoint(*host_carry, epoch=done, history=history[:done].copy()))
    jax.block_until_ready(carry)
    params, state, _ = devices_module.to_host(carry) if jax.process_count() > 1 else carry
    return params, state, history, Timings(compile_s=compile_s, train_s=time.perf_counter() - start)


def _place(mesh: Mesh, shared_data: bool, full_batch: bool, x: Any, y: Any, scale: Any, weights: Any, carry: Any, keys: Any):
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


def fit(
    x: Any,
    y: Any,
    *,
    head: str | Head = "gaussian",
    loss: str | LossFn | None = None,
    model: Model | nn.Module | tuple[Callable, Callable] | None = None,
    hidden: Sequence[int] = (50,),
    activation: str = "relu",
    members: int = 5,
    epochs: int = 40,
    batch_size: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    clip_norm: float | str | None = "auto",
    adversarial: str | Adversarial | None = None,
    eps: float | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    member_ids: Sequence[int] | None = None,
    devices: devices_module.Devices = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    resume: Checkpoint | None = None,
    progress: bool = True,
    description: str = "training",
    method: str | Method = "ensemble",
    input_repetition: float = 0.0,
    batch_repetition: int = 1,
) -> Ensemble:
    """Train a deep ensemble: M members from independent initialisations and data orders, together.

    Args:
      x: inputs ``(N, D)`` (or ``(N, ...)`` for a model that takes images).
      y: regression targets ``(N,)`` or ``(N, T)``; class labels ``(N,)`` in ``[0, K)``.
      head: ``"gaussian"``, ``"laplace"``, ``"point"`` (MSE/L1 baseline) or ``"categorical"``, or a Head.
      loss: the head's scoring rule by name (``"nll"``, ``"brier"``, ``"mse"``, ``"l1"``) or a function
        ``(outputs, y) -> (N,)``; default the head's first (its negative log-likelihood).
      model: a Flax module, a :class:`~deepens.models.Model` or an ``(init, apply)`` pair whose output
        width matches the head; default ``MLP(hidden, activation)``.
      members: M.
      epochs: passes over the data.
      batch_size: minibatch size; ``None`` trains on the full batch.
      optimizer: any Optax transformation; default Adam(learning_rate) with optional L2 weight decay.
      clip_norm: when ``optimizer`` is None, clip the gradient to this global norm before Adam;
        ``"auto"`` (default) is 1.0 for Gaussian and Laplace heads (whose NLL can blow up as a scale
        collapses) and off otherwise; ``None`` turns it off. Ignored when ``optimizer`` is given.
      adversarial: ``None``, ``"fgsm"``, ``"vat"`` or an ``FGSM``/``VAT`` instance; ``eps`` overrides its
        eps (strings default to 1% of each feature's range, as in the paper).
      num_classes: K for classification (default: largest label + 1).
      seed: the ensemble's seed; ``member_ids`` (default ``range(members)``) name the member streams.
      devices: where to train: None (all devices JAX sees, on every host), a number of devices, a list,
        or a mesh with axes ``("members", "data")`` (see :func:`deepens.devices.plan_mesh`). When M is not
        a multiple of the members axis, extra members are trained alongside and dropped, and the progress
        bar says so.
      checkpoint_every, on_checkpoint: hand a :class:`Checkpoint` to ``on_checkpoint`` after every
        ``checkpoint_every`` epochs.
      resume: continue from such a checkpoint, with the same data and settings, to the same result as an
        uninterrupted run; a checkpoint whose run identity (data and settings, see
        :func:`deepens.checkpoint.run_identity`) differs is refused with a ValueError. ``epochs`` may grow.
      progress: show a progress bar over epochs with the current mean loss.
      method: how members are laid out (:mod:`deepens.methods`): ``"ensemble"`` (one network per member),
        ``"mimo"`` or ``"batchensemble"`` (all ``members`` in one network; then ``member_ids`` and
        ``history`` refer to networks), or a Method instance (``members`` must be a multiple of its
        members per network).
      input_repetition, batch_repetition: MIMO's rho and b (see :class:`deepens.methods.MIMO`).
    Returns:
      The trained :class:`~deepens.ensemble.Ensemble`; its ``history`` holds the loss per epoch and member,
      and ``timings`` the compile and training seconds.
    """
    head = get_head(head)
    method, networks = _method(method, validation.positive_int("members", members), input_repetition, batch_repetition)
    ids = tuple(range(networks)) if member_ids is None else tuple(member_ids)
    if len(ids) < 1 or len(set(ids)) != len(ids) or any(int(i) < 0 for i in ids):
        raise ValueError(f"member_ids must be distinct non-negative integers, got {member_ids!r}")
    validation.positive_int("epochs", epochs)
    adversarial = get_adversarial(adversarial, eps)
    features = validation.features(x)
    if head.is_classifier:
        targets, size = validation.class_labels(y, len(features), num_classes=num_classes)
    else:
        targets = validation.regression_targets(y, len(features))
        size = targets.shape[1]
    n = len(features)
    batch = n if batch_size is None else min(validation.positive_int("batch_size", batch_size), n)
    loss = head.default_loss if loss is None else loss
    if isinstance(loss, str):
        head.loss(loss)  # raises for a loss the head cannot be trained with
    model = as_model(MLP(tuple(hidden), head.num_outputs(size), activation) if model is None else model)
    model = method.build(model, input_shape=features.shape[1:], outputs=head.num_outputs(size))  # methods seam
    example = features[:1] if method.slots is None else np.repeat(features[:1, None], method.slots, axis=1)
    optimizer_given = optimizer
    clip = resolve_clip_norm(clip_norm, head)
    optimizer = make_optimizer(float(learning_rate), float(weight_decay), clip) if optimizer is None else optimizer

    mesh = devices_module.plan_mesh(len(ids), batch, devices)
    trained_ids = ids + tuple(range(max(ids) + 1, max(ids) + 1 + devices_module.padded_size(len(ids), mesh) - len(ids)))
    if len(trained_ids) > len(ids):
        description += (
            f" ({len(ids)} members + {len(trained_ids) - len(ids)} to fill {mesh.shape[devices_module.MEMBERS]} devices)"
        )

    start = time.perf_counter()
    params, state = init_members(model, seed, trained_ids, example)
    _check_output_width(model, params, state, example, head, size)
    init_s = time.perf_counter() - start
    steps = -(-n // batch)
    if checkpoint_every is not None:
        validation.positive_int("checkpoint_every", checkpoint_every)
    chunk = epochs_per_call(epochs, steps, checkpoint_every)
    program = Program(model, head, loss, optimizer, adversarial, batch, chunk, True, method)
    identity = run_identity(features, targets, {
        "head": head, "loss": loss if isinstance(loss, str) else getattr(loss, "__qualname__", type(loss).__name__),
        "model": model.module if isinstance(model, FlaxModel) else type(model).__qualname__, "seed": seed, "member_ids": trained_ids,
        "batch_size": batch, "adversarial": adversarial, "method": method,
        "optimizer": (float(learning_rate), float(weight_decay), clip) if optimizer_given is None else "custom",
    })
    if resume is not None and resume.identity != identity:
        raise ValueError(
            "the checkpoint belongs to another run: resume with the data and settings (head, loss, model, method, "
            "seed, members, batch size, adversarial training, optimizer) of the run that wrote it"
            + ("" if resume.identity else " (this checkpoint carries no run identity)")
        )
    if on_checkpoint is not None:
        user_on_checkpoint = on_checkpoint
        on_checkpoint = lambda c: user_on_checkpoint(dataclasses.replace(c, identity=identity))  # noqa: E731
    scale = input_scale(features, adversarial.relative) if adversarial is not None else np.ones(features.shape[1:], np.float32)
    params, state, history, timings = train_members(
        program, params, state, features, targets, epochs=epochs, seed=seed, member_ids=trained_ids,
        scale=scale, mesh=mesh if mesh.size > 1 or jax.process_count() > 1 else None, resume=resume, checkpoint_every=checkpoint_every,
        on_checkpoint=on_checkpoint, progress=progress, description=description,
    )
    if len(trained_ids) > len(ids):
        keep = lambda leaf: leaf[: len(ids)]  # noqa: E731
        params, state, history = jax.tree.map(keep, params), jax.tree.map(keep, state), history[:, : len(ids)]
    params, state = devices_module.place_for_prediction((params, state), len(ids))
    return Ensemble(
        model=model, head=head, params=params, state=state, input_shape=features.shape[1:],
        target_size=size, squeeze_target=not head.is_classifier and np.ndim(y) == 1,
        history=history, member_ids=ids, seed=seed,
        timings=Timings(compile_s=init_s + timings.compile_s, train_s=timings.train_s),
        method=method,  # methods seam
    )


def _method(method: str | Method, members: int, input_repetition: float, batch_repetition: int) -> tuple[Method, int]:
    """The method for ``fit`` and its number of networks; ValueErrors for options it does not take."""
    if isinstance(method, Method):
        instance = method
    else:
        options: dict[str, Any] = {}
        if method in ("mimo", "batchensemble"):
            options["members"] = members
        if method == "mimo":
            options.update(input_repetition=input_repetition, batch_repetition=batch_repetition)
        elif input_repetition != 0.0 or batch_repetition != 1:
            raise ValueError(f"input_repetition and batch_repetition are MIMO's options, not {method!r}'s")
        instance = get_method(method, **options)
    return instance, instance.networks(members)


def _check_output_width(model: Model, params: Any, state: Any, x: np.ndarray, head: Head, size: int) -> None:
    first = jax.tree.map(lambda leaf: leaf[0], (params, state))
    shape = jax.eval_shape(lambda p, s: model.apply(p, s, jnp.asarray(x[:1]), False)[0], *first).shape
    expected = head.num_outputs(size)
    if shape[-1] != expected:
        raise ValueError(
            f"the model gives {shape[-1]} outputs per example but a {head.name} head for {size} "
            f"{'classes' if head.is_classifier else 'targets'} needs {expected}"
        )
