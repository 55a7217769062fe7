"""Shared fixtures: the location of the real datasets, the tiers of the suite.

Three tiers. `slow`: the tests that start Ray or run a whole sweep (every test that uses the
`demo` fixture is one); `pytest -m "not slow"` is the fast tier, and inside it `ray.init`
fails, naming the marker, so that a test that starts Ray cannot slip in. `opt_in`: tests
that take many minutes or need another Python, skipped unless `--opt-in` is given. CI runs
everything but the opt-in tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA_VARIABLE = "RAYCOMPRESS_SHARED_DATA"  # a folder holding FashionMNIST/raw/…
REAL_DATA = Path(
    os.environ.get(DATA_VARIABLE, Path(__file__).resolve().parents[2] / "shared" / "data")
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--opt-in", action="store_true", help="also run the opt-in tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "device" in fixtures:  # `-m device`: the tests that touch a device (the GPU check)
            item.add_marker(pytest.mark.device)
        if "demo" in fixtures:  # the fixture runs the demo sweep on Ray
            item.add_marker(pytest.mark.slow)
    if config.getoption("--opt-in"):
        return
    skip = pytest.mark.skip(reason="opt-in: run with --opt-in")
    for item in items:
        if "opt_in" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def ray_only_in_slow_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Outside the `slow` tier, `ray.init` fails: the fast tier stays fast by construction."""
    if request.node.get_closest_marker("slow") is not None:
        return
    try:
        import ray
    except ImportError:  # the GPU machine runs the device tests without Ray
        return
    test = request.node.nodeid

    def refused(*args, **kwargs):
        raise AssertionError(f"{test} starts Ray: mark it @pytest.mark.slow")

    monkeypatch.setattr(ray, "init", refused)


@pytest.fixture
def device() -> str:
    """Where the device-touching tests compute: the CPU, or RAYCOMPRESS_TEST_DEVICE (cuda in
    benchmarks/gpu_check.py)."""
    name = os.environ.get("RAYCOMPRESS_TEST_DEVICE", "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("RAYCOMPRESS_TEST_DEVICE=cuda, but CUDA is not available")
    return name


@pytest.fixture
def fashion_mnist_dir() -> Path:
    if not (REAL_DATA / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(
            f"the real Fashion-MNIST release is not at {REAL_DATA}: set {DATA_VARIABLE} to "
            "the folder that holds FashionMNIST/raw (e.g. the data/ folder of shared/)"
        )
    return REAL_DATA


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """The shortened demo sweep, run once per session: (exit status, storage path)."""
    from demo_sweep import run_sweep  # imports Ray: the device tests run where it is missing

    storage = tmp_path_factory.mktemp("results")
    return run_sweep(storage), storage
