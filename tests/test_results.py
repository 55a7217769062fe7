"""The tidy results frame, from a results folder laid out as Tune writes it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from raycompress.data import load_dataset
from raycompress.decoders import DecoderConfig
from raycompress.models import build_model, make_spec
from raycompress.results import load
from raycompress.sweep import SWEEP_FILE
from raycompress.trainable import record_to_dict, summary_metrics
from raycompress.training import Run, TrainConfig
from raycompress.vinfo import VInfoConfig


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


def test_load_of_an_empty_or_missing_folder(tmp_path: Path) -> None:
    assert load(tmp_path).empty
    with pytest.raises(FileNotFoundError, match="no results folder"):
        load(tmp_path / "missing")
