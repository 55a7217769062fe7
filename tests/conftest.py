"""Shared fixtures: the location of the real datasets and the opt-in slow tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from demo_sweep import run_sweep

REAL_DATA = Path(
    os.environ.get(
        "RAYCOMPRESS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run the slow, opt-in tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fashion_mnist_dir() -> Path:
    if not (REAL_DATA / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"the real Fashion-MNIST release is not at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """The shortened demo sweep, run once per session: (exit status, storage path)."""
    storage = tmp_path_factory.mktemp("results")
    return run_sweep(storage), storage
