"""JAX's persistent compilation cache for the command line and the estimators: compile once per machine,
not once per process.

A compiled XLA program is written to a folder keyed by a hash, and a later process that lowers the same
program loads it instead of compiling. Never a correctness risk: JAX's key (``jax/_src/cache_key.py``,
JAX 0.10) hashes the lowered StableHLO module itself, the jaxlib version, the backend's platform and
platform version, the ``XLA_FLAGS`` and ``LIBTPU_INIT_ARGS`` environment, the serialized compile options
(which hold the debug options and device assignment) and the devices' kind; a changed JAX, backend or flag
gives a new key, so it misses rather than loads a wrong program.

Concurrent processes: without the ``filelock`` package (and with no size limit, the default here) JAX's
``LRUCache.put`` (``jax/_src/lru_cache.py``) checks whether the entry exists and then writes it with one
``Path.write_bytes``; readers call ``read_bytes``. Two processes writing one key write the same program
(each write one whole compressed stream from offset 0), so the file starts with one complete stream; an
entry read while half written fails to decompress (zlib checks its length and Adler-32), and JAX catches
every cache read error (``compiler._cache_read``), warns and compiles afresh. So at worst a race costs
a compilation, never a wrong result. Deleting the folder at any time is safe.

Turn it off with ``DEEPENS_NO_CACHE=1`` (or ``deepens --no-cache``); move it with ``DEEPENS_CACHE_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "DEEPENS_CACHE_DIR"
NO_CACHE_ENV = "DEEPENS_NO_CACHE"


def default_cache_dir() -> Path:
    """``$DEEPENS_CACHE_DIR``, else ``$XDG_CACHE_HOME/deepens/jax``, else ``~/.cache/deepens/jax``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepens" / "jax"


def cache_disabled() -> bool:
    """True when ``DEEPENS_NO_CACHE`` is set to anything but ``''`` or ``'0'``."""
    return os.environ.get(NO_CACHE_ENV, "") not in ("", "0")


def enable_compilation_cache(path: str | Path | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at ``path`` (default :func:`default_cache_dir`) and cache
    every program, however small or quick to compile. Returns the folder, or None when the cache is
    turned off (``DEEPENS_NO_CACHE``) or the folder cannot be created (then nothing changes).

    Call it before the first compilation: JAX reads the setting when it first uses the cache. Calling it
    again with the same folder is free.
    """
    if cache_disabled():
        return None
    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    if jax.config.jax_compilation_cache_dir != str(folder):  # pyright: ignore[reportAttributeAccessIssue]  # jax defines its options as attributes at run time
        jax.config.update("jax_compilation_cache_dir", str(folder))
    # The defaults skip programs compiled in under a second; ours mostly are, and still cost start-up.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder
