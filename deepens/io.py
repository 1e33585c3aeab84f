"""Saving and loading ensembles, fitted estimators and training checkpoints, without pickle.

A saved object is a folder of three files:

    manifest.json       {"format": "deepens", "format_version": 1, "kind": ...,
                         "files": {name: {"sha256": ..., "bytes": ...}}, "manifest_sha256": ...}
    config.json         what the object is: the model's constructor fields, the head, shapes, member ids,
                        seed, an estimator's hyper-parameters and preprocessing statistics (plain JSON)
    arrays.safetensors  every array (parameters, model state, optimizer state, loss history)

Nothing is ever unpickled and no code is imported by name from a file: loading parses JSON and
safetensors (a JSON header and raw little-endian buffers) and rebuilds the one network it knows how
to build, the built-in :class:`~deepens.models.MLP`. An ensemble of any other model cannot be saved
(there is no safe way to rebuild arbitrary code from data) and :func:`save` says so.

Integrity: the manifest holds the size and sha256 of every other file and a sha256 of its own content,
so a truncated, modified or missing file, or a manifest edited by hand, is refused with an error that
names the file; a format version this code does not know is refused before anything else is read.
Each file is read into memory once, checked, and parsed from those same bytes.

Atomicity: everything is written into a hidden temporary folder next to the destination, flushed to
disk, and renamed into place, so a crash during a save leaves no half-written model. Replacing an
existing model renames the old folder aside first; only a crash between those two renames (two system
calls) leaves the old model under its hidden ``.NAME.old-*`` name instead of ``NAME``. A folder that
holds anything other than a deepens object is never overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np

from deepens.ensemble import Ensemble
from deepens.heads import HEADS, Head
from deepens.models import MLP, FlaxModel, Model

FORMAT = "deepens"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
ARRAYS = "arrays.safetensors"
_FILES = (CONFIG, ARRAYS)


class FormatError(ValueError):
    """A saved object that cannot be trusted or read: missing, truncated or modified files, or an
    unknown format version. A ValueError, so callers handling bad input catch it too."""


# --------------------------------------------------------------------------------------------------
# Bundles: a kind, a JSON config and named arrays, written atomically and read back verified.


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    """Compact, key-sorted JSON: every byte carries meaning, so any changed byte changes the content."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some file systems do not let a folder be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_saved_object(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a deepens object and nothing else (it is not verified here):
    the only kind of folder a save may replace."""
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file() or not {p.name for p in path.iterdir()} <= {MANIFEST, *_FILES}:
        return False
    try:
        return json.loads(manifest.read_bytes()).get("format") == FORMAT
    except (ValueError, OSError, AttributeError):
        return False


def write_bundle(path: str | Path, kind: str, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write a verified, atomic bundle to the folder ``path`` (replacing a deepens object already there).

    Raises:
      ValueError: ``path`` exists and is a file or a folder holding something else; ``config`` is not
        plain JSON (e.g. holds NaN).
    """
    from safetensors.numpy import save as safetensors_bytes

    path = Path(path)
    if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or is_saved_object(path))):
        raise ValueError(f"refusing to overwrite {path}: it exists and is not a saved deepens model")
    try:
        config_bytes = json.dumps(config, indent=1, sort_keys=True, allow_nan=False).encode() + b"\n"
    except ValueError as err:
        raise ValueError(f"cannot save: the configuration is not plain JSON ({err})") from None
    contiguous = {name: np.ascontiguousarray(np.asarray(a)) for name, a in arrays.items()}
    contents = {CONFIG: config_bytes, ARRAYS: safetensors_bytes(contiguous)}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "files": {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in contents.items()},
    }
    manifest["manifest_sha256"] = _sha256(_canonical(manifest))
    contents[MANIFEST] = _canonical(manifest)

    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    temporary = parent / f".{path.name}.tmp-{tag}"
    old = parent / f".{path.name}.old-{tag}"
    try:
        temporary.mkdir()
        for name, data in contents.items():  # the manifest last: a folder without one is never a model
            _write_file(temporary / name, data)
        _fsync_dir(temporary)
        if path.exists():
            os.rename(path, old)
        os.rename(temporary, path)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        if old.exists() and not path.exists():
            os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return path


