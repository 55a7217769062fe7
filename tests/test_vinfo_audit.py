"""The certificate audit (benchmarks/vinfo_audit.py): its sample seeded, spread, no repeats; its
rule the decoders' own, replayed."""

from __future__ import annotations

from types import ModuleType

import pytest
from script_modules import load_script


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    return load_script("benchmarks/vinfo_audit.py")


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


def test_an_extension_samples_only_its_own_epochs(audit: ModuleType) -> None:
    later = audit.sample_slots(8, (1,), 10**6, seed=0, first=5)
    assert {s.epoch for s in later} == {5, 6, 7, 8} and len(later) == 4 * 2 * audit.HEADS


def test_layer_0_is_sampled_only_where_it_is_measured(audit: ModuleType) -> None:
    everything = audit.sample_slots(3, (0, 1), 10**6, seed=0)
    assert {s.epoch for s in everything if s.layer == 0} == {1}
    assert len(everything) == (1 + 3) * 2 * audit.HEADS


def test_a_stopping_loss_is_judged_on_the_same_trajectory(audit: ModuleType) -> None:
    """A loss-threshold head certified at 3.30 bits whose 4× re-run reached 3.32: at a stopping
    loss of 0.01 nats its epoch 3 would stop it, and the best budget up to 3 is 3.31 (a lower
    bound), so 0.01 short; no stopping loss below every loss trains it on (no shortfall)."""
    curve = {"1": 3.30, "2": 3.31, "4": 3.32}
    row = {"stop": "loss_threshold", "shortfall": 0.02, "rerun_bits": 3.32, "curve": curve,
           "losses": [0.03, 0.02, 0.009, 0.001]}  # fmt: skip
    assert audit._at_stop_loss(row, 0.01)["shortfall"] == pytest.approx(0.01)
    assert audit._at_stop_loss(row, 1e-4) == {"shortfall": 0.0, "stop": "trains on"}
    assert audit._at_stop_loss(row | {"stop": "certified"}, 0.01) == {}


def test_the_rule_replayed_certifies_where_the_decoders_would(audit: ModuleType) -> None:
    """A warm head (scored at 2, 4, 8, 16) whose score gains 0.005 bit from 2 to 8 with its
    loss flat is certified at 8 by both rules. A score at epoch 1, between the rule's budgets
    (the re-run scores where the measurement stopped), certifies nothing at 4. A loss still
    falling by more than tolerance · ln 2 holds the in-sample rule only."""
    from raycompress.metrics.decoders import DecoderConfig

    warm = DecoderConfig(max_epochs=400).warm()
    curve = {0: 3.0, 1: 3.100, 2: 3.101, 4: 3.104, 8: 3.106, 16: 3.107}
    flat = [0.5] * 16
    assert audit.certified_at(curve, flat, warm, None, strict=True) == 8
    assert audit.certified_at(curve, flat, warm, None, strict=False) == 8
    assert audit.certified_at(curve, flat, warm, hit=5, strict=True) == 5  # the threshold first
    short = {e: v for e, v in curve.items() if e <= 4}
    assert audit.certified_at(short, flat[:4], warm, None, strict=False) is None
    falling = [0.5 - 0.01 * e for e in range(16)]  # 0.01 nat an epoch: ≫ 0.01 · ln 2
    assert audit.certified_at(curve, falling, warm, None, strict=True) is None
    assert audit.certified_at(curve, falling, warm, None, strict=False) == 8
