"""What a saved ensemble, estimator or checkpoint means: configurations and arrays on top of the
bundle format of :mod:`deepens.io`.

Loading rebuilds the one network it knows how to build, the built-in :class:`~deepens.models.MLP`, from
its constructor fields; an ensemble of any other model cannot be saved (there is no safe way to rebuild
arbitrary code from data) and :func:`save_ensemble` says so. Pytrees are rebuilt from a shape-only
initialisation of that model (and optimizer), never from the file, so a file written for another model
is refused rather than misread. ``deepens.save`` and ``deepens.load`` (in the package root) dispatch
here and to the estimators' ``save``/``load``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from deepens import devices, io
from deepens._version import __version__
from deepens.checkpoint import Checkpoint, RunIdentity, parameter_shapes
from deepens.ensemble import Ensemble
from deepens.heads import HEADS, Head
from deepens.io import FormatError
from deepens.methods import get_method
from deepens.methods.batchensemble import BatchEnsembleMLP
from deepens.methods.mimo import MIMONetwork
from deepens.models import MLP, FlaxModel, Model


def member_template(model: Model, input_shape: tuple[int, ...], slots: int | None = None) -> tuple[Any, Any]:
    """Shapes and dtypes of one network's ``(params, state)``, without computing anything; ``slots``: the
    method's slot axis (MIMO, BatchEnsemble), whose networks take ``(N, slots, ...)`` inputs."""
    example = jax.ShapeDtypeStruct((1, *(() if slots is None else (slots,)), *input_shape), np.float32)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), example)


def model_config(model: Model) -> dict[str, Any]:
    """The built-in MLP's constructor fields; a ValueError for any other model."""
    if isinstance(model, MIMONetwork):
        return {"type": "MIMO", "members": int(model.members), "trunk": model_config(FlaxModel(model.trunk))}
    if isinstance(model, FlaxModel) and type(model.module) is BatchEnsembleMLP:
        m = model.module
        return {
            "type": "BatchEnsembleMLP",
            "hidden": list(m.hidden),
            "outputs": m.outputs,
            "members": m.members,
            "activation": m.activation,
        }
    if isinstance(model, FlaxModel) and type(model.module) is MLP:
        m = model.module
        return {
            "type": "MLP",
            "hidden": list(m.hidden),
            "outputs": m.outputs,
            "activation": m.activation,
            "batch_norm": m.batch_norm,
        }
    raise ValueError(
        f"cannot save an ensemble of {type(getattr(model, 'module', model)).__name__}: only the built-in "
        "deepens.MLP can be rebuilt from a saved file without running code (saving never pickles); "
        "save the parameters yourself (deepens.io.flatten gives them as named arrays)"
    )


def model_from_config(config: Mapping[str, Any]) -> Model:
    if config.get("type") == "MIMO":
        trunk = model_from_config(config["trunk"])
        assert isinstance(trunk, FlaxModel) and isinstance(trunk.module, MLP)
        return MIMONetwork(trunk.module, int(config["members"]))
    if config.get("type") == "BatchEnsembleMLP":
        return FlaxModel(
            BatchEnsembleMLP(
                tuple(int(w) for w in config["hidden"]),
                int(config["outputs"]),
                int(config["members"]),
                str(config["activation"]),
            )
        )
    if config.get("type") != "MLP":
        raise FormatError(f"unknown model type {config.get('type')!r} in a saved model")
    return FlaxModel(
        MLP(
            tuple(int(w) for w in config["hidden"]),
            int(config["outputs"]),
            str(config["activation"]),
            bool(config["batch_norm"]),
        )
    )


def head_config(head: Head) -> dict[str, Any]:
    if type(head) is not HEADS.get(head.name):
        raise ValueError(f"cannot save a custom head {type(head).__name__}; only {sorted(HEADS)} can be saved")
    return {"name": head.name, **{f.name: getattr(head, f.name) for f in dataclasses.fields(head)}}