def atomic_file(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Create or replace the file ``path`` atomically: ``write(temporary)`` fills a hidden file in the
    same folder, which is flushed and renamed over ``path``; on any failure it is removed and ``path``
    is untouched."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder")
    temporary = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        write(temporary)
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented, strict JSON (no NaN) to ``path`` atomically (see :func:`atomic_file`)."""
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    return atomic_file(path, lambda temporary: temporary.write_text(text))


def _read_verified(folder: Path, name: str, expected: Mapping[str, Any]) -> bytes:
    file = folder / name
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{file} is missing: the saved model is incomplete") from None
    if len(data) != expected["bytes"]:
        state = "truncated" if len(data) < expected["bytes"] else "longer than written"
        raise FormatError(f"{file} is {state}: {len(data)} bytes, the manifest says {expected['bytes']}")
    if _sha256(data) != expected["sha256"]:
        raise FormatError(f"{file} was modified after saving: its sha256 does not match the manifest")
    return data


def read_bundle(path: str | Path, kinds: tuple[str, ...] | None = None) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a bundle: ``(kind, config, arrays)``.

    Raises:
      FileNotFoundError: there is no folder at ``path``.
      FormatError: a missing, truncated or modified file, an unknown format version, or a kind other
        than ``kinds``.
    """
    from safetensors.numpy import load as safetensors_load

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no saved model at {folder}" + (" (it is a file, not a folder)" if folder.exists() else ""))
    try:
        raw = (folder / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{folder / MANIFEST} is missing: {folder} is not a (complete) saved deepens model") from None
    try:
        manifest = json.loads(raw)
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as err:
        raise FormatError(f"{folder / MANIFEST} is corrupt (not valid JSON: {err})") from None
    if manifest.get("format") != FORMAT:
        raise FormatError(f"{folder} is not a saved deepens model (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{folder} was saved in deepens format version {version!r}, but this deepens reads version "
            f"{FORMAT_VERSION} only; use the deepens version that saved it"
        )
    claimed = manifest.pop("manifest_sha256", None)
    if claimed != _sha256(_canonical(manifest)):
        raise FormatError(f"{folder / MANIFEST} was modified after saving: its own sha256 does not match")
    files = manifest.get("files", {})
    if set(files) != set(_FILES):
        raise FormatError(f"{folder / MANIFEST} lists files {sorted(files)}, expected {sorted(_FILES)}")
    kind = manifest["kind"]
    if kinds is not None and kind not in kinds:
        raise FormatError(f"{folder} holds a {kind}, not a {' or '.join(kinds)}")
    config_bytes = _read_verified(folder, CONFIG, files[CONFIG])
    array_bytes = _read_verified(folder, ARRAYS, files[ARRAYS])
    try:
        config = json.loads(config_bytes)
        arrays = safetensors_load(array_bytes)
    except Exception as err:  # verified bytes that do not parse: written by something else
        raise FormatError(f"{folder} holds files that cannot be parsed ({err})") from None
    return kind, config, arrays


# --------------------------------------------------------------------------------------------------
# Pytrees <-> named arrays. Leaves are named by their key path; the tree structure is rebuilt from a
# template (the shapes a fresh initialisation would give), never from the file.


def flatten(prefix: str, tree: Any) -> dict[str, np.ndarray]:
    """Named host copies of a pytree's leaves (gathering sharded arrays): ``{prefix + keypath: array}``."""
    from deepens.devices import to_host

    leaves, _ = jax.tree_util.tree_flatten_with_path(to_host(tree))
    return {prefix + jax.tree_util.keystr(p): np.asarray(leaf) for p, leaf in leaves}


def unflatten(prefix: str, template: Any, arrays: Mapping[str, np.ndarray], members: int, where: str) -> Any:
    """Rebuild a pytree shaped like ``template`` (one member's leaves) with a leading member axis.

    Raises FormatError when a leaf is missing or its shape or dtype differs from the template's.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    rebuilt = []
    for p, leaf in leaves:
        name = prefix + jax.tree_util.keystr(p)
        if name not in arrays:
            raise FormatError(f"{where}: array {name!r} is missing")
        array = arrays[name]
        expected = (members, *leaf.shape)
        if array.shape != expected or array.dtype != leaf.dtype:
            raise FormatError(
                f"{where}: array {name!r} is {array.dtype}{list(array.shape)}, expected {leaf.dtype}{list(expected)}"
            )
        rebuilt.append(array)
    return jax.tree_util.tree_unflatten(treedef, rebuilt)


def leaf_names(prefix: str, tree: Any) -> set[str]:
    """The names :func:`flatten` gives a tree's leaves (shapes suffice: nothing is copied)."""
    return {prefix + jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _unused(arrays: Mapping[str, np.ndarray], used: set[str], where: str) -> None:
    extra = sorted(set(arrays) - used)
    if extra:
        raise FormatError(f"{where}: unexpected arrays {extra[:5]}")


def member_template(model: Model, input_shape: tuple[int, ...]) -> tuple[Any, Any]:
    """Shapes and dtypes of one member's ``(params, state)``, without computing anything."""
    example = jax.ShapeDtypeStruct((1, *input_shape), np.float32)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), example)


