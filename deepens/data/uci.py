"""Reader for the UCI regression benchmark in its standard split format (Hernandez-Lobato & Adams 2015,
used by MC dropout and by Deep Ensembles): one folder per data set holding

    data.txt              whitespace-separated numbers, one row per example, no header
    index_features.txt    0-based column numbers of the inputs, one per line
    index_target.txt      0-based column number of the target
    n_splits.txt          number of train/test splits
    index_train_<i>.txt   0-based row numbers of split i's training part, one per line
    index_test_<i>.txt    ... and of its test part

Results are only comparable with published tables on these exact splits.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from deepens.data.standardize import Standardizer  # noqa: F401  (re-exported for callers of this module)

REQUIRED = ("data.txt", "index_features.txt", "index_target.txt", "n_splits.txt")


@dataclasses.dataclass(frozen=True)
class Split:
    """One train/test split, raw (original units). x: ``(N, D)``, y: ``(N,)``, float64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclasses.dataclass(frozen=True)
class UCIDataset:
    """A data set and its splits.

    Attributes:
      name: the folder's name (e.g. ``bostonHousing``).
      x: inputs ``(N, D)``; y: target ``(N,)`` (float64, original units).
      train, test: one index array per split (0-based rows of ``x``).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    train: tuple[np.ndarray, ...]
    test: tuple[np.ndarray, ...]

    @property
    def n_splits(self) -> int:
        return len(self.train)

    def split(self, i: int) -> Split:
        if not 0 <= i < self.n_splits:
            raise ValueError(f"{self.name} has splits 0..{self.n_splits - 1}, asked for split {i}")
        tr, te = self.train[i], self.test[i]
        return Split(self.x[tr], self.y[tr], self.x[te], self.y[te])


def _integers(path: Path, *, one: bool = False) -> np.ndarray:
    """The integers in ``path``, one per line (exactly one with ``one``); ValueError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy warns on an empty file; refused below
            values = np.atleast_1d(np.loadtxt(path, dtype=np.float64, ndmin=1))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} must hold integers, one per line ({' '.join(str(err).split())})") from None
    if values.size and (not np.all(np.isfinite(values)) or np.any(values != np.round(values))):
        raise ValueError(f"{path} must hold integers, one per line")
    if one and values.size != 1:
        raise ValueError(f"{path} must hold exactly one integer, got {values.size} values")
    return values.astype(np.int64)


def is_dataset(folder: str | Path) -> bool:
    """Whether ``folder`` holds a data set in the split format."""
    return all((Path(folder) / name).is_file() for name in REQUIRED)


def list_datasets(root: str | Path) -> list[str]:
    """Names of the sub-folders of ``root`` that hold a data set, sorted case-insensitively."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"UCI data folder {root} does not exist")
    return sorted((p.name for p in root.iterdir() if p.is_dir() and is_dataset(p)), key=str.lower)


def load(folder: str | Path, *, splits: int | None = None) -> UCIDataset:
    """Read a data set folder; ``splits`` keeps only the first that many splits.

    Raises:
      FileNotFoundError: a required file is missing.
      ValueError: malformed content (named): ragged rows, column or row numbers out of range, a split
        whose train and test parts overlap, or fewer split files than ``n_splits.txt`` says.
    """
    folder = Path(folder)
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a UCI split folder: missing {', '.join(missing)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy warns on an empty file; refused below
            data = np.loadtxt(folder / "data.txt", dtype=np.float64, ndmin=2)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{folder / 'data.txt'} is not a table of numbers: {' '.join(str(err).split())}") from None
    if data.size == 0:
        raise ValueError(f"{folder / 'data.txt'} is empty")
    features, target = _integers(folder / "index_features.txt"), _integers(folder / "index_target.txt")
    columns = data.shape[1]
    if target.size != 1:
        raise ValueError(f"{folder / 'index_target.txt'} must name exactly one column, got {target.size}")
    if features.size == 0 or np.any(features < 0) or np.any(features >= columns) or not 0 <= target[0] < columns:
        raise ValueError(f"{folder}: feature or target column numbers fall outside data.txt's {columns} columns")
    if np.any(features == target[0]):
        raise ValueError(f"{folder}: the target column {target[0]} is also listed as a feature")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{folder / 'data.txt'} contains NaN or inf")
    n_splits = int(_integers(folder / "n_splits.txt", one=True)[0])
    if n_splits < 1:
        raise ValueError(f"{folder / 'n_splits.txt'} must be >= 1, got {n_splits}")
    keep = n_splits if splits is None else min(int(splits), n_splits)
    if keep < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    train, test = [], []
    for i in range(keep):
        paths = (folder / f"index_train_{i}.txt", folder / f"index_test_{i}.txt")
        for path in paths:
            if not path.is_file():
                raise ValueError(f"{folder}: n_splits.txt says {n_splits} splits but {path.name} is missing")
        tr, te = _integers(paths[0]), _integers(paths[1])
        rows = data.shape[0]
        if tr.size == 0 or te.size == 0:
            raise ValueError(f"{folder}: split {i} has an empty train or test part")
        if min(tr.min(), te.min()) < 0 or max(tr.max(), te.max()) >= rows:
            raise ValueError(f"{folder}: split {i} has row numbers outside data.txt's {rows} rows")
        if np.intersect1d(tr, te).size:
            raise ValueError(f"{folder}: split {i}'s train and test parts share rows")
        train.append(tr)
        test.append(te)
    return UCIDataset(name=folder.name, x=data[:, features], y=data[:, target[0]], train=tuple(train), test=tuple(test))


def write(folder: str | Path, x: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write a data set in the split format (for tests and for users' own data): the features are the
    first columns of ``data.txt`` and the target the last. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    np.savetxt(folder / "data.txt", np.column_stack([x, y]), fmt="%.10g")
    np.savetxt(folder / "index_features.txt", np.arange(x.shape[1]), fmt="%d")
    np.savetxt(folder / "index_target.txt", [x.shape[1]], fmt="%d")
    np.savetxt(folder / "n_splits.txt", [len(splits)], fmt="%d")
    for i, (tr, te) in enumerate(splits):
        np.savetxt(folder / f"index_train_{i}.txt", tr, fmt="%d")
        np.savetxt(folder / f"index_test_{i}.txt", te, fmt="%d")
    return folder
