"""Write the notebooks of examples/ from their cells in examples/notebook_sources/: ``python examples/make_notebooks.py``.

The notebooks are stored without outputs; the modules in notebook_sources/ are their source, so a change is
reviewed as Python rather than as notebook JSON (tests/test_notebooks.py checks that the committed notebooks
match them and carry no outputs). Every notebook reads ``DEEPENS_QUICK=1`` to run small (the tests do, in
about a minute each) and runs the practical's full settings otherwise. Code cells tagged ``figure`` must
show an image; the tests check that they do.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

HERE = Path(__file__).resolve().parent
NAMES = ("practical_part1", "practical_part2", "your_data")


def notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):  # fixed ids, so rebuilding an unchanged notebook changes no byte
        cell.id = f"cell-{i:02d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def build() -> dict[str, nbformat.NotebookNode]:
    """Every notebook, by file name."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return {f"{name}.ipynb": notebook(importlib.import_module(f"notebook_sources.{name}").CELLS) for name in NAMES}


def main() -> None:
    for name, nb in build().items():
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
