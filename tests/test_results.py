"""The tidy results frame, from a results folder laid out as Tune writes it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_record import history, write_trial

from raycompress import record
from raycompress.results import axis_columns, load, vinfo_notes


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
    assert loss.value.tolist() == [rows[1]["splits"]["test"]["loss"]] * 2
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


def test_vinfo_values_carry_their_protocol_and_convergence(tmp_path: Path) -> None:
    rows = history(2)
    write_trial(tmp_path, "train_trial_aaaaa", {"dataset": "fashion-mnist-demo"}, rows)
    frame = load(tmp_path)
    measured = frame[frame.metric.isin(["v_suff", "v_min", "suff_epochs", "digit0_epochs"])]
    assert len(measured) == 4 * 3 * 2  # metrics × layers × splits, at epoch 2 only
    for _, row in measured.iterrows():
        values = rows[1]["vinfo"][row.split][str(row.layer)]
        if row.metric == "v_suff":
            expected = f"{values['suff_protocol']}; decoder epochs (stop): 1 (max_epochs)"
        elif row.metric == "v_min":
            runs = ", ".join(["1 (max_epochs)"] * values["num_digits"])
            expected = f"{values['min_protocol']}; decoder epochs (stop): {runs}"
        else:
            expected = "max_epochs"
        assert row.note == expected, (row.metric, row.note)
    # 20 and 200 samples per class: the v_min notes above listed 2 and 3 decoders
    digits = {split: rows[1]["vinfo"][split]["0"]["num_digits"] for split in ("train", "test")}
    assert digits == {"train": 2, "test": 3}


def test_budget_points_after_a_decoder_stopped_say_so() -> None:
    values = {
        "v_suff": 1.5, "v_suff_raw": 1.5, "suff_epochs": 12, "suff_stop": "plateau",
        "suff_protocol": "in_sample: A", "v_suff@10": 1.4, "v_suff@20": 1.5,
        "v_suff_last_gain": 0.1, "num_digits": 1, "digit0_epochs": 20, "digit0_stop": "max_epochs",
        "v_min": 0.5, "v_min_raw": 0.5, "v_min_digit0_raw": 0.5, "min_protocol": "in_sample: B",
        "v_min@10": 0.3, "v_min@20": 0.5,
    }  # fmt: skip
    notes = vinfo_notes(values)
    assert notes["v_suff@10"] == "" and notes["v_min@20"] == ""
    assert notes["v_suff@20"] == "carried from before the budget: suff at 12"
    assert notes["v_suff_last_gain"].startswith("in_sample: A; decoder epochs (stop): 12 (plateau)")


def test_vinfo_notes_of_held_out_and_failed_measurements() -> None:
    values = {
        "v_suff": 1.5, "v_suff_raw": 1.5, "suff_epochs": 12, "suff_stop": "plateau",
        "suff_protocol": "in_sample: A", "v_min": float("nan"), "v_min_raw": float("nan"),
        "num_digits": 2, "digit0_epochs": 50, "digit0_stop": "max_epochs", "digit1_epochs": 3,
        "digit1_stop": "diverged", "v_min_digit0_raw": 0.5, "v_min_digit1_raw": float("nan"),
        "min_protocol": "in_sample: B", "v_suff_held_out": 1.2, "v_suff_held_out_raw": 1.2,
        "held_out_epochs": 7, "held_out_stop": "loss_threshold",
        "held_out_protocol": "held_out: C", "clipped": False,
        "error": "minimality decoder 2 diverged",
    }  # fmt: skip
    notes = vinfo_notes(values)
    error = "error: minimality decoder 2 diverged"
    assert notes["v_suff"] == f"in_sample: A; decoder epochs (stop): 12 (plateau); {error}"
    both = "50 (max_epochs), 3 (diverged)"
    assert notes["v_min_digit0_raw"] == f"in_sample: B; decoder epochs (stop): {both}; {error}"
    assert notes["v_suff_held_out_raw"].startswith("held_out: C; decoder epochs (stop): 7 (loss")
    assert notes["digit1_epochs"] == f"diverged; {error}"
    assert notes["clipped"] == error
    lost = vinfo_notes({"v_suff": float("nan"), "v_min": float("nan"), "error": "worker died"})
    assert lost["v_suff"] == lost["v_min"] == "error: worker died"


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
