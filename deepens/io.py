"""The deepens file format, without pickle: verified bundles, atomic writes and named arrays.

A saved object is a folder of three files:

    manifest.json       {"format": "deepens", "format_version": 1, "kind": ...,
                         "files": {name: {"sha256": ..., "bytes": ...}}, "manifest_sha256": ...}
    config.json         what the object is (plain JSON; see :mod:`deepens.serialization`)
    arrays.safetensors  every array (parameters, model state, optimizer state, loss history)

Nothing is ever unpickled and no code is imported by name from a file: loading parses JSON and
safetensors (a JSON header and raw little-endian buffers). Of deepens, this module imports only the
leaf :mod:`deepens.files` (locks, leftovers, modes, safe reads): what the arrays and the configuration
mean (ensembles, estimators, checkpoints) is :mod:`deepens.serialization`'s business.

Integrity: the manifest holds the size and sha256 of every other file and a sha256 of its own content,
so a truncated, modified or missing file, or a manifest edited by hand, is refused with an error that
names the file; a format version this code does not know is refused before anything else is read.
Each file is read into memory once, checked, and parsed from those same bytes.

Hostile folders: every file is read only if ``os.lstat`` shows a regular file (never a symbolic link,
which could point at ``/dev/zero`` or at a file elsewhere, nor a device or a FIFO, which is never opened)
of the size the manifest gives, checked before reading; the manifest itself is bounded
(:data:`MAX_MANIFEST_BYTES`). The model path itself may be a symbolic link to a model folder.

Atomicity: everything is written into a hidden temporary folder next to the destination, flushed to
disk, and renamed into place, so a crash during a save leaves no half-written model. Replacing an
existing model renames the old folder aside first; only a crash between those two renames (two system
calls) leaves the old model under its hidden ``.NAME.old-PID-TAG`` name instead of ``NAME``. A folder
that holds anything other than a deepens object is never overwritten. Saves to one path are serialised
by a lock (:func:`deepens.files.locked`), so concurrent saves end with one intact model; each save first
removes the stale temporaries killed saves left (:func:`deepens.files.remove_stale`). A replaced model
folder and its files keep their permission bits; new ones get the user's umask.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from deepens import files

FORMAT = "deepens"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
ARRAYS = "arrays.safetensors"
_FILES = (CONFIG, ARRAYS)
MAX_MANIFEST_BYTES = 64 * 1024  # a manifest is a few hundred bytes; a bigger one is not ours


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


def is_saved_object(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a deepens object and nothing else (it is not verified here):
    the only kind of folder a save may replace."""
    path = Path(path)
    try:
        entries = list(path.iterdir()) if path.is_dir() else None
        if entries is None or not {p.name for p in entries} <= {MANIFEST, *_FILES}:
            return False
        if not all(stat.S_ISREG(os.lstat(p).st_mode) for p in entries):  # no links, FIFOs or devices
            return False
        return json.loads(files.read_regular(path / MANIFEST, limit=MAX_MANIFEST_BYTES)).get("format") == FORMAT
    except (ValueError, OSError, AttributeError):
        return False


