"""A plain (non-editable) install must carry what the commands need: demo data, sweeps,
the figure code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
