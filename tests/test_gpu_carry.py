"""The carry that brings Ray to the GPU machine (scripts/gpu_carry.py), and the GPU check's
sweep part run from it by another interpreter that has torch but no Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_carry  # noqa: E402


def wheel(path: Path, files: dict[str, tuple[bytes, int]], requires: list[str]) -> Path:
    """A wheel at `path` holding `files` (name → (bytes, mode)) and a METADATA of `requires`."""
    metadata = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    with zipfile.ZipFile(path, "w") as z:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            z.writestr(info, data)
        z.writestr("demo-1.0.dist-info/METADATA", metadata)
        z.writestr("demo-1.0.dist-info/vendored/METADATA", "Requires-Dist: never-read\n")
    return path


def test_requirements_are_the_ones_the_gpu_machine_needs(tmp_path: Path) -> None:
    """Markers are evaluated for CPython 3.12 on Linux; extras only when asked; only the
    wheel's own METADATA is read, not a vendored package's."""
    requires = [
        "click>=7.0", 'async-timeout<6; python_version < "3.11"',
        'typing-extensions>=4.4; python_version < "3.13"', 'pywin32; sys_platform == "win32"',
        'tensorboardX>=1.9; extra == "tune"', 'fastapi; extra == "serve"',
    ]  # fmt: skip
    found = gpu_carry.requirements(wheel(tmp_path / "demo.whl", {}, requires), ("tune",))
    assert [r.name for r in found] == ["click", "typing-extensions", "tensorboardX"]
    assert [r.name for r in gpu_carry.requirements(tmp_path / "demo.whl")] == [
        "click", "typing-extensions",
    ]  # fmt: skip


def test_a_pin_is_the_version_installed_here_when_it_is_admitted() -> None:
    import packaging

    here = packaging.__version__
    assert gpu_carry.pinned(Requirement("packaging>=1")) == f"packaging=={here}"
    assert gpu_carry.pinned(Requirement("packaging<1")) == "packaging<1"  # not admitted
    assert gpu_carry.pinned(Requirement("no-such-package>=2")) == "no-such-package>=2"


def test_the_trimmed_tree_keeps_file_modes_and_drops_what_sweeps_never_import(
    tmp_path: Path,
) -> None:
    files = {
        "ray/__init__.py": (b"x = 1\n", 0o644),
        "ray/core/src/ray/raylet/raylet": (b"\x7fELF", 0o755),
        "ray/jars/ray_dist.jar": (b"jar", 0o644),
        "ray/rllib/__init__.py": (b"", 0o644),
        "ray/serve/__init__.py": (b"", 0o644),
    }
    tree = tmp_path / gpu_carry.RAY_TREE
    kept = gpu_carry.trim_ray(wheel(tmp_path / "ray.whl", files, []), tree)
    with tarfile.open(tree) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("ray/__init__.py").read() == b"x = 1\n"
    assert kept == len(members) == 4  # two of ray's files and the two METADATA files
    assert not any(name.startswith(gpu_carry.TRIMMED) for name in members)
    assert members["ray/core/src/ray/raylet/raylet"].mode == 0o755
    assert members["ray/__init__.py"].mode == 0o644


def test_the_image_list_names_what_the_gpu_machine_has_and_not_ray() -> None:
    present = gpu_carry.image_packages()
    assert {"torch", "torchvision", "pandas", "pyarrow", "aiohttp", "grpcio"} <= present
    assert not {"ray", "jsonschema", "tensorboardx", "pydantic"} & present
    assert gpu_carry.canonical("Typing_Extensions") == "typing-extensions"


def test_using_a_carry_that_was_never_written_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"holds no ray\.tar\.xz: write it here with"):
        gpu_carry.use_carry(tmp_path)


# An interpreter like the GPU machine's: Python 3.12 with torch (and pandas, pytest, …) but no
# Ray. Recorded run: docs/benchmarks.md, "The GPU check".
PY312 = os.environ.get("RAYCOMPRESS_PY312")


@pytest.mark.opt_in
@pytest.mark.skipif(not PY312, reason="set RAYCOMPRESS_PY312 to a Python 3.12 with torch, no Ray")
def test_the_check_runs_its_sweep_part_from_the_carry_on_fake_gpus(tmp_path: Path) -> None:
    """The carry built here (downloads from PyPI), under 64 MiB with the working tree; another
    interpreter without Ray installs it and runs the sweep part on one logical GPU: four
    trials at once (the GPU sweeps' quarter of a GPU each), the fifth after; each trial's
    tasks in one placement group, on the CPU, saying so; every value recorded."""
    assert PY312 is not None
    no_ray = subprocess.run([PY312, "-c", "import ray"], capture_output=True)
    assert no_ray.returncode != 0, "RAYCOMPRESS_PY312 must not have Ray"
    carry, out = tmp_path / "carry", tmp_path / "check.json"
    script = str(ROOT / "benchmarks" / "gpu_check.py")
    built = subprocess.run(
        [sys.executable, script, "--prepare-carry", str(carry)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    sizes = json.loads(built.stdout[: built.stdout.rindex("}") + 1])
    assert sizes["total_bytes"] <= gpu_carry.LIMIT
    ran = subprocess.run(
        [PY312, script, "--carry", str(carry), "--parts", "sweep", "--fake-gpus", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert summary["ray"]["ray"] == sizes["ray"] and summary["ray"]["gpus"] == 1
    sweep = summary["sweep"]
    assert sweep["exit"] == 0 and len(sweep["trials"]) == 5
    assert sweep["most_trials_at_once"] == 4
    for trial in sweep["trials"]:
        assert trial["device"] == "cpu" and "CUDA is not available" in trial["device_note"]
        assert trial["task_devices"] == ["cpu"] and len(trial["task_groups"]) == 1
        assert trial["tasks"] == trial["values"] > 0
    *four, fifth = sorted(sweep["trials"], key=lambda t: t["start"])
    assert len({group for t in four for group in t["task_groups"]}) == 4  # their own bundles
    assert fifth["start"] >= min(t["end"] for t in four) - 1
