"""The walkthrough notebook executes headless on the demo sweep's results."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "walkthrough.ipynb"


def test_walkthrough_runs_on_the_demo_results(
    demo: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, storage = demo
    monkeypatch.setenv("RAYCOMPRESS_RESULTS", str(storage / "demo"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()  # raises on error
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(images) == 7  # one per figure
    tables = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert any("mnistnet" in o.get("data", {}).get("text/html", "") for o in tables)
