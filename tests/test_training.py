"""The training protocol: seeded reproducibility, stopping rules, what each epoch records."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from raycompress.compute import Compute
from raycompress.data import load_dataset
from raycompress.models import build_model, make_spec
from raycompress.schema import Baseline
from raycompress.training import Run, TrainConfig, run_epochs


@pytest.fixture(scope="module")
def small():
    return load_dataset("fashion-mnist-demo", train_size=400)


def run(small, baselines: bool = False, **overrides):
    config = TrainConfig(**{"batch_size": 100, "max_epochs": 2, **overrides})
    model = build_model(
        make_spec("mnistnet", small.input_shape, small.num_classes), seed=config.seed
    )
    return model, list(run_epochs(model, small, config, baselines=baselines))


def test_training_is_reproducible_on_the_cpu(small) -> None:
    m1, r1 = run(small)
    m2, r2 = run(small)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters(), strict=True))
    assert [dataclasses.asdict(r) for r in r1] == [dataclasses.asdict(r) for r in r2]
    _, r3 = run(small, seed=1)
    assert r3[-1].train_step_loss != r1[-1].train_step_loss


def test_every_epoch_measures_both_splits_and_every_layer(small) -> None:
    _, records = run(small)
    assert [r.epoch for r in records] == [1, 2]
    assert [r.stop_reason for r in records] == [None, "max_epochs"]
    assert records[1].train_step_loss < records[0].train_step_loss
    for record in records:
        for report in (record.train, record.test):
            assert set(report.layers) == {1, 2, 3, 4}
            assert 0 <= report.accuracy <= 1 and math.isfinite(report.loss)
            assert all(math.isfinite(s.nc_trace) and s.nc_rank == 9 for s in report.layers.values())
    assert records[0].test.layers[1].num_samples == 2000


def test_stops_at_the_loss_threshold(small) -> None:
    _, records = run(small, loss_threshold=10.0, max_epochs=5)
    assert len(records) == 1 and records[0].stop_reason == "loss_threshold"


def test_divergence_stops_without_measuring(small) -> None:
    _, records = run(small, lr=1e30, max_epochs=5)
    assert records[-1].stop_reason == "diverged"
    assert records[-1].train is None and records[-1].test is None
    assert len(records) < 5


@pytest.mark.parametrize("field", ["lr", "batch_size", "max_epochs"])
def test_bad_protocol_values(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be positive"):
        TrainConfig(**{field: 0})


@pytest.mark.parametrize("precision", ["fp32", "bf16-true"])  # bf16-true: bf16 state too
def test_resuming_from_a_checkpoint_continues_exactly(small, tmp_path, precision: str) -> None:
    config = TrainConfig(batch_size=100, max_epochs=3, compute=Compute(precision))
    spec = make_spec("mnistnet", small.input_shape, small.num_classes)
    straight = Run(build_model(spec, seed=0), small, config)
    expected = [straight.step() for _ in range(3)]

    first = Run(build_model(spec, seed=0), small, config)
    first.step()
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = Run(build_model(spec, seed=99), small, config)  # other weights, then restored
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    continued = [resumed.step() for _ in range(2)]
    assert [dataclasses.asdict(r) for r in continued] == [
        dataclasses.asdict(r) for r in expected[1:]
    ]
    assert continued[-1].stop_reason == "max_epochs"


def test_the_baselines_are_measured_only_when_asked_for(small) -> None:
    _, records = run(small)
    assert [r.baselines for r in records] == [{}, {}] and records[-1].stop_reason


def test_the_baselines_are_measured_once_where_training_stops(small) -> None:
    model, records = run(small, baselines=True)
    assert records[0].baselines == {}
    assert set(records[-1].baselines) == set(Baseline)
    initial = build_model(make_spec("mnistnet", small.input_shape, small.num_classes), seed=0)
    distance = math.sqrt(sum(
        float(((p.detach().double() - q.detach().double()) ** 2).sum())
        for p, q in zip(model.parameters(), initial.parameters(), strict=True)
    ))  # fmt: skip
    value, _ = records[-1].baselines[Baseline.DISTANCE_FROM_INIT]
    assert value == pytest.approx(distance, rel=1e-9) and value > 0
    rows = [row for row in records[-1].rows() if row[4] in set(Baseline)]
    assert len(rows) == len(Baseline) and all(row[1:3] == ("train", None) for row in rows)
