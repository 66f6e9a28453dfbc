"""docs/notebooks/ run top to bottom through the public API, each with a smaller budget than its own: the
cell tagged ``parameters`` (papermill's convention) is replaced by the budget below before it runs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "docs" / "notebooks"

# The same names as each notebook's parameters cell, at a budget of seconds rather than minutes: one
# epoch of 300 digits (the tiny_digits folder) instead of several of mnist5k's 4,000.
QUICK = {
    "quickstart.ipynb": "DATA = {data!r}\nEPOCHS = 1",
    "architectures.ipynb": 'MODELS = ["linear", "simple_cnn"]\nDATA = {data!r}\nEPOCHS = 1',
    "paths.ipynb": "DATA = {data!r}\nEPOCHS = 1\nIMAGES = 100\nLESION_SAMPLES = 2",
    "inside.ipynb": "DATA = {data!r}\nEPOCHS = 1",
}


def _parameters(book: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a notebook has exactly one cell tagged parameters"
    return cells[0]


def test_every_notebook_has_a_quick_budget():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(QUICK)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(QUICK))
def test_the_notebook_runs_top_to_bottom(name, tiny_digits, tmp_path):
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = _parameters(book)
    # Every name the quick budget sets is one the notebook's own cell sets: the budget really replaces it.
    names = {line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line}
    assert {line.split("=")[0].strip() for line in QUICK[name].splitlines()} == names
    cell.source = QUICK[name].format(data=str(tiny_digits))
    client = NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)  # every cell ran
    # The notebook ends by showing something: a figure or printed numbers.
    assert code[-1].outputs or code[-2].outputs
