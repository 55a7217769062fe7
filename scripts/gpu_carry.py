"""Ray for a GPU machine that has PyTorch but no Ray and no network: a carry folder.

    python benchmarks/gpu_check.py --prepare-carry .gpu_carry      (here: writes the folder)
    python3 benchmarks/gpu_check.py --carry .gpu_carry ...           (there: installs, checks)

The folder holds
    ray.tar.xz   Ray's cp312 manylinux wheel unpacked, without what a sweep never imports
                 (`TRIMMED`: Java workers, RLlib, Serve), as tar + xz -9 (file modes kept: the
                 raylet and GCS server are executables)
    wheels/      every package Ray and Ray Tune need that the GPU machine's image lacks
                 (`benchmarks/gpu_image_packages.txt`), found from the wheels' own metadata,
                 as cp312 manylinux wheels, each at the version installed here where one is
    data/        the check's Fashion-MNIST subset (`benchmarks/gpu_check.py`'s `prepare_data`)

and with the working tree it must stay under `LIMIT`, what travels to the device machine.
There, `use_carry` unpacks the tree and installs the wheels into a fresh site folder with
`pip install --no-index --no-deps --target`, and puts it first on PYTHONPATH.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 << 20  # bytes that travel to the GPU machine with a run: the tree and the carry
RAY_TREE, WHEELS, DATA = "ray.tar.xz", "wheels", "data"
TRIMMED = ("ray/jars/", "ray/rllib/", "ray/serve/")
IMAGE = ROOT / "benchmarks" / "gpu_image_packages.txt"
# The GPU machine's interpreter, for the wheels' environment markers and pip's platform tags.
TARGET = {
    "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "sys_platform": "linux",
    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
}  # fmt: skip
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")  # fmt: skip
EXTRAS = ("tune",)  # raycompress needs ray[tune]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages() -> set[str]:
    """The packages of the GPU machine's image (canonical names)."""
    lines = IMAGE.read_text().splitlines()
    return {canonical(line) for line in lines if line.strip() and not line.startswith("#")}


def download(spec: str, folder: Path) -> Path:
    """One cp312 manylinux (or pure) wheel of `spec` into `folder`; its path."""
    before = set(folder.glob("*.whl"))
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--python-version", TARGET["python_version"], "--implementation", "cp", *platforms,
         "-d", str(folder), spec],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"error: pip could not download a cp312 wheel of {spec}: "
                         f"{done.stderr.strip().splitlines()[-1:]}")  # fmt: skip
    new = set(folder.glob("*.whl")) - before
    name = canonical(Requirement(spec).name)
    (wheel,) = new or [w for w in before if canonical(w.name.split("-")[0]) == name]
    return wheel


def requirements(wheel: Path, extras: tuple[str, ...] = ()) -> list[Requirement]:
    """What `wheel` needs on the GPU machine (its own METADATA, markers evaluated there)."""
    with zipfile.ZipFile(wheel) as z:
        (metadata,) = [n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        text = z.read(metadata).decode()
    needs = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.removeprefix("Requires-Dist:").strip())
        marker = req.marker or Marker("python_version >= '0'")
        if any(marker.evaluate({**TARGET, "extra": extra}) for extra in ("", *extras)):
            needs.append(req)
    return needs


def pinned(req: Requirement) -> str:
    """`req` at the version installed here when it admits it (what the tests here ran with)."""
    try:
        version = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        return f"{req.name}{req.specifier}"
    if Version(version) in req.specifier:
        return f"{req.name}=={version}"
    return f"{req.name}{req.specifier}"


def missing_wheels(ray_wheel: Path, folder: Path) -> list[Path]:
    """Every package that Ray (with `EXTRAS`) needs, transitively, and the image lacks."""
    present, seen, wheels = image_packages(), {"ray"}, []
    queue = requirements(ray_wheel, EXTRAS)
    while queue:
        req = queue.pop(0)
        name = canonical(req.name)
        if name in present or name in seen:
            continue
        seen.add(name)
        wheel = download(pinned(req), folder)
        wheels.append(wheel)
        queue += requirements(wheel)
    return wheels


def trim_ray(wheel: Path, tree: Path) -> int:
    """Ray's wheel without `TRIMMED`, as tar + xz -9 with the zip's file modes; files kept."""
    kept = 0
    with zipfile.ZipFile(wheel) as z, tarfile.open(tree, "w:xz", preset=9) as tar:
        for info in z.infolist():
            if info.is_dir() or info.filename.startswith(TRIMMED):
                continue
            entry = tarfile.TarInfo(info.filename)
            entry.size = info.file_size
            entry.mode = (info.external_attr >> 16) & 0o777 or 0o644
            with z.open(info) as data:
                tar.addfile(entry, data)
            kept += 1
    return kept


def tree_bytes() -> int:
    """The working tree that travels: tracked and untracked files git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
        check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    return sum((ROOT / name).stat().st_size for name in listed if (ROOT / name).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def prepare_carry(folder: Path, write_data: Callable[[Path], None]) -> dict:
    """Write the carry folder (see the module docstring); its sizes, in bytes. Exits with a
    one-line error when the carry and the working tree would not travel together."""
    (folder / WHEELS).mkdir(parents=True, exist_ok=True)
    ray_version = importlib.metadata.version("ray")
    with tempfile.TemporaryDirectory() as scratch:
        ray_wheel = download(f"ray=={ray_version}", Path(scratch))
        files = trim_ray(ray_wheel, folder / RAY_TREE)
        wheels = missing_wheels(ray_wheel, folder / WHEELS)
    write_data(folder / DATA)
    sizes = {
        "ray": ray_version, "ray_files": files,
        "wheels": sorted(w.name for w in wheels),
        "ray_tree_bytes": (folder / RAY_TREE).stat().st_size,
        "wheels_bytes": folder_bytes(folder / WHEELS),
        "data_bytes": folder_bytes(folder / DATA),
        "working_tree_bytes": tree_bytes(),
    }  # fmt: skip
    sizes["total_bytes"] = folder_bytes(folder) + sizes["working_tree_bytes"]
    if sizes["total_bytes"] > LIMIT:
        raise SystemExit(
            f"error: the carry and the working tree take {sizes['total_bytes'] / 2**20:.1f} MiB, "
            f"over the {LIMIT >> 20} MiB that travel: trim more of Ray (TRIMMED) or the data"
        )
    return sizes


def use_carry(folder: Path) -> Path:
    """Unpack the carry into a fresh site folder, first on sys.path and PYTHONPATH (so that
    the check's subprocesses import it too); the folder."""
    if not (folder / RAY_TREE).is_file():
        raise SystemExit(
            f"error: {folder} holds no {RAY_TREE}: write it here with "
            f"python benchmarks/gpu_check.py --prepare-carry {folder}"
        )
    site = Path(tempfile.mkdtemp(prefix="raycompress-site-"))
    with tarfile.open(folder / RAY_TREE) as tar:
        tar.extractall(site, filter="data")
    wheels = sorted(str(w) for w in (folder / WHEELS).glob("*.whl"))
    if wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
             "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site), *wheels],
            check=True,
        )  # fmt: skip
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(site), os.environ.get("PYTHONPATH")])
    )
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    return site