# --------------------------------------------------------------------------------------------------
# Ensembles.


def model_config(model: Model) -> dict[str, Any]:
    """The built-in MLP's constructor fields; a ValueError for any other model."""
    if isinstance(model, FlaxModel) and type(model.module) is MLP:
        m = model.module
        return {"type": "MLP", "hidden": list(m.hidden), "outputs": m.outputs, "activation": m.activation,
                "batch_norm": m.batch_norm}
    raise ValueError(
        f"cannot save an ensemble of {type(getattr(model, 'module', model)).__name__}: only the built-in "
        "deepens.MLP can be rebuilt from a saved file without running code (saving never pickles); "
        "save the parameters yourself (deepens.io.flatten gives them as named arrays)"
    )


def model_from_config(config: Mapping[str, Any]) -> Model:
    if config.get("type") != "MLP":
        raise FormatError(f"unknown model type {config.get('type')!r} in a saved model")
    return FlaxModel(MLP(tuple(int(w) for w in config["hidden"]), int(config["outputs"]), str(config["activation"]),
                         bool(config["batch_norm"])))


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
        "input_shape": list(ensemble.input_shape),
        "target_size": ensemble.target_size,
        "squeeze_target": ensemble.squeeze_target,
        "member_ids": list(ensemble.member_ids),
        "seed": ensemble.seed,
    }


def ensemble_arrays(ensemble: Ensemble) -> dict[str, np.ndarray]:
    return {**flatten("params", ensemble.params), **flatten("state", ensemble.state),
            "history": np.asarray(ensemble.history, np.float32)}


def placed(ensemble: Ensemble) -> Ensemble:
    """The ensemble with its members on devices as :func:`deepens.fit` leaves them
    (:func:`deepens.devices.place_for_prediction`), so a loaded ensemble runs the same compiled prediction
    program as the one that was saved and predicts bitwise the same numbers (another placement compiles
    differently and can change the last bit)."""
    from deepens import devices

    params, state = devices.place_for_prediction((ensemble.params, ensemble.state), ensemble.members)
    return dataclasses.replace(ensemble, params=params, state=state)


def ensemble_from(config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], where: str) -> Ensemble:
    model = model_from_config(config["model"])
    input_shape = tuple(int(d) for d in config["input_shape"])
    members = int(config["members"])
    params_template, state_template = member_template(model, input_shape)
    params = unflatten("params", params_template, arrays, members, where)
    state = unflatten("state", state_template, arrays, members, where)
    _unused(arrays, leaf_names("params", params_template) | leaf_names("state", state_template) | {"history"}, where)
    return placed(Ensemble(
        model=model, head=head_from_config(config["head"]), params=params, state=state, input_shape=input_shape,
        target_size=int(config["target_size"]), squeeze_target=bool(config["squeeze_target"]),
        history=arrays["history"], member_ids=tuple(int(i) for i in config["member_ids"]), seed=int(config["seed"]),
    ))


# --------------------------------------------------------------------------------------------------
# The public entry points.