def head_from_config(config: Mapping[str, Any]) -> Head:
    fields = dict(config)
    name = fields.pop("name", None)
    if name not in HEADS:
        raise FormatError(f"unknown head {name!r} in a saved model")
    return HEADS[name](**fields)


def ensemble_config(ensemble: Ensemble) -> dict[str, Any]:
    return {
        "model": model_config(ensemble.model),
        "head": head_config(ensemble.head),
        "members": ensemble.members,
        "networks": ensemble.networks,
        "method": ensemble.method.to_config(),
        "input_shape": list(ensemble.input_shape),
        "target_size": ensemble.target_size,
        "squeeze_target": ensemble.squeeze_target,
        "member_ids": list(ensemble.member_ids),
        "seed": ensemble.seed,
    }


def ensemble_arrays(ensemble: Ensemble) -> dict[str, np.ndarray]:
    return {
        **io.flatten("params", ensemble.params, devices.to_host),
        **io.flatten("state", ensemble.state, devices.to_host),
        "history": np.asarray(ensemble.history, np.float32),
    }


def placed(ensemble: Ensemble) -> Ensemble:
    """The ensemble with its members on devices as :func:`deepens.fit` leaves them
    (:func:`deepens.devices.place_for_prediction`), so a loaded ensemble runs the same compiled prediction
    program as the one that was saved and predicts bitwise the same numbers (another placement compiles
    differently and can change the last bit)."""
    params, state = devices.place_for_prediction((ensemble.params, ensemble.state), ensemble.networks)
    return dataclasses.replace(ensemble, params=params, state=state)


def ensemble_from(config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], where: str) -> Ensemble:
    model = model_from_config(config["model"])
    method = get_method(config.get("method", "ensemble"))
    input_shape = tuple(int(d) for d in config["input_shape"])
    networks = int(config.get("networks", config["members"]))  # files before MIMO: one network per member
    params_template, state_template = member_template(model, input_shape, method.slots)
    params = io.unflatten("params", params_template, arrays, networks, where)
    state = io.unflatten("state", state_template, arrays, networks, where)
    used = io.leaf_names("params", params_template) | io.leaf_names("state", state_template) | {"history"}
    io.check_unused(arrays, used, where)
    return placed(
        Ensemble(
            model=model,
            head=head_from_config(config["head"]),
            params=params,
            state=state,
            input_shape=input_shape,
            target_size=int(config["target_size"]),
            squeeze_target=bool(config["squeeze_target"]),
            history=arrays["history"],
            member_ids=tuple(int(i) for i in config["member_ids"]),
            seed=int(config["seed"]),
            method=method,
        )
    )


# --------------------------------------------------------------------------------------------------
# Saved objects.


