"""Shared fixtures: the location of the real datasets and the opt-in slow tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REAL_DATA = Path(
    os.environ.get(
        "RAYCOMPRESS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run the slow, opt-in tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # `-m device` selects the tests that touch a device (the GPU check)
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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
        pytest.skip(f"the real Fashion-MNIST release is not at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """The shortened demo sweep, run once per session: (exit status, storage path)."""
    from demo_sweep import run_sweep  # imports Ray: the device tests run where it is missing

    storage = tmp_path_factory.mktemp("results")
    return run_sweep(storage), storage
