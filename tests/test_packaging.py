"""A plain (non-editable) install must carry what the commands need: demo data, sweeps,
the figure code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_what_the_commands_need(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so the build leaves no build/ in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for folder in ("raycompress", "sweeps", "analysis"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("raycompress-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "raycompress/assets/fashion_mnist_demo.npz" in names
    assert "raycompress/assets/FASHION_MNIST_LICENSE.txt" in names
    assert "raycompress/metrics/collapse.py" in names
    assert "raycompress/sweeps/thesis.py" in names  # the catalogue ships with the package
    assert "raycompress/analysis/figures.py" in names  # the report command's figure code
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    probe = (
        "import raycompress, raycompress.report, raycompress.sweep;"
        "print(raycompress.__file__); raycompress.sweep.main(['--list'])"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site)},
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert shown.startswith(str(site)) and "thesis_fmnist" in shown


def test_the_library_has_no_import_cycle() -> None:
    """Modules import each other one way only, imports under TYPE_CHECKING included."""
    import ast

    folders = {"raycompress": ROOT / "raycompress", "raycompress.analysis": ROOT / "analysis",
               "raycompress.sweeps": ROOT / "sweeps"}  # fmt: skip
    modules = {
        f"{package}.{path.relative_to(folder).with_suffix('').as_posix().replace('/', '.')}"
        .removesuffix(".__init__"): path
        for package, folder in folders.items()
        for path in folder.rglob("*.py")
    }  # fmt: skip
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        graph[name] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                f"{node.module}.{a.name}" for a in node.names
            ] + [node.module or ""]  # fmt: skip
            graph[name] |= {t for t in targets if t in modules and t != name}
    graph = {n: {t for t in ts if not n.startswith(f"{t}.")} for n, ts in graph.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, " → ".join([*visiting[visiting.index(name) :], name])
        if name in done:
            return
        visiting.append(name)
        for target in graph[name]:
            visit(target)
        visiting.pop()
        done.add(name)

    for name in modules:
        visit(name)
    assert "raycompress.launch" in graph["raycompress.sweep"]  # the CLI imports the launcher


def test_the_measures_import_no_record_and_the_record_no_torch() -> None:
    """The metrics build typed results (`schema`) and never touch the on-disk record or a
    loader; the record and the types import neither torch nor Ray, for types either."""
    forbidden = {
        "raycompress.metrics": ["raycompress.record", "raycompress.data", "ray"],
        "raycompress.record": ["torch", "ray"],
        "raycompress.schema": ["torch", "ray"],
    }
    code = "import sys, importlib; importlib.import_module(sys.argv[1]); print(*sys.modules)"
    for module, names in forbidden.items():
        done = subprocess.run(
            [sys.executable, "-c", code, module], capture_output=True, text=True, check=True
        )
        loaded = set(done.stdout.split())
        assert module in loaded and not loaded & set(names), module
    for module in ("record", "schema"):
        source = (ROOT / "raycompress" / f"{module}.py").read_text()
        assert "TYPE_CHECKING" not in source and "import torch" not in source


def test_a_source_tree_never_installed_imports_its_sweep_catalogue(tmp_path: Path) -> None:
    """As on the GPU machine: the tree on PYTHONPATH, no site packages (so no editable
    install's finder): raycompress.sweeps is the top-level sweeps/, as pyproject maps it."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-S", "-c", "import raycompress.sweeps as s; print(s.__file__)"],
        cwd=tmp_path, env={"PYTHONPATH": str(root)}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == root / "sweeps" / "__init__.py"
