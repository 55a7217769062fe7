"""The tidy results frame, from a results folder laid out as Tune writes it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_record import history, write_trial

from raycompress import record
from raycompress.results import axis_columns, load
from raycompress.schema import Quantity


def test_load_builds_the_tidy_frame(tmp_path: Path) -> None:
    rows = history(2)
    record.write_description(tmp_path, {"axes": ["lr", "model"]})
    write_trial(
        tmp_path,
        "train_trial_aaaaa",
        {"dataset": "fashion-mnist-demo", "model": "mlp", "lr": 0.1},
        rows,
    )
    write_trial(
        tmp_path,
        "train_trial_bbbbb",
        {"dataset": "fashion-mnist-demo", "model": "mlp", "lr": 0.2},
        rows,
    )
    (tmp_path / "not_a_trial").mkdir()
    frame = load(tmp_path)
    assert list(frame.columns[:4]) == ["trial_id", "dataset", "model", "lr"]
    assert list(frame.columns[4:]) == [
        "epoch", "split", "layer", "metric", "budget", "value", "note",
    ]  # fmt: skip
    assert set(frame["trial_id"]) == {"aaaaa", "bbbbb"}
    assert set(frame["epoch"]) == {1, 2}  # the newest checkpoint's history
    assert set(frame["split"]) == {"train", "test"}
    metrics = set(frame["metric"])
    assert {"loss", "accuracy", "nc_trace", "nc_rank", "nc_cdnv", "v_suff", "v_min"} <= metrics
    nc = frame[(frame.metric == "nc_trace") & (frame.trial_id == "aaaaa")]
    assert sorted(nc.layer.unique()) == [1, 2, 3]
    vinfo = frame[(frame.metric == "v_suff") & (frame.trial_id == "aaaaa")]
    assert sorted(vinfo.layer.unique()) == [0, 1, 2] and set(vinfo.epoch) == {2}
    loss = frame[(frame.metric == "loss") & (frame.split == "test") & (frame.epoch == 2)]
    assert loss.value.tolist() == [rows[1].test.loss] * 2
    assert loss.layer.isna().all()
    assert frame.layer.dtype == pd.Int64Dtype()
    steps = frame[(frame.metric == "train_step_loss") & (frame.trial_id == "aaaaa")]
    assert steps.note.tolist() == ["", "max_epochs"]  # why training stopped, on the last epoch
    # Budget curves: their own metric, the budget in its column; <NA> on every other row.
    curve = frame[frame.metric == "v_suff_at_budget"]
    assert len(curve) == 2 * 3 * 2 and set(curve.budget) == {1}  # trials × layers × splits
    raw = frame[frame.metric == "v_suff_raw"]
    trained, affine = (curve.layer < 2).to_numpy(), (curve.layer == 2).to_numpy()
    assert curve.value[trained].tolist() == raw.value[trained].tolist()  # the cap's point
    assert (curve.value[affine].to_numpy() < raw.value[affine].to_numpy()).all()  # the optimum
    assert frame[~frame.metric.str.endswith("_at_budget")].budget.isna().all()
    assert frame.budget.dtype == pd.Int64Dtype()


def test_a_list_valued_axis_is_one_hashable_value_per_trial(tmp_path: Path) -> None:
    record.write_description(tmp_path, {"axes": ["widths"]})
    for name, widths in (("train_trial_aaaaa", [8, 16]), ("train_trial_bbbbb", [16, 32])):
        write_trial(tmp_path, name, {"dataset": "d", "model": "mlp", "widths": widths}, history(1))
    frame = load(tmp_path)
    assert set(frame.widths) == {(8, 16), (16, 32)}
    assert frame.groupby("widths").trial_id.nunique().to_dict() == {(8, 16): 1, (16, 32): 1}


def test_vinfo_values_carry_their_protocol_and_convergence(tmp_path: Path) -> None:
    rows = history(2)
    write_trial(tmp_path, "train_trial_aaaaa", {"dataset": "fashion-mnist-demo"}, rows)
    frame = load(tmp_path)
    measured = frame[frame.metric.isin(["v_suff", "v_min", "suff_epochs", "digit0_epochs"])]
    assert len(measured) == 4 * 3 * 2  # metrics × layers × splits, at epoch 2 only
    for _, row in measured.iterrows():
        result = rows[1].vinfo[row.layer, row.split]
        if row.metric == "v_suff":
            protocol = result.terms[Quantity.SUFFICIENCY].protocol
            expected = f"{protocol}; decoder epochs (stop): 1 (max_epochs)"
        elif row.metric == "v_min":
            runs = ", ".join(["1 (max_epochs)"] * result.num_digits)
            protocol = result.terms[Quantity.MINIMALITY].protocol
            expected = f"{protocol}; decoder epochs (stop): {runs}"
        else:
            expected = "max_epochs"
        assert row.note == expected, (row.metric, row.note)
    # 20 and 200 samples per class: the v_min notes above listed 2 and 3 decoders
    digits = {split: rows[1].vinfo[0, split].num_digits for split in ("train", "test")}
    assert digits == {"train": 2, "test": 3}


def test_load_is_never_silently_empty(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no results folder"):
        load(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="holds no trial folders") as empty:
        load(tmp_path)
    assert "\n" not in str(empty.value)
    for name in ("demo", "lr"):  # a storage root: its experiments, each with a trial
        write_trial(tmp_path / name, "train_trial_aaaaa", {"dataset": "d"}, history(1))
    with pytest.raises(FileNotFoundError, match="is a storage root") as root:
        load(tmp_path)
    assert f"{tmp_path / 'demo'}, {tmp_path / 'lr'}" in str(root.value)


def test_a_running_experiment_without_a_finished_epoch_loads(tmp_path: Path) -> None:
    write_trial(tmp_path, "train_trial_aaaaa", {"dataset": "d", "model": "mlp"}, [], 0)
    frame = load(tmp_path)
    assert frame.empty and axis_columns(frame) == ["dataset", "model"]
