"""Checkpoints carry data, not code: the trainable restores a state file with
`torch.load(weights_only=True)`, so a real one round-trips and its run continues exactly, and
one that holds an object which would run code is refused in one line, the object never built."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from ray import tune

from raycompress import record, schema, trainable
from raycompress.compute import Compute
from raycompress.data import load_dataset
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.families import LINEAR, MLP, Family
from raycompress.metrics.vinfo import AFFINE_STATE, IN_SAMPLE_STATE, VInfoConfig
from raycompress.models import build_model, make_spec
from raycompress.plan import gather, measure_layer, plan
from raycompress.training import Run, TrainConfig


def layers_up_to(deepest: int):
    """`plan.measure_in_process` restricted to layers 0..deepest (the deeper ones' decoders,
    the affine optimum above all, would cost minutes here)."""

    def measure(model, splits, config, run_seed, epoch, layer0, warm=None):
        device = next(model.parameters()).device
        state = {k: v.detach() for k, v in model.state_dict().items()}
        planned = plan(model.depth, splits, run_seed, epoch, layer0, config)
        planned = [m for m in planned if m.layer <= deepest]
        results = [
            measure_layer(
                model.spec, state, m, splits[m.split], config, device,
                (warm or {}).get(m.key),
            )
            for m in planned
        ]  # fmt: skip
        return gather(planned, results, layer0, warm)

    return measure


def interrupted(
    started: Callable[[], Run], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Run, list, Path]:
    """A run never interrupted and its three epochs, and the checkpoint folder the trainable
    writes for another run of the same settings after its second epoch."""
    straight = started()
    expected = [straight.step() for _ in range(3)]
    first = started()
    history = [first.step(), first.step()]
    written = folder / "checkpoint_000001"
    monkeypatch.setattr(
        tune, "report", lambda _, checkpoint: shutil.copytree(checkpoint.path, written)
    )
    trainable.report(first, history, {"model": "mlp"}, {record.TRIAL_ID: "abcde"})
    return straight, expected, written


# layer 0, the only 𝒱-information a state file keeps under the thesis protocol
layer0_only = layers_up_to(0)


def test_a_real_state_file_restores_as_data_and_its_run_continues_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every kind of content a state file holds: bfloat16 weights and optimiser state
    # (bf16-true), the training order's generator state, kept layer-0 values with every term.
    data = load_dataset("fashion-mnist-demo", train_size=200, test_size=200)
    config = TrainConfig(batch_size=100, max_epochs=2, compute=Compute("bf16-true"))
    vinfo = VInfoConfig(
        DecoderConfig(protocol="thesis", max_epochs=1, batch_size=100),
        "every",
        held_out=True,
        monte_carlo=1,
    )
    spec = make_spec("mlp", data.input_shape, data.num_classes, widths=(32, 32))

    def started(seed: int = 0) -> Run:
        return Run(
            build_model(spec, seed=seed), data, config, vinfo=vinfo, measure_vinfo=layer0_only
        )

    straight = started()
    expected = [straight.step() for _ in range(2)]

    first = started()
    written = tmp_path / "checkpoint_000000"
    monkeypatch.setattr(  # the checkpoint folder the trainable hands to Tune, kept
        tune, "report", lambda _, checkpoint: shutil.copytree(checkpoint.path, written)
    )
    ids = {record.TRIAL_ID: "abcde", "dataset": "fashion-mnist-demo", "model": "mlp"}
    trainable.report(first, [first.step()], {"model": "mlp"}, ids)
    # the checkpoint's rows: its history's, behind the trial's identity
    rows_file = record.read_table(written / record.ROWS_FILE).to_pylist()
    history_rows = record.read_history(written)[0].rows()
    written_rows = [[r[c] for c in schema.COLUMNS] for r in rows_file]
    assert json.dumps(written_rows) == json.dumps(history_rows)  # NaN compares as text
    assert {r[record.TRIAL_ID] for r in rows_file} == {"abcde"}
    assert {r["model"] for r in rows_file} == {'"mlp"'}  # a setting, as its JSON text
    raw = torch.load(written / record.STATE_FILE, weights_only=False)  # what it holds
    assert {v.dtype for v in raw["model"].values()} == {torch.bfloat16}
    assert raw["generator"].dtype == torch.uint8 and set(raw["layer0"]) == {
        "train/network",
        "test/network",
    }
    plain = torch.load(written / record.STATE_FILE, weights_only=True)  # data only: as it is
    assert json.dumps(plain["layer0"]) == json.dumps(raw["layer0"])  # strings, not enums

    state, rows = trainable.resumed(tune.Checkpoint.from_directory(written))
    assert [r.epoch for r in rows] == [1] and state["epoch"] == 1
    restored = started(seed=99)  # other weights, then restored
    restored.load_state_dict(state)
    continued = restored.step()
    # every value, the layer-0 ones kept from epoch 1 included (remeasured, they would differ)
    assert json.dumps(continued.to_json()) == json.dumps(expected[1].to_json())
    for p, q in zip(restored.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(p, q)


class Planted:
    """An instance of a class of its own: unpickling it runs its __setstate__."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).touch()


class Shell:
    """An object whose __reduce__ has the unpickler run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (shlex.join(["touch", str(self.marker)]),)


def planted_checkpoint(folder: Path, payload: type, marker: Path) -> tune.Checkpoint:
    """A checkpoint whose state file is a run's state but for one layer-0 value."""
    folder.mkdir()
    record.write_history(folder, [])
    state = {"epoch": 1, "model": {}, "optimizer": {}, "generator": torch.Generator().get_state()}
    torch.save({**state, "layer0": {"train": payload(marker)}}, folder / record.STATE_FILE)
    return tune.Checkpoint.from_directory(folder)


