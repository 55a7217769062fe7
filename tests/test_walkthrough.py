"""The walkthrough notebook executes headless on the demo sweep's results, also by the README's
command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "analysis" / "walkthrough.ipynb"
README = ROOT / "README.md"


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


def readme_command() -> str:
    """The command of the README's "Figures and tables" section that runs the notebook."""
    section = README.read_text().split("\n## Figures and tables\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    (command,) = [line for b in blocks for line in b.splitlines() if "analysis/walkthrough" in line]
    return command


def test_the_readmes_command_runs_the_walkthrough(demo: tuple[int, Path], tmp_path: Path) -> None:
    """As written, from the root of a copy of the repository's layout, on the demo results
    (`RAYCOMPRESS_RESULTS`, as the README says); and it fails when a cell fails."""
    _, storage = demo
    command = readme_command()
    root = tmp_path / "checkout"
    (root / "analysis").mkdir(parents=True)
    shutil.copy(NOTEBOOK, root / "analysis")
    # the environment's own commands first, as in an activated virtual environment
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    def run(results: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": path, "RAYCOMPRESS_RESULTS": str(results)}
        return subprocess.run(
            ["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip

    done = run(storage / "demo")
    assert done.returncode == 0, done.stderr[-3000:]
    (tmp_path / "empty").mkdir()
    failed = run(tmp_path / "empty")
    assert failed.returncode == 1 and "holds no trial folders" in failed.stderr