def write_bundle(
    path: str | Path,
    kind: str,
    config: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    manifest_extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a verified, atomic bundle to the folder ``path`` (replacing a deepens object already there;
    through a symbolic link, the folder it points to). ``manifest_extra``: plain JSON kept in the manifest
    (e.g. a checkpoint's run), so that it is covered by the manifest's own hash.

    Raises:
      ValueError: ``path`` exists and is a file or a folder holding something else, or its parent is a
        file; ``config`` is not plain JSON (e.g. holds NaN).
    """
    from safetensors.numpy import save as safetensors_bytes

    path = Path(path)
    if path.is_symlink():  # replace the folder the link points to, keeping the link
        path = Path(os.path.realpath(path))
    try:
        config_bytes = json.dumps(config, indent=1, sort_keys=True, allow_nan=False).encode() + b"\n"
    except ValueError as err:
        raise ValueError(f"cannot save: the configuration is not plain JSON ({err})") from None
    contiguous = {name: np.ascontiguousarray(np.asarray(a)) for name, a in arrays.items()}
    contents = {CONFIG: config_bytes, ARRAYS: safetensors_bytes(contiguous)}
    manifest: dict[str, Any] = {
        **dict(manifest_extra or {}),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "files": {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in contents.items()},
    }
    manifest["manifest_sha256"] = _sha256(_canonical(manifest))
    contents[MANIFEST] = _canonical(manifest)

    parent = path.parent
    files.make_folder(parent)
    with files.locked(path):
        files.remove_stale(path, contents=contents, holding_lock=True)
        if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or is_saved_object(path))):
            raise ValueError(f"refusing to overwrite {path}: it exists and is not a saved deepens model")
        temporary, old = files.temporary_name(path, "tmp"), files.temporary_name(path, "old")
        try:
            temporary.mkdir()
            for name, data in contents.items():  # the manifest last: a folder without one is never a model
                _write_file(temporary / name, data)
                files.keep_mode(temporary / name, path / name)
            files.fsync_dir(temporary)
            files.keep_mode(temporary, path)
            if path.exists():
                os.rename(path, old)
            os.rename(temporary, path)
            files.fsync_dir(parent)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            if old.exists() and not path.exists():
                os.rename(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    return path


def atomic_file(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Create or replace the file ``path`` atomically: ``write(temporary)`` fills a hidden file in the
    same folder, which is flushed and renamed over ``path``; on any failure it is removed and ``path``
    is untouched. Writers of one path take turns (a lock); a replaced file's permission bits are kept, a
    new file gets the user's umask."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder")
    with files.locked(path):
        files.remove_stale(path, holding_lock=True)
        temporary = files.temporary_name(path, "tmp")
        try:
            write(temporary)
            with open(temporary, "rb") as f:
                os.fsync(f.fileno())
            files.keep_mode(temporary, path)
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
    try:  # the size is checked before a byte is read; links, devices and FIFOs are refused unopened
        data = files.read_regular(file, size=expected["bytes"], error=FormatError)
    except FileNotFoundError:
        raise FormatError(f"{file} is missing: the saved model is incomplete") from None
    if _sha256(data) != expected["sha256"]:
        raise FormatError(f"{file} was modified after saving: its sha256 does not match the manifest")
    return data


def _read_manifest(folder: Path) -> dict[str, Any]:
    """The checked manifest of the bundle in ``folder`` (format, version, own hash, file list)."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no saved model at {folder}" + (" (it is a file, not a folder)" if folder.exists() else "")
        )
    try:
        raw = files.read_regular(folder / MANIFEST, limit=MAX_MANIFEST_BYTES, error=FormatError)
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
    listed = manifest.get("files", {})
    if not isinstance(listed, dict) or set(listed) != set(_FILES):
        raise FormatError(f"{folder / MANIFEST} lists files {sorted(listed)}, expected {sorted(_FILES)}")
    for name, entry in listed.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and type(entry.get("bytes")) is int
            and entry["bytes"] >= 0
        ):
            raise FormatError(f"{folder / MANIFEST} describes {name} without a size and sha256")
    if not isinstance(manifest.get("kind"), str):
        raise FormatError(f"{folder / MANIFEST} names no kind of object")
    return manifest


def bundle_kind(path: str | Path) -> str:
    """What the bundle at ``path`` holds (``"ensemble"``, an estimator's class name, ``"checkpoint"``),
    from its checked manifest alone; :func:`read_bundle` verifies the rest."""
    return str(_read_manifest(Path(path))["kind"])


def read_bundle(
    path: str | Path, kinds: tuple[str, ...] | None = None
) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a bundle: ``(kind, config, arrays)``.

    Raises:
      FileNotFoundError: there is no folder at ``path``.
      FormatError: a missing, truncated or modified file, an unknown format version, or a kind other
        than ``kinds``.
    """
    from safetensors.numpy import load as safetensors_load

    folder = Path(path)
    manifest = _read_manifest(folder)
    listed = manifest["files"]
    kind = manifest["kind"]
    if kinds is not None and kind not in kinds:
        raise FormatError(f"{folder} holds a {kind}, not a {' or '.join(kinds)}")
    config_bytes = _read_verified(folder, CONFIG, listed[CONFIG])
    array_bytes = _read_verified(folder, ARRAYS, listed[ARRAYS])
    try:
        config = json.loads(config_bytes)
        arrays = safetensors_load(array_bytes)
    except Exception as err:  # verified bytes that do not parse: written by something else
        raise FormatError(f"{folder} holds files that cannot be parsed ({err})") from None
    return kind, config, arrays


# --------------------------------------------------------------------------------------------------
# Pytrees <-> named arrays. Leaves are named by their key path; the tree structure is rebuilt from a
# template (the shapes a fresh initialisation would give), never from the file.


def flatten(prefix: str, tree: Any, to_host: Callable[[Any], Any] | None = None) -> dict[str, np.ndarray]:
    """Named host copies of a pytree's leaves: ``{prefix + keypath: array}``. Pass arrays already on the
    host, or a ``to_host`` that brings them there (e.g. :func:`deepens.devices.to_host`, which gathers
    arrays sharded over several processes)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree if to_host is None else to_host(tree))
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


def check_unused(arrays: Mapping[str, np.ndarray], used: set[str], where: str) -> None:
    """FormatError when ``arrays`` holds names outside ``used`` (a file written for something else)."""
    extra = sorted(set(arrays) - used)
    if extra:
        raise FormatError(f"{where}: unexpected arrays {extra[:5]}")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``metadata`` given to ``deepens.save`` or an estimator's ``save``, after verifying every file."""
    return read_bundle(path)[1].get("metadata", {})