@pytest.mark.parametrize(
    ("payload", "named"),
    [(Planted, f"{__name__}.Planted"), (Shell, f"{os.system.__module__}.system")],
)
def test_a_state_file_that_holds_code_is_refused_in_one_line_and_never_runs(
    tmp_path: Path, payload: type, named: str
) -> None:
    marker = tmp_path / "payload-ran"
    checkpoint = planted_checkpoint(tmp_path / "checkpoint_000000", payload, marker)
    with pytest.raises(trainable.UntrustedCheckpointError) as refused:
        trainable.resumed(checkpoint)
    message = str(refused.value)
    path = tmp_path / "checkpoint_000000" / record.STATE_FILE
    assert message == (
        f"refused to restore {path}: it holds more than tensors and plain data ({named}), and "
        "loading it could run code; restore only checkpoints you wrote or trust, and to train "
        "this trial afresh run its sweep again under a new --name"
    )
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: the old load ran it
    assert marker.exists()


class Built(Exception):
    """Raised where the trainable starts to build its trial."""


def build(*_: object, **__: object) -> None:
    raise Built


def test_the_trainable_ends_a_refused_trial_with_one_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "payload-ran"
    checkpoint = planted_checkpoint(tmp_path / "checkpoint_000000", Shell, marker)
    reports: list[dict] = []
    monkeypatch.setattr(tune, "get_checkpoint", lambda: checkpoint)
    monkeypatch.setattr(tune, "report", lambda metrics, **_: reports.append(metrics))
    monkeypatch.setattr(trainable, "ray_device", lambda: ("cpu", ""))  # no Ray worker here
    monkeypatch.setattr(trainable.Trial, "from_config", build)
    trainable.train_trial({})  # no retry can fix it: one report, nothing built, nothing raised
    (summary,) = reports
    assert summary[record.STOP_REASON] == "error"
    assert summary[record.ERROR].startswith("UntrustedCheckpointError: refused to restore ")
    assert "\n" not in summary[record.ERROR] and not marker.exists()


def test_warm_decoders_travel_in_the_state_file_and_their_run_continues_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under converged with warm starts the state file also holds each (layer, split)'s latest
    decoders (and their optimiser's moments), as data; a run restored from it measures its next
    epoch exactly as the run that was never interrupted."""
    data = load_dataset("fashion-mnist-demo", train_size=200, test_size=200)
    config = TrainConfig(batch_size=100, max_epochs=3)
    decoder = DecoderConfig(  # certified at the earliest after 1 → 4 epochs: a short cap
        batch_size=100, max_epochs=4, certify_from=1, warm_certify_from=1, protocol="converged"
    )
    vinfo = VInfoConfig(
        decoder, "every", held_out=True, warm_start=True, warm_optimizer=True, halves_seed=5
    )
    spec = make_spec("mlp", data.input_shape, data.num_classes, widths=(32, 32))

    def started(seed: int = 0) -> Run:
        model = build_model(spec, seed=seed)
        return Run(model, data, config, vinfo=vinfo, measure_vinfo=layers_up_to(1))

    straight, expected, written = interrupted(started, tmp_path, monkeypatch)
    plain = torch.load(written / record.STATE_FILE, weights_only=True)
    assert set(plain["decoders"]) == {"1/train/network", "1/test/network"}  # never layer 0
    saved = plain["decoders"]["1/train/network"]  # the latest only
    assert set(saved) == {"in_sample", "held_out"}
    assert any(name.startswith("adamw.") for name in saved["in_sample"])
    state, _ = trainable.resumed(tune.Checkpoint.from_directory(written))
    restored = started(seed=99)
    restored.load_state_dict(state)
    assert json.dumps(restored.step().to_json()) == json.dumps(expected[2].to_json())
    for key, tensors in straight.warm.items():
        for part, named in tensors.items():
            assert all(torch.equal(t, restored.warm[key][part][n]) for n, t in named.items())


@pytest.mark.slow  # three families' decoders over three epochs
def test_every_family_resumes_from_its_checkpoint_to_the_same_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three decoder families side by side, warm-started: the state file holds each family's
    decoders apart (the linear optima, the network's and the mlp's stacks), and a run restored
    from it measures its next epoch exactly as the run that was never interrupted."""
    data = load_dataset("fashion-mnist-demo", train_size=200, test_size=200)
    config = TrainConfig(batch_size=100, max_epochs=3)
    decoder = DecoderConfig(
        batch_size=100, max_epochs=4, certify_from=1, warm_certify_from=1, protocol="converged"
    )
    families = (Family(), Family(LINEAR), Family(MLP, 12))  # width ≥ C: it starts affine
    vinfo = VInfoConfig(decoder, "every", warm_start=True, families=families)
    spec = make_spec("mlp", data.input_shape, data.num_classes, widths=(32, 32))

    def started(seed: int = 0) -> Run:
        return Run(
            build_model(spec, seed=seed), data, config, vinfo=vinfo, measure_vinfo=layers_up_to(1)
        )

    _, expected, written = interrupted(started, tmp_path, monkeypatch)
    state, _ = trainable.resumed(tune.Checkpoint.from_directory(written))
    assert set(state["decoders"]) == {
        f"1/{s}/{f.label}" for s in ("train", "test") for f in families
    }
    assert set(state["layer0"]) == {f"{s}/{f.label}" for s in ("train", "test") for f in families}
    assert AFFINE_STATE in state["decoders"]["1/train/mlp-12"][IN_SAMPLE_STATE]  # its start's
    restored = started(seed=99)
    restored.load_state_dict(state)
    again = restored.step()
    assert {key[2] for key in again.vinfo} == {"network", "linear", "mlp-12"}
    assert json.dumps(again.to_json()) == json.dumps(expected[2].to_json())
