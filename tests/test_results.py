"""The tidy results frame, from a results folder laid out as Tune writes it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from raycompress.data import load_dataset
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import build_model, make_spec
from raycompress.results import load, vinfo_notes
from raycompress.sweep import SWEEP_FILE
from raycompress.trainable import record_to_dict, summary_metrics
from raycompress.training import Run, TrainConfig


def history(epochs: int, schedule: str = "every:2") -> list[dict]:
    data = load_dataset("fashion-mnist-demo", train_size=200)
    model = build_model(make_spec("mlp", data.input_shape, 10, widths=(16, 8)))
    vinfo = VInfoConfig(DecoderConfig(batch_size=100, max_epochs=1), schedule=schedule)
    run = Run(model, data, TrainConfig(batch_size=100, max_epochs=epochs), vinfo=vinfo)
    return [record_to_dict(run.step()) for _ in range(epochs)]


def write_trial(
    root: Path, name: str, params: dict, rows: list[dict], checkpoints: int = 2
) -> None:
    trial = root / name
    for k in range(checkpoints):  # older checkpoints hold a shorter history
        folder = trial / f"checkpoint_{k:06d}"
        folder.mkdir(parents=True)
        (folder / "history.json").write_text(json.dumps(rows[: len(rows) - checkpoints + 1 + k]))
    (trial / "params.json").write_text(json.dumps(params))
    (trial / "result.json").write_text(json.dumps({"trial_id": name[-5:], "epoch": 1}) + "\n")


def test_summary_has_the_same_keys_every_epoch() -> None:
    rows = history(3)
    keys = [set(summary_metrics(row, depth=3)) for row in rows]
    assert keys[0] == keys[1] == keys[2]
    first, second = (summary_metrics(r, 3) for r in rows[:2])
    assert math.isnan(first["train/v_suff/l1"]) and not math.isnan(second["train/v_suff/l1"])
    assert json.loads(json.dumps(rows))  # plain JSON all the way down


def test_load_builds_the_tidy_frame(tmp_path: Path) -> None:
    rows = history(2)
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"axes": ["lr", "model"]}))
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
    assert list(frame.columns[4:]) == ["epoch", "split", "layer", "metric", "value", "note"]
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


def test_load_of_an_empty_or_missing_folder(tmp_path: Path) -> None:
    assert load(tmp_path).empty
    with pytest.raises(FileNotFoundError, match="no results folder"):
        load(tmp_path / "missing")
