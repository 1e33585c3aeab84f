"""The notebooks in examples/: stored without outputs, in step with their generator (examples/make_notebooks.py),
and each one executed top to bottom in quick mode (DEEPENS_QUICK=1), where every cell tagged ``figure``
must show a non-blank image. A failing cell fails the test with the cell and its traceback.

Executing needs nbclient, nbformat and ipykernel (the ``test`` and ``notebooks`` extras); without them
those tests skip, the output check still runs.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(path.name for path in EXAMPLES.glob("*.ipynb"))
EXPECTED = {"practical_part1.ipynb", "practical_part2.ipynb", "your_data.ipynb"}


def test_the_three_notebooks_are_there() -> None:
    assert set(NOTEBOOKS) >= EXPECTED, f"missing: {sorted(EXPECTED - set(NOTEBOOKS))}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    cells = json.loads((EXAMPLES / name).read_text())["cells"]
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{name}, cell {index} was committed with outputs; run python examples/make_notebooks.py "
                "(or jupyter nbconvert --clear-output --inplace)"
            )
        assert "execution" not in cell.get("metadata", {}), f"{name}, cell {index} holds execution timings"


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", EXAMPLES / "make_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_match_their_generator() -> None:
    nbformat = pytest.importorskip("nbformat")
    built = _generator().build()
    assert set(built) == set(NOTEBOOKS), "examples/ and make_notebooks.py disagree on which notebooks exist"
    for name, notebook in built.items():
        stored = nbformat.read(EXAMPLES / name, as_version=4)
        assert [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in stored.cells] == [
            (c.cell_type, c.source, c.metadata.get("tags", [])) for c in notebook.cells
        ], f"{name} differs from make_notebooks.py: edit the generator, then run python examples/make_notebooks.py"


def _pngs(cell) -> list[bytes]:
    return [
        base64.b64decode(output["data"]["image/png"])
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]


def _is_blank(png: bytes) -> bool:
    from matplotlib import image

    pixels = image.imread(io.BytesIO(png), format="png")[..., :3]
    return float(np.std(pixels)) < 0.02


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_in_quick_mode(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("DEEPENS_QUICK", "1")  # the kernel inherits this process's environment
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    # The "python3" kernel is ipykernel in this interpreter, so the kernel imports the deepens under test.
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    seconds = time.perf_counter() - start

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    first_output = "".join(output.get("text", "") for output in code[0].outputs)
    assert "quick mode" in first_output, f"{name} did not pick up DEEPENS_QUICK=1: {first_output!r}"
    figures = [cell for cell in code if "figure" in cell.metadata.get("tags", [])]
    assert figures, f"{name} has no cell tagged as a figure"
    for cell in figures:
        pngs = _pngs(cell)
        assert pngs, f"{name}: a figure cell showed no image:\n{cell.source[:300]}"
        assert not any(_is_blank(png) for png in pngs), f"{name}: a blank image from:\n{cell.source[:300]}"
    # Quick mode is meant to run in under a minute; the bound is loose for a loaded shared machine and
    # catches a notebook that ignores DEEPENS_QUICK and runs its full settings.
    assert seconds < 400, f"{name} took {seconds:.0f} s in quick mode"
