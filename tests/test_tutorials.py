"""Execute every tutorial notebook from top to bottom in a fresh kernel of this Python."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "tutorials"
# executed copies, rendered by the docs build in place of the output-free committed notebooks
EXECUTED = REPO / "build" / "executed_tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


@pytest.mark.tutorials
@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_tutorial_executes(notebook: Path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # the kernel and the notebook's `!cellrep` shell commands must come from this environment
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    notebook_content = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        notebook_content,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook_content.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
    EXECUTED.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook_content, EXECUTED / notebook.name)
