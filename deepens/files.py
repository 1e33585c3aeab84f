"""File-system care for everything deepens writes and reads: one writer per path, leftovers of killed
writers, the modes of replaced files, and reading a file without trusting what sits at its name.

- :func:`locked` serialises writers of one path (threads and processes alike) with ``fcntl.flock`` on a
  hidden ``.NAME.lock`` next to it, which the holder removes when it is done.
- :func:`temporary_name` names a writer's hidden temporaries ``.NAME.tmp-PID-TAG`` / ``.NAME.old-PID-TAG``
  so that :func:`remove_stale` can tell a dead writer's leftovers from a live writer's work in progress.
- :func:`keep_mode` gives a replacement the permission bits of what it replaces; anything new is created
  with the ordinary modes (0o666 files, 0o777 folders) minus the user's umask, never a fixed mode.
- :func:`read_regular` reads a regular file only: never a symbolic link, device or FIFO (checked with
  ``lstat`` before anything is opened, so a FIFO cannot block the reader), and only of the size expected.

This module imports nothing of deepens.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

STALE_SECONDS = 15 * 60
"""A temporary whose writer cannot be identified (or may have had its process id reused) is a leftover
once it is this old: no save of one model or table takes that long between writing and renaming."""


def temporary_name(path: Path, what: str) -> Path:
    """A fresh hidden sibling of ``path`` for a writer's ``what`` (``"tmp"`` or ``"old"``), naming this
    process: ``.NAME.what-PID-TAG``."""
    return path.parent / f".{path.name}.{what}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _leftover_pattern(name: str) -> re.Pattern[str]:
    # with the writer's pid (this version), or without it (earlier versions: only age shows they are stale)
    return re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-(?:(\d+)-)?[0-9a-f]{{12}}$")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except (OverflowError, ValueError):
        return False
    return True


def is_stale(entry: Path, pid: int | None, *, holding_lock: bool) -> bool:
    """Whether a temporary of deepens' naming was left by a writer that is gone: its process is dead, or it
    is this process's own while this process holds the path's lock (no thread of it is writing one then),
    or it is older than :data:`STALE_SECONDS`."""
    if pid is not None and (not _process_alive(pid) or (holding_lock and pid == os.getpid())):
        return True
    try:
        return time.time() - os.lstat(entry).st_mtime > STALE_SECONDS
    except FileNotFoundError:
        return False


def _ours(entry: Path, allowed: Iterable[str] | None) -> bool:
    """A leftover deepens can prove it wrote: a plain file, or a folder holding only ``allowed`` names."""
    try:
        mode = os.lstat(entry).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISREG(mode):
        return True
    if not stat.S_ISDIR(mode) or allowed is None:
        return False
    allowed = set(allowed)
    return all(child.name in allowed and child.is_file() and not child.is_symlink() for child in entry.iterdir())


def _remove(entry: Path) -> None:
    try:
        if stat.S_ISDIR(os.lstat(entry).st_mode):
            shutil.rmtree(entry)
        else:
            entry.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # another cleaner got there first, or the folder is read-only: leave it
        pass


def remove_stale(path: Path, *, contents: Iterable[str] | None = None, holding_lock: bool = False) -> list[Path]:
    """Remove the stale ``.NAME.tmp-*`` / ``.NAME.old-*`` leftovers of writers of ``path`` (see
    :func:`is_stale`), only those deepens can prove it wrote: plain files, or folders holding nothing but
    ``contents`` names (``None``: plain files only). Returns what was removed."""
    parent, pattern = path.parent, _leftover_pattern(path.name)
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    stale = []
    for entry in entries:
        match = pattern.match(entry.name)
        if (
            match
            and is_stale(entry, int(match.group(2)) if match.group(2) else None, holding_lock=holding_lock)
            and _ours(entry, contents)
        ):
            stale.append(entry)
    for entry in stale:
        _remove(entry)
    return stale


def lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``path`` (``fcntl.flock`` on the hidden ``.NAME.lock`` beside it) for the
    block: other threads and processes that lock the same path wait. The lock file is removed on release;
    a waiter that then finds its locked file gone (or replaced) locks the current one instead, so there is
    never more than one holder. A kill releases the lock (the file stays, empty, until the next writer)."""
    name = lock_path(path)
    while True:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = os.stat(name, follow_symlinks=False)
            held = os.fstat(fd)
        except FileNotFoundError:  # unlinked by the holder we waited for
            os.close(fd)
            continue
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            with contextlib.suppress(OSError):
                os.unlink(name)
            yield  # a file system without locks: writes stay atomic, only not serialised
            return
        except BaseException:
            os.close(fd)
            raise
        if (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev):
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)


def remove_free_lock(path: Path) -> None:
    """Remove the lock file of ``path`` if nobody holds it (what a killed holder leaves)."""
    name = lock_path(path)
    try:
        fd = os.open(name, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        current, held = os.stat(name, follow_symlinks=False), os.fstat(fd)
        if (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev):
            os.unlink(name)
    except OSError:  # held by someone, or gone already
        pass
    finally:
        os.close(fd)


def keep_mode(replacement: Path, replaced: Path) -> None:
    """Give ``replacement`` the permission bits of ``replaced`` when that exists (a ``chmod 600`` file stays
    600 when it is overwritten); otherwise leave the umask's mode it was created with."""
    try:
        mode = stat.S_IMODE(os.stat(replaced).st_mode)
    except FileNotFoundError:
        return
    os.chmod(replacement, mode)


_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _what(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_regular(
    path: Path, *, size: int | None = None, limit: int | None = None, error: type[Exception] = ValueError
) -> bytes:
    """The bytes of the regular file ``path``, of exactly ``size`` bytes when given (at most ``limit``).

    Nothing is opened before ``os.lstat`` shows a regular file of the right size, so a symbolic link (to
    ``/dev/zero``, or to a file elsewhere), a device or a FIFO (which would block the reader forever) is
    refused, as is a file larger or smaller than expected; the file is then opened without following links
    and without blocking, and must still be the file that was checked.

    Raises:
      FileNotFoundError: nothing at ``path``.
      error: anything else at ``path``, or a size other than ``size``, or above ``limit``.
    """
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path} is {_what(st.st_mode)}, not a regular file; refusing to read it")
    if size is not None and st.st_size != size:
        state = "truncated" if st.st_size < size else "longer than written"
        raise error(f"{path} is {state}: {st.st_size} bytes, the manifest says {size}")
    if limit is not None and st.st_size > limit:
        raise error(f"{path} is {st.st_size} bytes, more than the {limit} such a file can hold; refusing to read it")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise error(f"{path} became a symbolic link while being read; refusing to read it") from None
        raise
    with os.fdopen(fd, "rb") as f:
        opened = os.fstat(f.fileno())
        if not stat.S_ISREG(opened.st_mode) or (opened.st_ino, opened.st_dev) != (st.st_ino, st.st_dev):
            raise error(f"{path} was replaced while being read; refusing to read it")
        data = f.read(st.st_size + 1)
    if len(data) != st.st_size:
        raise error(f"{path} changed size while being read ({len(data)} bytes, not {st.st_size})")
    return data


def fsync_dir(path: Path) -> None:
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


def make_folder(folder: Path) -> None:
    """``mkdir -p``, with a ValueError naming the part of the path that is a file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise ValueError(f"cannot write into {folder}: {blocking} is a file, not a folder") from None
