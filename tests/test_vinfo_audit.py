"""The certificate audit's sample (benchmarks/vinfo_audit.py): seeded, spread, no repeats."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "vinfo_audit.py"
    spec = importlib.util.spec_from_file_location("vinfo_audit", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_the_sample_is_fixed_by_its_seed_and_another_seed_draws_another(audit: ModuleType) -> None:
    sample = audit.sample_slots(5, (1, 2), 32, seed=0)
    assert sample == audit.sample_slots(5, (1, 2), 32, seed=0)
    assert sample != audit.sample_slots(5, (1, 2), 32, seed=1)
    assert len(set(sample)) == 32  # without replacement


def test_the_sample_spans_epochs_layers_splits_and_heads(audit: ModuleType) -> None:
    everything = audit.sample_slots(2, (1, 2), 100, seed=0)  # more than there are: all 32
    assert len(everything) == 2 * 2 * 2 * audit.HEADS == len(set(everything))
    sample = audit.sample_slots(5, (1, 2), 32, seed=0)
    assert {s.epoch for s in sample} == {1, 2, 3, 4, 5}  # warm-started measurements too
    assert {s.layer for s in sample} == {1, 2} and {s.split for s in sample} == {"train", "test"}
    assert {s.head for s in sample} == set(range(audit.HEADS))
    assert sample != sorted(sample, key=lambda s: (s.epoch, s.layer, s.split, s.head))
