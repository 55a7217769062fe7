"""The 𝒱-information plan and its two executors: in this process and as Ray tasks."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from raycompress import plan
from raycompress.data import load_dataset
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.families import LINEAR, MLP, Family
from raycompress.metrics.vinfo import AFFINE_STATE, VInfoConfig
from raycompress.models import build_model, make_spec
from raycompress.sampling import Split
from raycompress.schema import NETWORK, Quantity, VInfoResult
from raycompress.training import TrainConfig, run_epochs

SPLITS = ("train", "test")
CONFIG = VInfoConfig()  # the network family at every layer
NET = NETWORK


def test_the_plan_covers_every_layer_and_split_with_its_own_seed() -> None:
    planned = plan.plan(4, SPLITS, run_seed=0, epoch=3, layer0={}, config=CONFIG)
    assert [(m.layer, m.split) for m in planned] == [(k, s) for k in range(4) for s in SPLITS]
    assert len({m.seed for m in planned}) == 8  # every measurement its own stream
    assert planned == plan.plan(4, SPLITS, 0, 3, {}, CONFIG)  # seeded: the same plan again
    other_epoch = plan.plan(4, SPLITS, 0, 4, {}, CONFIG)
    other_seed = plan.plan(4, SPLITS, 1, 3, {}, CONFIG)
    assert not {m.seed for m in planned} & {m.seed for m in other_epoch + other_seed}
    kept = plan.plan(4, SPLITS, 0, 3, layer0={("train", "network"): VInfoResult()}, config=CONFIG)
    assert [(m.layer, m.split) for m in kept][:1] == [(0, "test")] and len(kept) == 7


def test_each_family_is_planned_at_every_layer_and_split_with_the_same_seed() -> None:
    families = (Family(), Family(LINEAR), Family(MLP, 8))
    config = VInfoConfig(DecoderConfig(protocol="converged"), families=families)
    planned = plan.plan(2, SPLITS, 0, 3, {("train", "linear"): VInfoResult()}, config)
    keys = [m.key for m in planned]
    assert len(keys) == 2 * 2 * 3 - 1 and (0, "train", "linear") not in keys
    assert (0, "train", "mlp-8") in keys and (1, "test", "network") in keys
    by_place: dict = {}
    for m in planned:  # the families of one (layer, split) share its relabellings
        by_place.setdefault((m.layer, m.split), set()).add(m.seed)
    assert all(len(seeds) == 1 for seeds in by_place.values())


def test_a_plan_of_chosen_layers_counts_negative_ones_from_the_top() -> None:
    planned = plan.plan(4, SPLITS, 0, 3, {}, VInfoConfig(layers=(-1, 1)))
    assert [(m.layer, m.split) for m in planned] == [(k, s) for k in (1, 3) for s in SPLITS]
    assert planned == [m for m in plan.plan(4, SPLITS, 0, 3, {}, CONFIG) if m.layer in (1, 3)]
    with pytest.raises(ValueError, match=r"layers 0..3 \(or −1..−4\), not \[4, -5\]"):
        plan.measured_layers((4, -5, 2), 4)


def test_a_run_measuring_at_its_stop_only_measures_the_layers_asked_for() -> None:
    data = load_dataset("fashion-mnist-demo", train_size=200, test_size=200)
    model = build_model(make_spec("mnistnet", data.input_shape, data.num_classes), seed=0)
    decoder = DecoderConfig(protocol="thesis", batch_size=100, max_epochs=2)
    config = VInfoConfig(decoder, schedule="stop", layers=(-1,))
    records = list(run_epochs(model, data, TrainConfig(batch_size=100, max_epochs=2), None, config))
    assert [sorted(r.vinfo) for r in records] == [[], [(3, "test", NET), (3, "train", NET)]]


def test_layer_zero_is_kept_only_after_it_succeeded() -> None:
    layer0: dict = {}
    planned = plan.plan(2, SPLITS, 0, 1, layer0, CONFIG)
    results = [
        VInfoResult(num_digits=1),  # l=0 train: measured
        VInfoResult.failed("worker died"),  # l=0 test: lost
        VInfoResult(num_digits=2),
        VInfoResult(num_digits=3),
    ]
    values = plan.gather(planned, results, layer0)
    assert set(values) == {(k, s, NET) for k in (0, 1) for s in SPLITS}
    assert list(layer0) == [("train", NET)]  # the failed one is not kept ...
    again = plan.plan(2, SPLITS, 0, 2, layer0, CONFIG)
    assert [(m.layer, m.split) for m in again] == [(0, "test"), (1, "train"), (1, "test")]
    retried = VInfoResult(num_digits=4)
    later = plan.gather(again, [retried] * 3, layer0)
    assert later[0, "train", NET] is results[0] and later[0, "test", NET] is retried  # retried


def test_training_measures_on_schedule_and_layer_zero_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake(
        encoder: nn.Module, make_decoder, split: Split, *args: object, **_: object
    ) -> VInfoResult:
        calls.append(len(encoder))  # the encoder of layer l has l layers
        return VInfoResult(num_digits=len(calls))

    monkeypatch.setattr(plan, "measure_vinfo", fake)
    data = load_dataset("fashion-mnist-demo", train_size=200)
    model = build_model(make_spec("mnistnet", data.input_shape, 10))
    config = TrainConfig(batch_size=100, max_epochs=3)
    records = list(run_epochs(model, data, config, vinfo=VInfoConfig(schedule="every:2")))
    assert [bool(r.vinfo) for r in records] == [False, True, True]  # epoch 3: the stopping epoch
    assert calls.count(0) == 2  # layer 0: once per split for the whole run
    assert sorted(calls) == [0] * 2 + [1] * 4 + [2] * 4 + [3] * 4
    assert records[1].vinfo[0, "test", NET] is records[2].vinfo[0, "test", NET]
    assert set(records[2].vinfo) == {(layer, s, NET) for layer in range(4) for s in SPLITS}


def test_measure_layer_runs_from_plain_inputs() -> None:
    data = load_dataset("fashion-mnist-demo", train_size=200)
    spec = make_spec("mnistnet", data.input_shape, 10)
    state = build_model(spec, seed=0).state_dict()
    config = VInfoConfig(
        DecoderConfig(protocol="thesis", batch_size=100, max_epochs=2), monte_carlo=2
    )
    m = plan.Measurement(3, "train", Family(), seed=1)
    out = plan.measure_layer(spec, state, m, data.train, config)
    assert out.num_digits == 2 and out.decoders is not None and not out.error
    assert out.terms[Quantity.MINIMALITY].monte_carlo is not None
    assert json.loads(json.dumps(out.to_json()))  # plain data, for a Ray task to return
    again = plan.measure_layer(spec, state, m, data.train, config)
    assert json.dumps(again.to_json()) == json.dumps(out.to_json())  # seeded


@pytest.mark.slow
def test_both_executors_give_identical_values() -> None:
    import ray

    from raycompress.trainable import RayVInfo

    data = load_dataset("fashion-mnist-demo", train_size=200)
    model = build_model(make_spec("mlp", data.input_shape, 10, widths=(32, 16)), seed=3)
    splits = {"train": data.train, "test": data.test}
    config = VInfoConfig(
        DecoderConfig(protocol="thesis", batch_size=100, max_epochs=2), held_out=True
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray task with one CPU: the same reduction order
    try:
        here = plan.measure_in_process(model, splits, config, run_seed=7, epoch=2, layer0={})
    finally:
        torch.set_num_threads(threads)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 << 20)
    try:
        there = RayVInfo(num_cpus=1)(model, splits, config, run_seed=7, epoch=2, layer0={})
    finally:
        ray.shutdown()
    assert set(there) == set(here) == {(k, s, NET) for k in range(3) for s in SPLITS}
    for key, result in here.items():
        assert there[key].placement is not None and result.placement is None
        assert dataclasses.replace(there[key], placement=None) == result, key


@pytest.mark.slow
def test_warm_started_executors_agree_and_a_retried_task_continues_exactly(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under converged with warm starts, a second measurement continues from the first one's
    decoders (and their optimiser's moments) in this process and as Ray tasks alike, bit for
    bit, also when a task fails once and Ray runs it again from the same state; each executor
    hands back the new states."""
    import ray

    from raycompress.trainable import RayVInfo

    data = load_dataset("fashion-mnist-demo", train_size=200)
    model = build_model(make_spec("mlp", data.input_shape, 10, widths=(32, 16)), seed=3)
    splits = {"train": data.train, "test": data.test}
    decoder = DecoderConfig(  # certified at the earliest after 1 → 4 epochs: a short cap
        batch_size=100, max_epochs=4, certify_from=1, warm_certify_from=1, protocol="converged"
    )
    config = VInfoConfig(
        decoder, held_out=True, warm_start=True, warm_optimizer=True, halves_seed=11
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray task with one CPU: the same reduction order
    try:
        first: plan.WarmStates = {}
        plan.measure_in_process(model, splits, config, 7, 1, {}, first)
        assert set(first) == {(k, s, NET) for k in (1, 2) for s in SPLITS}  # not layer 0: kept
        # layer 2 is affine: its in-sample state is its optima's weights, its held-out a decoder
        assert all(set(first[2, s, NET]) == {"in_sample", "held_out"} for s in SPLITS)
        assert all(set(first[2, s, NET]["in_sample"]) == {AFFINE_STATE} for s in SPLITS)
        here_warm = dict(first)
        here = plan.measure_in_process(model, splits, config, 7, 2, {}, here_warm)
    finally:
        torch.set_num_threads(threads)
    marker = tmp_path / "failed_once"
    monkeypatch.setenv("RAYCOMPRESS_FAIL_VINFO_ONCE", str(marker))
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 << 20)
    try:
        there_warm = dict(first)
        there = RayVInfo(num_cpus=1)(model, splits, config, 7, 2, {}, there_warm)
    finally:
        ray.shutdown()
    assert marker.exists()  # one task failed and was retried
    for key, result in here.items():
        assert not result.error, key
        assert dataclasses.replace(there[key], placement=None) == result, key
        assert "warm" in result.terms[Quantity.SUFFICIENCY].protocol or key[0] != 1
    for key, state in here_warm.items():
        assert state is not first[key]  # the new decoders replaced the old ones
        for part, tensors in state.items():
            for name, tensor in tensors.items():
                assert torch.equal(tensor, there_warm[key][part][name]), (key, part, name)
