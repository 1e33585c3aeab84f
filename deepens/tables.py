"""Tables on disk for the command line: reading CSV and Parquet, choosing and checking columns, inferring
the task, and writing results atomically.

Everything here raises ValueError (or FileNotFoundError) with a one-line message naming the file, the
columns and the rows at fault, before anything is trained or written. Rows are named by their position
among the data rows, counted from 1 (the header of a CSV file is not a data row).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def _kind(path: Path) -> str:
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown file type {path.suffix!r}; use .csv or .parquet")
    return kind


def read_table(path: str | Path) -> pd.DataFrame:
    """The table in a CSV or Parquet file, with a fresh 0..N-1 index."""
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read it as {kind.upper()} ({_first_line(err)})") from None
    if len(frame) == 0:
        raise ValueError(f"{path}: the table has no data rows")
    frame.columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise ValueError(f"{path}: duplicate column names {_names(duplicated)}")
    return frame.reset_index(drop=True)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV or Parquet (by the extension) atomically (see :func:`deepens.io.atomic_file`):
    ``path`` is either the complete new table or untouched. A replaced file keeps its permission bits; a
    new one gets the user's umask."""
    from deepens.io import atomic_file

    path = Path(path)
    if _kind(path) == "csv":
        return atomic_file(path, lambda temporary: frame.to_csv(temporary, index=False))
    return atomic_file(path, lambda temporary: frame.to_parquet(temporary, index=False))


def check_output_path(output: str | Path, inputs: Sequence[str | Path]) -> None:
    """A ValueError when ``output`` is any of ``inputs`` (after resolving ``.``, ``..`` and symbolic links,
    or the same file under another name, a hard link): writing it would destroy that input. Call it
    before anything is read or trained."""
    target = Path(output)
    for given in inputs:
        source = Path(given)
        same = os.path.realpath(target) == os.path.realpath(source)
        if not same and target.exists() and source.exists():
            try:
                same = os.path.samefile(target, source)
            except OSError:
                same = False
        if same:
            raise ValueError(
                f"the output {target} is the input {source}: writing it would destroy that input; "
                "choose another output path"
            )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _names(columns: Sequence[str]) -> str:
    return ", ".join(repr(c) for c in columns)


def describe_rows(positions: Sequence[int] | np.ndarray) -> str:
    """``rows 3, 7 and 12 more``, from 0-based positions, named as data rows counted from 1."""
    rows = [int(p) + 1 for p in positions]
    shown = ", ".join(str(r) for r in rows[:10])
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str, source: str) -> None:
    """A ValueError naming the ``columns`` that ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        available = _names(list(frame.columns)[:20]) + (" ..." if len(frame.columns) > 20 else "")
        raise ValueError(
            f"{source} has no {what} column{'s' if len(missing) > 1 else ''} {_names(missing)} "
            f"(its columns: {available})"
        )


def is_numeric(column: pd.Series) -> bool:
    """Numbers or booleans (not dates, not text, not categories)."""
    return pd.api.types.is_bool_dtype(column) or (
        pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_complex_dtype(column)
    )


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]``, typed: a Series for a column name (pandas' annotations say Series or DataFrame)."""
    return cast(pd.Series, frame[name])


def _to_numeric(column: pd.Series) -> pd.Series:
    """``pd.to_numeric(column, errors="coerce")``, typed: a Series in, a Series out."""
    return cast(pd.Series, pd.to_numeric(column, errors="coerce"))


def _first_non_numeric(column: pd.Series) -> str:
    """``row 5 holds 'abc'``: the first value that is not a number, for a message."""
    converted = _to_numeric(column)
    bad = np.flatnonzero(converted.isna().to_numpy() & column.notna().to_numpy())
    if len(bad) == 0:
        return f"dtype {column.dtype}"
    return f"{describe_rows(bad[:1])} holds {column.iloc[bad[0]]!r}"


def numeric_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """A ValueError naming every column among ``columns`` that is not numeric, with an offending value."""
    bad = [c for c in columns if not is_numeric(_column(frame, c))]
    if bad:
        detail = "; ".join(f"{c!r}: {_first_non_numeric(_column(frame, c))}" for c in bad[:5])
        raise ValueError(
            f"{source}: non-numeric feature column{'s' if len(bad) > 1 else ''} {_names(bad)} ({detail}); "
            f"deepens uses numeric columns only: drop {'them' if len(bad) > 1 else 'it'} with --drop {' '.join(bad)}"
        )


def feature_columns(frame: pd.DataFrame, exclude: Sequence[str], source: str) -> list[str]:
    """Every column not in ``exclude``, checked to be numeric; at least one."""
    columns = [c for c in frame.columns if c not in set(exclude)]
    if not columns:
        raise ValueError(f"{source}: no feature columns are left (all were the target, the id or dropped)")
    numeric_columns(frame, columns, source)
    return columns