def save_bundle(
    path: str | Path,
    kind: str,
    config: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a saved object with the user's plain-JSON ``metadata`` and the deepens version."""
    full = {**config, "metadata": dict(metadata or {}), "deepens_version": __version__}
    return io.write_bundle(path, kind, full, arrays)


@contextlib.contextmanager
def mangled(where: str) -> Iterator[None]:
    """Turn a missing or malformed configuration entry (in verified files) into a FormatError."""
    try:
        yield
    except (KeyError, TypeError, AttributeError) as err:  # verified, yet not what this version writes
        raise FormatError(f"{where}: {io.CONFIG} lacks or mangles an entry ({type(err).__name__}: {err})") from None


def save_ensemble(ensemble: Ensemble, path: str | Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Save an ensemble of the built-in MLP to the folder ``path``, atomically (a ValueError otherwise)."""
    return save_bundle(path, "ensemble", {"ensemble": ensemble_config(ensemble)}, ensemble_arrays(ensemble), metadata)


def load_ensemble(path: str | Path) -> Ensemble:
    """The ensemble :func:`save_ensemble` wrote (FormatError for anything else)."""
    _, config, arrays = io.read_bundle(path, ("ensemble",))
    with mangled(str(path)):
        return ensemble_from(config["ensemble"], arrays, str(path))


# --------------------------------------------------------------------------------------------------
# Checkpoints.


def save_checkpoint(folder: str | Path, checkpoint: Checkpoint, info: Mapping[str, Any]) -> Path:
    """Write a :class:`~deepens.checkpoint.Checkpoint` as ``folder/epoch-NNNNNN`` (see
    :func:`deepens.io.save_checkpoint`), its run identity in the configuration and the identity's digest in
    the manifest (what cleanup checks). ``info`` (plain JSON) describes the run for the caller's own checks."""
    arrays = {
        **io.flatten("params", checkpoint.params, devices.to_host),
        **io.flatten("state", checkpoint.state, devices.to_host),
        **io.flatten("opt_state", checkpoint.opt_state, devices.to_host),
        "history": np.asarray(checkpoint.history, np.float32),
    }
    members = int(jax.tree.leaves(checkpoint.params)[0].shape[0])
    identity = checkpoint.identity
    stored = identity.to_json() if isinstance(identity, RunIdentity) else identity
    run = identity.digest if isinstance(identity, RunIdentity) else str(identity or "")
    config = {"info": dict(info), "members": members, "identity": stored, "deepens_version": __version__}
    return io.save_checkpoint(folder, int(checkpoint.epoch), config, arrays, run=run)


def _stored_identity(value: Any, where: str) -> RunIdentity | str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return RunIdentity.from_json(value)
    except ValueError as err:
        raise FormatError(f"{where}: {io.CONFIG} holds a malformed run identity ({err})") from None


def _check_shapes(arrays: Mapping[str, np.ndarray], template: Any, members: int, where: str) -> None:
    """The checkpoint's parameters against the model's: a ValueError saying which differ (another model
    or hidden sizes is another run), before anything is rebuilt from them."""
    expected = {name: (members, *shape) for name, shape in parameter_shapes(template)}
    found = {name[len("params") :]: tuple(a.shape) for name, a in arrays.items() if name.startswith("params")}
    differing = sorted(n for n in set(expected) | set(found) if expected.get(n) != found.get(n))
    if differing:
        shown = "; ".join(
            f"{n} {list(found[n]) if n in found else 'absent'} in the checkpoint, "
            f"{list(expected[n]) if n in expected else 'absent'} now"
            for n in differing[:3]
        )
        raise ValueError(
            f"the checkpoint {where} belongs to another run: model parameter shapes differ (another model or "
            f"hidden sizes): {shown}{f' (and {len(differing) - 3} more)' if len(differing) > 3 else ''}"
        )


def load_checkpoint(
    path: str | Path, model: Model, optimizer: Any, input_shape: tuple[int, ...]
) -> tuple[Checkpoint, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint` for this model and optimizer.

    Returns ``(Checkpoint, info)``. The pytrees are rebuilt from a fresh (shape-only) initialisation, so a
    checkpoint of another model (other parameter shapes: a ValueError "belongs to another run" that names
    them) or of another optimizer (FormatError) is refused, not silently misread.
    """
    _, config, arrays = io.read_bundle(path, ("checkpoint",))
    where = str(path)
    if not isinstance(config.get("members"), int) or not isinstance(config.get("epoch"), int) or "info" not in config:
        raise FormatError(f"{where}: {io.CONFIG} is not a checkpoint's configuration")
    members = int(config["members"])
    identity = _stored_identity(config.get("identity"), where)
    params_template, state_template = member_template(model, input_shape)
    _check_shapes(arrays, params_template, members, where)
    opt_template = jax.eval_shape(optimizer.init, params_template)
    params = io.unflatten("params", params_template, arrays, members, where)
    state = io.unflatten("state", state_template, arrays, members, where)
    opt_state = io.unflatten("opt_state", opt_template, arrays, members, where)
    used = io.leaf_names("params", params_template) | io.leaf_names("state", state_template)
    io.check_unused(arrays, used | io.leaf_names("opt_state", opt_template) | {"history"}, where)
    checkpoint = Checkpoint(
        params, state, opt_state, epoch=int(config["epoch"]), history=arrays["history"], identity=identity
    )
    return checkpoint, config["info"]