def save(obj: Any, path: str | Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Save an :class:`~deepens.Ensemble` or a fitted ``DeepEnsembleRegressor``/``Classifier`` to the folder
    ``path``, atomically. ``metadata``: extra plain-JSON information kept with it (see :func:`read_metadata`).

    Raises ValueError for a model other than the built-in MLP, an unfitted estimator, or a ``path`` that
    holds something other than a deepens object.
    """
    from deepens import sklearn as estimators

    if isinstance(obj, Ensemble):
        kind, config, arrays = "ensemble", {"ensemble": ensemble_config(obj)}, ensemble_arrays(obj)
    elif isinstance(obj, estimators.DeepEnsembleBase):
        kind, config, arrays = type(obj).__name__, *obj._to_saved()
    else:
        raise ValueError(f"cannot save a {type(obj).__name__}: save an Ensemble or a fitted deepens estimator")
    config = {**config, "metadata": dict(metadata or {}), "deepens_version": _version()}
    return write_bundle(path, kind, config, arrays)


def load(path: str | Path) -> Any:
    """Load what :func:`save` wrote: an :class:`~deepens.Ensemble` or a fitted estimator.

    Raises:
      FileNotFoundError: nothing at ``path``.
      FormatError (a ValueError): missing, truncated or modified files, or an unknown format version.
    """
    from deepens import sklearn as estimators

    kinds = ("ensemble", *estimators.ESTIMATORS)
    kind, config, arrays = read_bundle(path, kinds)
    where = str(path)
    try:
        if kind == "ensemble":
            return ensemble_from(config["ensemble"], arrays, where)
        return estimators.ESTIMATORS[kind]._from_saved(config, arrays, where)
    except (KeyError, TypeError, AttributeError) as err:  # verified, yet not what this version writes
        raise FormatError(f"{where}: {CONFIG} lacks or mangles an entry ({type(err).__name__}: {err})") from None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``metadata`` given to :func:`save`, after verifying every file."""
    return read_bundle(path)[1].get("metadata", {})


def _version() -> str:
    from deepens import __version__

    return __version__


# --------------------------------------------------------------------------------------------------
# Training checkpoints: a folder of numbered bundles, the newest complete one wins.

_CHECKPOINT = re.compile(r"^epoch-(\d{6,})$")


def save_checkpoint(folder: str | Path, checkpoint: Any, info: Mapping[str, Any]) -> Path:
    """Write a :class:`deepens.train.Checkpoint` as ``folder/epoch-NNNNNN`` and then remove older ones.

    ``info`` (plain JSON) describes the run, so that a resume can check it continues the same one.
    Each checkpoint is its own atomic bundle, so a kill at any moment leaves the previous one intact.
    """
    folder = Path(folder)
    arrays = {**flatten("params", checkpoint.params), **flatten("state", checkpoint.state),
              **flatten("opt_state", checkpoint.opt_state), "history": np.asarray(checkpoint.history, np.float32)}
    members = int(jax.tree.leaves(checkpoint.params)[0].shape[0])
    config = {"info": dict(info), "epoch": int(checkpoint.epoch), "members": members, "deepens_version": _version()}
    path = write_bundle(folder / f"epoch-{checkpoint.epoch:06d}", "checkpoint", config, arrays)
    for older in folder.iterdir():
        match = _CHECKPOINT.match(older.name)
        if match and int(match.group(1)) < checkpoint.epoch:
            shutil.rmtree(older, ignore_errors=True)
    return path


def remove_checkpoints(folder: str | Path) -> None:
    """Delete the checkpoints :func:`save_checkpoint` wrote in ``folder`` (and temporary folders a kill
    left behind), then ``folder`` itself if nothing else is in it. Other files are never touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        name = entry.name
        ours = _CHECKPOINT.match(name) and is_saved_object(entry)
        leftover = re.match(r"^\.epoch-\d{6,}\.(tmp|old)-[0-9a-f]{12}$", name) and entry.is_dir()
        if ours or leftover:
            shutil.rmtree(entry, ignore_errors=True)
    try:
        folder.rmdir()
    except OSError:  # not empty: the user keeps other things there
        pass


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest ``epoch-NNNNNN`` bundle in ``folder``, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def load_checkpoint(path: str | Path, model: Model, optimizer: Any, input_shape: tuple[int, ...]) -> tuple[Any, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint` for this model and optimizer.

    Returns ``(Checkpoint, info)``. The pytrees are rebuilt from a fresh (shape-only) initialisation,
    so a checkpoint of another model or optimizer is refused (FormatError), not silently misread.
    """
    from deepens.train import Checkpoint

    _, config, arrays = read_bundle(path, ("checkpoint",))
    where = str(path)
    if not isinstance(config.get("members"), int) or not isinstance(config.get("epoch"), int) or "info" not in config:
        raise FormatError(f"{where}: {CONFIG} is not a checkpoint's configuration")
    members = int(config["members"])
    params_template, state_template = member_template(model, input_shape)
    opt_template = jax.eval_shape(optimizer.init, params_template)
    params = unflatten("params", params_template, arrays, members, where)
    state = unflatten("state", state_template, arrays, members, where)
    opt_state = unflatten("opt_state", opt_template, arrays, members, where)
    used = leaf_names("params", params_template) | leaf_names("state", state_template) | leaf_names("opt_state", opt_template)
    _unused(arrays, used | {"history"}, where)
    checkpoint = Checkpoint(params, state, opt_state, epoch=int(config["epoch"]), history=arrays["history"])
    return checkpoint, config["info"]