def features(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The feature columns as float64 (booleans become 0 and 1), keeping their names; a ValueError names
    the column and rows of values too large for float32 (the networks' precision)."""
    table = cast(pd.DataFrame, frame[list(columns)].astype(np.float64))
    for c in table.columns:
        _refuse_beyond_float32(_column(table, c).to_numpy(), f"column {c!r}")
    return table


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _refuse_beyond_float32(values: np.ndarray, what: str) -> None:
    huge = np.flatnonzero(np.abs(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)) > FLOAT32_MAX)
    if len(huge):
        raise ValueError(
            f"{what} holds values too large for float32 (|value| > {FLOAT32_MAX:.3g}) in "
            f"{describe_rows(huge)}: the first is {values[huge[0]]:.6g}"
        )


def unusable_rows(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """0-based positions of rows with a missing value, or an infinite number, in any of ``columns``."""
    bad = np.zeros(len(frame), bool)
    for c in columns:
        column = _column(frame, c)
        bad |= column.isna().to_numpy()
        if is_numeric(column) and not pd.api.types.is_bool_dtype(column):
            bad |= ~np.isfinite(column.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.flatnonzero(bad)


def drop_unusable(frame: pd.DataFrame, columns: Sequence[str], drop: bool, source: str) -> tuple[pd.DataFrame, int]:
    """``frame`` without rows that have missing or infinite values in ``columns`` when ``drop``;
    otherwise a ValueError naming those rows and columns. Returns the frame and the number dropped."""
    bad = unusable_rows(frame, columns)
    if len(bad) == 0:
        return frame, 0
    if not drop:
        where = [
            c for c in columns if frame[c].iloc[bad].isna().any() or c in _infinite_columns(frame.iloc[bad], columns)
        ]
        raise ValueError(
            f"{source}: missing or infinite values in {describe_rows(bad)} (column{'s' if len(where) > 1 else ''} "
            f"{_names(where)}); fix them or pass --drop-missing to skip such rows"
        )
    kept = frame.drop(index=frame.index[bad]).reset_index(drop=True)
    if len(kept) == 0:
        raise ValueError(f"{source}: every row has a missing or infinite value; nothing is left")
    return kept, len(bad)


def _infinite_columns(frame: pd.DataFrame, columns: Sequence[str]) -> set[str]:
    return {
        c
        for c in columns
        if is_numeric(_column(frame, c))
        and not pd.api.types.is_bool_dtype(frame[c])
        and np.isinf(_column(frame, c).to_numpy(dtype=np.float64, na_value=np.nan)).any()
    }


MAX_CLASSES = 20


def infer_task(target: pd.Series) -> tuple[str, str]:
    """``(task, reason)``: classification for labels (text, booleans, or whole numbers taking few
    values: from 2 to :data:`MAX_CLASSES`, and at most half as many as there are rows), regression
    otherwise (a constant numeric target too: it has nothing to classify, and regresses to its value).

    A text column that is mostly numbers (more than half of its values) with a few other values is
    neither: a ValueError names the rows holding text (pass ``--task`` to choose).
    """
    values = target.dropna()
    name = target.name
    if pd.api.types.is_bool_dtype(values):
        return "classification", f"target {name!r} is boolean"
    if not is_numeric(values):
        _refuse_stray_text(target)
        return "classification", f"target {name!r} holds text labels ({values.nunique()} distinct)"
    numbers = values.to_numpy(dtype=np.float64)
    numbers = numbers[np.isfinite(numbers)]
    distinct = len(np.unique(numbers))
    if distinct == 1:
        return "regression", (
            f"target {name!r} is constant ({numbers[0]:g} in every row): regression to that value; "
            "a classifier needs at least 2 classes"
        )
    if len(numbers) and np.all(numbers == np.round(numbers)):
        if distinct <= MAX_CLASSES and distinct <= len(numbers) / 2:
            return "classification", f"target {name!r} holds {distinct} distinct whole numbers (at most {MAX_CLASSES})"
        return "regression", f"target {name!r} holds {distinct} distinct whole numbers (too many for classes)"
    return "regression", f"target {name!r} holds real numbers"


def _refuse_stray_text(target: pd.Series) -> None:
    """ValueError for a text column that is mostly numbers: the text is likely a typo or a marker of a
    missing value, and taking every value as a class would make a classifier of one class per number."""
    present = target.notna().to_numpy()
    converted = _to_numeric(target)
    text = np.flatnonzero(present & converted.isna().to_numpy())
    numbers = int(present.sum()) - len(text)
    if len(text) and numbers > present.sum() / 2:
        examples = ", ".join(repr(v) for v in dict.fromkeys(target.iloc[text[:5]].tolist()))
        raise ValueError(
            f"target {target.name!r} is mostly numbers ({numbers} of {int(present.sum())} values) but "
            f"{describe_rows(text)} hold{'s' if len(text) == 1 else ''} text ({examples}): fix or remove "
            f"{'them' if len(text) > 1 else 'it'}, or choose with --task (classification takes every value as a label)"
        )


def labels(target: pd.Series) -> np.ndarray:
    """Class labels as a numpy array: text as Python strings (object), numbers and booleans as they are."""
    if is_numeric(target):
        return target.to_numpy()
    return np.asarray([str(v) for v in target], dtype=object)


def regression_target(target: pd.Series, source: str) -> np.ndarray:
    """A numeric target as float64 ``(N,)``, or a ValueError with the first value that is not a number."""
    if not is_numeric(target) or pd.api.types.is_bool_dtype(target):
        raise ValueError(
            f"{source}: the target {target.name!r} is not numeric ({_first_non_numeric(target)}); "
            "for class labels use --task classification"
        )
    values = target.to_numpy(dtype=np.float64)
    _refuse_beyond_float32(values, f"{source}: the target {target.name!r}")
    return values
