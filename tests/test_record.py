"""A run's record: history rows, summary keys and the sweep description, written by the
trainable's functions and read back through `results.load` field for field."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from raycompress import __version__, record
from raycompress.data import load_dataset
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import build_model, make_spec
from raycompress.results import load
from raycompress.training import Run, TrainConfig


def history(epochs: int, schedule: str = "every:2", held_out: bool = False) -> list[dict]:
    """The history rows of a short MLP run with 𝒱-information on a schedule."""
    data = load_dataset("fashion-mnist-demo", train_size=200)
    model = build_model(make_spec("mlp", data.input_shape, 10, widths=(16, 8)))
    decoder = DecoderConfig(batch_size=100, max_epochs=1)
    vinfo = VInfoConfig(decoder, schedule=schedule, held_out=held_out)
    run = Run(model, data, TrainConfig(batch_size=100, max_epochs=epochs), vinfo=vinfo)
    return [record.epoch_row(run.step()) for _ in range(epochs)]


def write_trial(
    root: Path, name: str, params: dict, rows: list[dict], checkpoints: int = 2
) -> None:
    """A trial folder as Tune lays it out; older checkpoints hold a shorter history."""
    trial = root / name
    trial.mkdir(parents=True)
    for k in range(checkpoints):
        folder = trial / f"checkpoint_{k:06d}"
        folder.mkdir()
        record.write_history(folder, rows[: len(rows) - checkpoints + 1 + k])
    (trial / "params.json").write_text(json.dumps(params))
    (trial / "result.json").write_text(json.dumps({"trial_id": name[-5:], "epoch": 1}) + "\n")


def test_summary_has_the_same_keys_every_epoch() -> None:
    rows = history(3)
    keys = [set(record.summary_metrics(row, depth=3)) for row in rows]
    assert keys[0] == keys[1] == keys[2]
    first, second = (record.summary_metrics(r, 3) for r in rows[:2])
    key = record.summary_key("train", "v_suff", 1)
    assert key == "train/v_suff/l1" and math.isnan(first[key]) and not math.isnan(second[key])
    assert json.loads(json.dumps(rows))  # plain JSON all the way down


def test_a_written_record_reads_back_field_for_field(tmp_path: Path) -> None:
    rows = history(2, held_out=True)
    record.write_description(tmp_path, {"sweep": "t", "axes": ["lr"]})
    write_trial(tmp_path, "train_trial_aaaaa", {"dataset": "d", "model": "mlp", "lr": 0.1}, rows)
    frame = load(tmp_path)
    got = {
        (r.epoch, r.split, None if pd.isna(r.layer) else int(r.layer),
         r.metric if pd.isna(r.budget) else record.budget_key(r.metric.removesuffix("_at_budget"),
                                                               r.budget)): (r.value, r.note)
        for r in frame.itertuples()
    }  # fmt: skip
    expected = 0
    for row in rows:
        e = row["epoch"]
        value, note = got[e, "train", None, "train_step_loss"]
        assert value == row["train_step_loss"] and note == (row["stop_reason"] or "")
        expected += 1
        for split, report in row["splits"].items():
            for metric in ("loss", "accuracy"):
                assert got[e, split, None, metric][0] == report[metric]
                expected += 1
            for layer, stats in report["layers"].items():
                for key, value in stats.items():
                    if key in ("path", "num_samples", "dim"):
                        continue
                    name = key if key == "nc_trace" else f"nc_{key}"
                    got_value, note = got[e, split, int(layer), name]
                    assert got_value == pytest.approx(value, nan_ok=True) and note == stats["path"]
                    expected += 1
        for split, layers in row["vinfo"].items():
            for layer, values in layers.items():
                for key, value in values.items():
                    if isinstance(value, str):
                        continue
                    assert got[e, split, int(layer), key][0] == pytest.approx(
                        float(value), nan_ok=True
                    )
                    expected += 1
    assert len(frame) == expected  # nothing more, nothing less
    assert frame.lr.unique().tolist() == [0.1]  # the swept axis from the description


def test_the_description_records_the_code(tmp_path: Path) -> None:
    written = record.write_description(tmp_path, {"sweep": "s", "axes": []})
    read = record.read_description(tmp_path)
    assert read == written and read["version"] == __version__ != "unknown"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:  # a git checkout: the commit, marked when the tree is dirty
        assert read["commit"].removesuffix("+dirty") == commit.stdout.strip()
    assert record.read_description(tmp_path / "nowhere") == {}


@pytest.mark.parametrize(
    ("metric", "head"),
    [("suff_epochs", "suff"), ("digit12_epochs", "digit12"), ("held_out_epochs", "held_out"),
     ("suff_stop", None), ("digit_epochs", None), ("v_suff", None), ("xsuff_epochs", None)],
)  # fmt: skip
def test_the_heads_of_epoch_counts(metric: str, head: str | None) -> None:
    assert record.head_of_epochs(metric) == head


def test_results_import_neither_ray_nor_torch() -> None:
    code = "import sys, raycompress.results; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