# --------------------------------------------------------------------------------------------------
# Training checkpoints: a folder of numbered bundles, the newest complete one wins. Cleanup removes only
# what deepens can prove it wrote: folders named like checkpoints whose verified manifest says
# kind "checkpoint" and carries a run (deepens writes both); a user's own ``epoch-000001/`` survives.

_CHECKPOINT = re.compile(r"^epoch-(\d{6,})$")
_CHECKPOINT_LEFTOVER = re.compile(r"^\.(epoch-\d{6,})\.(tmp|old|lock)")


def check_checkpoint_dir(folder: str | Path, *, model: str | Path | None = None) -> Path:
    """``folder`` as a Path, checked to be usable for checkpoints: absent or a folder, not a saved model,
    and not the ``model`` folder the run will save to. Call it before training starts.

    Raises:
      ValueError: naming the problem.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"checkpoint_dir {folder} is a file, not a folder; give a folder (it is created if absent)")
    if is_saved_object(folder):
        raise ValueError(f"checkpoint_dir {folder} holds a saved model; give a folder of its own for checkpoints")
    if model is not None and os.path.realpath(folder) == os.path.realpath(model):
        raise ValueError(f"checkpoint_dir {folder} is the model folder; give checkpoints a folder of their own")
    return folder


def checkpoint_run(path: str | Path) -> str | None:
    """The run recorded in the manifest of the checkpoint at ``path``, or None when ``path`` is not a
    checkpoint deepens can prove it wrote (a folder ``epoch-NNNNNN`` holding only a deepens bundle whose
    verified manifest says kind ``"checkpoint"`` and carries a run)."""
    path = Path(path)
    if not _CHECKPOINT.match(path.name) or path.is_symlink() or not is_saved_object(path):
        return None
    try:
        manifest = _read_manifest(path)
    except (ValueError, OSError):
        return None
    run = manifest.get("run")
    return run if manifest.get("kind") == "checkpoint" and isinstance(run, str) else None


def save_checkpoint(
    folder: str | Path, epoch: int, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray], run: str = ""
) -> Path:
    """Write a checkpoint bundle (plain JSON ``config``, host ``arrays``) as ``folder/epoch-NNNNNN``, its
    manifest naming the ``run`` (a digest of the run's identity), and then remove the older checkpoints of
    the same run. Each checkpoint is its own atomic bundle, so a kill at any moment leaves the previous one
    intact. A ValueError when ``folder`` is a file (see :func:`check_checkpoint_dir`) or ``epoch-NNNNNN``
    holds anything but a checkpoint (a user's folder, a saved model), which is never replaced."""
    folder = check_checkpoint_dir(folder)
    path = folder / f"epoch-{epoch:06d}"
    if os.path.lexists(path) and checkpoint_run(path) is None and not (path.is_dir() and not any(path.iterdir())):
        raise ValueError(
            f"refusing to overwrite {path}: it is not a checkpoint deepens wrote; give the run "
            "a checkpoint_dir of its own"
        )
    path = write_bundle(path, "checkpoint", {**config, "epoch": int(epoch)}, arrays, manifest_extra={"run": str(run)})
    for older in folder.iterdir():
        match = _CHECKPOINT.match(older.name)
        if match and int(match.group(1)) < epoch and checkpoint_run(older) == str(run):
            shutil.rmtree(older, ignore_errors=True)
    return path


def remove_checkpoints(folder: str | Path, run: str | None = None) -> None:
    """Delete the checkpoints :func:`save_checkpoint` wrote in ``folder`` (of ``run`` only, when given) and
    the stale temporaries killed saves left there, then ``folder`` itself if nothing else is in it. Nothing
    else is touched: not a user's folder named like a checkpoint, not a file; ``folder`` a file is left."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    names = set()
    for entry in folder.iterdir():
        found = checkpoint_run(entry)
        if found is not None and (run is None or found == run):
            shutil.rmtree(entry, ignore_errors=True)
        elif match := _CHECKPOINT_LEFTOVER.match(entry.name):
            names.add(match.group(1))
    for name in names:
        files.remove_stale(folder / name, contents=(MANIFEST, *_FILES))
        files.remove_free_lock(folder / name)
    with contextlib.suppress(OSError):  # not empty: the user keeps other things there
        folder.rmdir()


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest checkpoint deepens wrote in ``folder`` (see :func:`checkpoint_run`), or None; folders
    merely named like checkpoints are passed over. A ValueError when ``folder`` is a file."""
    folder = check_checkpoint_dir(folder)
    if not folder.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and checkpoint_run(p) is not None
    ]
    return max(found)[1] if found else None
