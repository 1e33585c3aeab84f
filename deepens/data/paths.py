"""Where the benchmark data live: a folder the user names, else ``$DEEPENS_DATA``, else ``../shared/data``
beside the repository (or beside the current directory). Nothing is ever downloaded."""

from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENT_VARIABLE = "DEEPENS_DATA"


def default_data_dir() -> Path | None:
    """The first existing folder among ``$DEEPENS_DATA``, ``<repo>/../shared/data`` and
    ``./../shared/data``; None when there is none."""
    candidates = []
    if os.environ.get(ENVIRONMENT_VARIABLE):
        candidates.append(Path(os.environ[ENVIRONMENT_VARIABLE]))
    repository = Path(__file__).resolve().parents[2]
    candidates += [repository.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def resolve(data_dir: str | Path | None, subfolder: str, *, accept_given: bool = False) -> Path:
    """The folder holding ``subfolder``'s data.

    With ``data_dir`` given: ``data_dir/subfolder`` when it exists, else ``data_dir`` itself when it is
    named ``subfolder`` or when ``accept_given`` (e.g. any folder of UCI data sets). Without it:
    ``subfolder`` of :func:`default_data_dir`. Raises FileNotFoundError naming what was looked for.
    """
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"data folder {path} does not exist")
        if (path / subfolder).is_dir():
            return path / subfolder
        if accept_given or path.name.lower() == subfolder.lower():
            return path
        raise FileNotFoundError(f"{path} has no {subfolder}/ folder")
    root = default_data_dir()
    if root is None or not (root / subfolder).is_dir():
        raise FileNotFoundError(
            f"no data folder given and none found: looked for ${ENVIRONMENT_VARIABLE} and ../shared/data/{subfolder} "
            "beside the repository; pass --data-dir"
        )
    return root / subfolder
