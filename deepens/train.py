"""``fit``: train a deep ensemble (or a MIMO or BatchEnsemble network) on arrays.

``fit`` checks its inputs, builds the network and the optimizer from a :class:`~deepens.config.TrainConfig`,
plans the devices, and runs the compiled program of :mod:`deepens.program`.

Reproducibility: member ``i`` of a fit with seed ``s`` is initialised from ``default_rng([s, i, 0])``
(or, for models without a numpy initialiser, from a key drawn from it), takes its VAT noise from a key
drawn from ``default_rng([s, i, 1])``, and sees its data, in epoch ``e``, in the order drawn by
``default_rng([s, i, e])``. So it is the same network whatever the ensemble's size up to floating-point
rounding (a batched program may sum in another order, and chaotic training can amplify that), and a run
resumed from a checkpoint ends where an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from deepens import devices as devices_module
from deepens import validation
from deepens.adversarial import get_adversarial, input_scale
from deepens.checkpoint import Checkpoint, check_resume, run_identity
from deepens.config import AUTO_CLIP_NORM, CLIPPED_HEADS, DEFAULTS, TrainConfig, make_optimizer, resolve_clip_norm
from deepens.early_stopping import EarlyStopping, Monitor
from deepens.ensemble import Ensemble, Timings
from deepens.heads import Head, get_head
from deepens.methods import Method, get_method
from deepens.models import MLP, FlaxModel, Model, as_model, check_input
from deepens.program import (
    INIT_STREAM,
    NOISE_STREAM,
    LossFn,
    Program,
    epochs_per_call,
    init_members,
    init_optimizer,
    member_keys,
    run_epochs,
    train_members,
)

__all__ = [
    "AUTO_CLIP_NORM",
    "CLIPPED_HEADS",
    "INIT_STREAM",
    "NOISE_STREAM",
    "Program",
    "TrainConfig",
    "epochs_per_call",
    "fit",
    "init_members",
    "init_optimizer",
    "make_optimizer",
    "member_keys",
    "resolve_clip_norm",
    "run_epochs",
    "train_members",
]


def fit(
    x: Any,
    y: Any,
    config: TrainConfig | None = None,
    *,
    head: str | Head = "gaussian",
    loss: str | LossFn | None = None,
    model: Model | nn.Module | tuple[Callable, Callable] | None = None,
    hidden: int | Sequence[int] = (50,),
    activation: str = "relu",
    optimizer: optax.GradientTransformation | None = None,
    num_classes: int | None = None,
    member_ids: Sequence[int] | None = None,
    devices: devices_module.Devices = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    resume: Checkpoint | None = None,
    progress: bool = True,
    description: str = "training",
    early_stopping: EarlyStopping | None = None,
    **settings: Any,
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
      config: the training settings (:class:`~deepens.config.TrainConfig`: members, epochs, batch_size,
        learning_rate, weight_decay, clip_norm, adversarial, eps, seed, method, input_repetition,
        batch_repetition); default ``TrainConfig()``. ``settings`` given as keywords replace its fields,
        so ``fit(x, y, members=3, epochs=10)`` works too; an unknown keyword is a TypeError.
      optimizer: any Optax transformation, replacing the config's Adam (then learning_rate, weight_decay
        and clip_norm are unused).
      num_classes: K for classification (default: largest label + 1).
      member_ids: the member streams (default ``range(members)``), see the module docstring.
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
      early_stopping: an :class:`~deepens.early_stopping.EarlyStopping` (held-out rows, patience): each
        member keeps its parameters of the epoch with the lowest held-out NLL, and training stops once no
        member has improved for ``patience`` epochs (checked at the end of each compiled chunk; the
        ``history`` then ends there). Default None: the paper's plain method.
      With ``method`` ``"mimo"`` or ``"batchensemble"`` all ``members`` live in one network (then
      ``member_ids`` and ``history`` refer to networks); a Method instance needs ``members`` to be a
      multiple of its members per network (:mod:`deepens.methods`).
    Returns:
      The trained :class:`~deepens.ensemble.Ensemble`; its ``history`` holds the loss per epoch and member,
      and ``timings`` the compile and training seconds.
    """
    config = (DEFAULTS if config is None else config).replace(**settings)
    members, epochs, batch_size, seed = config.members, config.epochs, config.batch_size, config.seed
    head = get_head(head)
    method, networks = _method(config.method, members, config.input_repetition, config.batch_repetition)
    ids = tuple(range(networks)) if member_ids is None else tuple(member_ids)
    if len(ids) < 1 or len(set(ids)) != len(ids) or any(int(i) < 0 for i in ids):
        raise ValueError(f"member_ids must be distinct non-negative integers, got {member_ids!r}")
    adversarial = get_adversarial(None if config.adversarial == "none" else config.adversarial, config.eps)
    features = validation.features(x)
    if head.is_classifier:
        targets, size = validation.class_labels(y, len(features), num_classes=num_classes)
    else:
        targets = validation.regression_targets(y, len(features))
        size = targets.shape[1]
    n = len(features)
    batch = n if batch_size is None else min(batch_size, n)
    loss = head.default_loss if loss is None else loss
    if isinstance(loss, str):
        head.loss(loss)  # raises for a loss the head cannot be trained with
    widths = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    model = as_model(MLP(widths, head.num_outputs(size), activation) if model is None else model)
    check_input(model, features.shape)  # the built-in MLP takes (N, D): a ValueError naming the shape
    model = method.build(model, input_shape=features.shape[1:], outputs=head.num_outputs(size))  # methods seam
    example = features[:1] if method.slots is None else np.repeat(features[:1, None], method.slots, axis=1)
    optimizer_given = optimizer
    clip = resolve_clip_norm(config.clip_norm, head)
    optimizer = config.optimizer(head) if optimizer is None else optimizer

    plan = devices_module.MemberPlan.make(ids, batch, devices)
    trained_ids = plan.trained_ids
    description += plan.note()

    start = time.perf_counter()
    params, state = init_members(model, seed, trained_ids, example)
    _check_output_width(model, params, state, example, head, size)
    init_s = time.perf_counter() - start
    steps = -(-n // batch)
    if checkpoint_every is not None:
        validation.positive_int("checkpoint_every", checkpoint_every)
    chunk = epochs_per_call(epochs, steps, checkpoint_every)
    program = Program(model, head, loss, optimizer, adversarial, batch, chunk, True, method)
    identity = run_identity(
        features,
        targets,
        {
            "head": head,
            "loss": loss if isinstance(loss, str) else getattr(loss, "__qualname__", type(loss).__name__),
            "model": model.module if isinstance(model, FlaxModel) else type(model).__qualname__,
            "seed": seed,
            "member_ids": trained_ids,
            "batch_size": batch,
            "adversarial": adversarial,
            "method": method,
            "optimizer": (float(config.learning_rate), float(config.weight_decay), clip)
            if optimizer_given is None
            else "custom",
        },
        params=params,
        devices={
            "members": plan.mesh.shape[devices_module.MEMBERS],
            "data": plan.mesh.shape[devices_module.DATA],
            "platform": plan.mesh.devices.flat[0].platform,
        },
    )
    if resume is not None:
        check_resume(resume, identity)
    if on_checkpoint is not None:
        user_on_checkpoint = on_checkpoint
        on_checkpoint = lambda c: user_on_checkpoint(dataclasses.replace(c, identity=identity))  # noqa: E731
    scale = (
        input_scale(features, adversarial.relative)
        if adversarial is not None
        else np.ones(features.shape[1:], np.float32)
    )
    monitor = (
        None
        if early_stopping is None
        else _monitor(early_stopping, program, features, targets, size, method, resume, params, state, len(ids))
    )
    params, state, history, timings = train_members(
        program,
        params,
        state,
        features,
        targets,
        epochs=epochs,
        seed=seed,
        member_ids=trained_ids,
        scale=scale,
        mesh=plan.training_mesh,
        resume=resume,
        checkpoint_every=checkpoint_every,
        on_checkpoint=on_checkpoint,
        progress=progress,
        description=description,
        monitor=monitor,
    )
    params, state, history = plan.trim(params), plan.trim(state), plan.trim(history, axis=1)
    params, state = plan.place_for_prediction((params, state))
    validation.warn_if_diverged(history, ids)  # e.g. inputs of 1e15: their squares train to NaN
    return Ensemble(
        model=model,
        head=head,
        params=params,
        state=state,
        input_shape=features.shape[1:],
        target_size=size,
        squeeze_target=not head.is_classifier and np.ndim(y) == 1,
        history=history,
        member_ids=ids,
        seed=seed,
        timings=Timings(compile_s=init_s + timings.compile_s, train_s=timings.train_s),
        method=method,  # methods seam
    )


def _monitor(
    stopping: EarlyStopping,
    program: Program,
    features: np.ndarray,
    targets: np.ndarray,
    size: int,
    method: Method,
    resume: Checkpoint | None,
    params: Any,
    state: Any,
    members: int,
) -> Monitor:
    """The early-stopping monitor of a run, after checking its held-out rows like the training rows."""
    if not isinstance(stopping, EarlyStopping):
        raise ValueError(f"early_stopping must be a deepens.early_stopping.EarlyStopping or None, got {stopping!r}")
    if method.slots is not None or method.members_per_network != 1:
        raise ValueError(f"early stopping needs one member per network; {method.name} holds several")
    if resume is not None:
        raise ValueError("early stopping cannot resume from a checkpoint (the kept best parameters are not in it)")
    x_val = validation.features(stopping.x, name="early_stopping.x")
    if x_val.shape[1:] != features.shape[1:]:
        raise ValueError(
            f"early_stopping.x has rows of shape {x_val.shape[1:]}, the training rows {features.shape[1:]}"
        )
    if program.head.is_classifier:
        y_val, _ = validation.class_labels(stopping.y, len(x_val), num_classes=size, name="early_stopping.y")
    else:
        y_val = validation.regression_targets(stopping.y, len(x_val), name="early_stopping.y")
        if y_val.shape[1:] != targets.shape[1:]:
            raise ValueError(
                f"early_stopping.y has {y_val.shape[1:]} targets per row, the training targets {targets.shape[1:]}"
            )
    return Monitor(stopping, program.model, program.head, program.loss_fn(), x_val, y_val, params, state, members)


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
