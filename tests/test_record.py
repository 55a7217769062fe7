"""A run's record: the history of typed epochs, summary keys and the sweep description,
written by the trainable's functions and read back through `results.load` field for field;
histories written before the typed records still load."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from raycompress import __version__, record, schema
from raycompress.data import load_dataset
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import build_model, make_spec
from raycompress.results import load
from raycompress.schema import NC, EpochRecord, Quantity
from raycompress.training import Run, TrainConfig

DATA = Path(__file__).resolve().parent / "data"


def history(epochs: int, schedule: str = "every:2", held_out: bool = False) -> list[EpochRecord]:
    """The epochs of a short MLP run with 𝒱-information on a schedule."""
    data = load_dataset("fashion-mnist-demo", train_size=200)
    model = build_model(make_spec("mlp", data.input_shape, 10, widths=(16, 8)))
    decoder = DecoderConfig(protocol="thesis", batch_size=100, max_epochs=1)
    vinfo = VInfoConfig(decoder, schedule=schedule, held_out=held_out)
    run = Run(model, data, TrainConfig(batch_size=100, max_epochs=epochs), vinfo=vinfo)
    return [run.step() for _ in range(epochs)]


def write_trial(
    root: Path, name: str, params: dict, rows: list[EpochRecord], checkpoints: int = 2
) -> None:
    """A trial folder as Tune lays it out; older checkpoints hold a shorter history."""
    trial = root / name
    trial.mkdir(parents=True)
    for k in range(checkpoints):
        folder = trial / f"checkpoint_{k:06d}"
        folder.mkdir()
        record.write_history(folder, rows[: len(rows) - checkpoints + 1 + k])
    (trial / record.PARAMS_FILE).write_text(json.dumps(params))
    (trial / record.RESULT_FILE).write_text(json.dumps({"trial_id": name[-5:], "epoch": 1}) + "\n")


def as_text(history: list[EpochRecord]) -> str:
    """The history as its file holds it (NaN spelt out, so that equal records compare equal)."""
    return json.dumps([epoch.to_json() for epoch in history], allow_nan=True)


@pytest.mark.slow
def test_summary_has_the_same_keys_every_epoch() -> None:
    rows = history(3)
    keys = [set(record.summary_metrics(row, depth=3)) for row in rows]
    assert keys[0] == keys[1] == keys[2]
    first, second = (record.summary_metrics(r, 3) for r in rows[:2])
    key = record.summary_key("train", Quantity.SUFFICIENCY, 1)
    assert key == "train/v_suff/l1" and math.isnan(first[key]) and not math.isnan(second[key])
    assert second[key] == rows[1].vinfo[1, "train", "network"].terms[Quantity.SUFFICIENCY].value
    within = record.summary_key("test", NC.WITHIN_TRACE, 2)
    assert within == "test/nc_within_trace/l2"  # the statistic's one spelling
    assert first[within] == rows[0].test.layers[2].nc_within_trace


def test_a_written_history_reads_back_as_the_same_records(tmp_path: Path) -> None:
    rows = history(2, held_out=True)
    record.write_history(tmp_path, rows)
    assert as_text(record.read_history(tmp_path)) == as_text(rows)
    assert json.loads((tmp_path / record.HISTORY_FILE).read_text())  # plain JSON


def test_a_written_record_reads_back_field_for_field(tmp_path: Path) -> None:
    rows = history(2, held_out=True)
    record.write_description(tmp_path, {"sweep": "t", "axes": ["lr"]})
    write_trial(tmp_path, "train_trial_aaaaa", {"dataset": "d", "model": "mlp", "lr": 0.1}, rows)
    frame = load(tmp_path)
    got = {
        (r.epoch, r.split, None if pd.isna(r.layer) else int(r.layer), r.metric,
         None if pd.isna(r.budget) else int(r.budget)): (r.value, r.note)
        for r in frame.itertuples()
    }  # fmt: skip
    assert len(got) == len(frame)  # one row per key
    seen = 0

    def check(key: tuple, value: float, note: str | None = None) -> None:
        nonlocal seen
        got_value, got_note = got[key]
        assert got_value == pytest.approx(float(value), nan_ok=True), key
        assert note is None or got_note == note, key
        seen += 1

    for epoch in rows:
        e = epoch.epoch
        check((e, "train", None, "train_step_loss", None), epoch.train_step_loss,
              epoch.stop_reason or "")  # fmt: skip
        for split, report in epoch.reports():
            check((e, split, None, "loss", None), report.loss)
            check((e, split, None, "accuracy", None), report.accuracy)
            for layer, stats in report.layers.items():
                for stat in NC:
                    check((e, split, layer, stat, None), getattr(stats, stat), stats.path)
        for (layer, split, _), result in epoch.vinfo.items():
            key = (e, split, layer)
            check((*key, "num_digits", None), result.num_digits)
            check((*key, "clipped", None), result.clipped)
            for q, term in result.terms.items():
                check((*key, q, None), term.value)
                check((*key, f"{q}_raw", None), term.raw)
                for budget, bits in term.curve.items():
                    check((*key, f"{q}_at_budget", budget), bits)
                for head in term.heads:
                    check((*key, f"{head.name}_epochs", None), head.fit.epochs, head.fit.stop)
            check((*key, "h_y_bits", None), result.terms[Quantity.SUFFICIENCY].heads[0].entropy)
            for j, head in enumerate(result.terms[Quantity.MINIMALITY].heads):
                check((*key, f"v_min_digit{j}_raw", None), head.bits)
                check((*key, f"h_digit{j}_bits", None), head.entropy)
        for name, (value, note) in epoch.baselines.items():
            check((e, "train", None, name, None), value, note)
    assert len(frame) == seen  # nothing more, nothing less (one budget: no convergence row)
    assert frame.lr.unique().tolist() == [0.1]  # the swept axis from the description


def old_frame() -> pd.DataFrame:
    """The tidy frame that the code of commit 51765e1 loaded from tests/data's history."""
    numbers = {"layer": [""], "budget": [""], "value": ["NaN", "nan", ""]}
    frame = pd.read_csv(DATA / "history_before_schema_tidy.csv", keep_default_na=False,
                        na_values=numbers)  # fmt: skip
    return frame.astype({"layer": "Int64", "budget": "Int64", "value": float, "note": str})


def test_a_history_written_before_the_typed_records_still_loads(tmp_path: Path) -> None:
    """tests/data: a history (and its tidy frame) written by the code of commit 51765e1, where
    a measurement was one flat dictionary; it loads into the same frame, row for row."""
    trial = tmp_path / "train_trial_abcde_00000"
    (trial / "checkpoint_000001").mkdir(parents=True)
    shutil.copy(DATA / "history_before_schema.json", trial / "checkpoint_000001" / "history.json")
    (trial / record.PARAMS_FILE).write_text(
        json.dumps({"dataset": "fashion-mnist-demo", "model": "mlp", "seed": 0})
    )
    old = old_frame()
    ours = load(tmp_path)[old.columns]
    ours = ours.astype({c: str for c in ours.select_dtypes("category")})  # text, as in the CSV
    keys = ["epoch", "split", "layer", "metric", "budget"]
    ours, old = (f.sort_values(keys).reset_index(drop=True) for f in (ours, old))
    assert len(ours) == len(old) == 467
    pd.testing.assert_frame_equal(ours, old, check_dtype=False)
    # read as types: the task's placement, the lost task's error, the decoders' configuration
    history = record.read_history(trial / "checkpoint_000001")
    placed = history[0].vinfo[1, "train", "network"]
    assert placed.placement is not None and placed.placement.placement_group == "pg1"
    assert placed.decoders is not None and placed.decoders.config["budgets"] == (1, 2)
    assert placed.terms[Quantity.MINIMALITY].monte_carlo is not None
    lost = history[1].vinfo[2, "test", "network"]
    assert not lost.terms and lost.error.startswith("𝒱-information task failed")
    # and written again in today's format, it reads back the same
    record.write_history(tmp_path, history)
    assert as_text(record.read_history(tmp_path)) == as_text(history)


@pytest.mark.slow
def test_todays_records_have_the_rows_of_the_old_ones() -> None:
    """The same configuration as the old history's: the same metrics, layers and budgets."""
    data = load_dataset("fashion-mnist-demo", train_size=200)
    model = build_model(make_spec("mlp", data.input_shape, 10, widths=(16, 8)))
    decoder = DecoderConfig(protocol="thesis", batch_size=100, max_epochs=2, budgets=(1, 2))
    vinfo = VInfoConfig(decoder, held_out=True, monte_carlo=1, clip_negative=True)
    config = TrainConfig(batch_size=100, max_epochs=2)
    run = Run(model, data, config, vinfo=vinfo, baselines=True)
    rows = [row for _ in range(2) for row in run.step().rows()]

    def keys(frame: pd.DataFrame) -> list[tuple]:
        lost = (frame.epoch == 2) & (frame.split == "test") & frame.layer.eq(2).fillna(False)
        columns = frame[~lost][["epoch", "split", "layer", "metric", "budget"]].astype(object)
        return sorted(str(tuple(None if pd.isna(v) else int(v) if isinstance(v, float) else v
                                for v in row)) for row in columns.values)  # fmt: skip

    today = pd.DataFrame(rows, columns=list(schema.COLUMNS))
    added = today.metric.isin(list(schema.Baseline))  # since: the baselines where it stops
    assert set(today[added].epoch) == {2} and added.sum() == len(schema.Baseline)
    assert keys(today[~added]) == keys(old_frame())


def test_the_description_records_the_code(tmp_path: Path) -> None:
    written = record.write_description(tmp_path, {"sweep": "s", "axes": []})
    read = record.read_description(tmp_path)
    assert read == written and read["version"] == __version__ != "unknown"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:  # a git checkout: the commit, marked when the tree is dirty
        assert read["commit"].removesuffix("+dirty") == commit.stdout.strip()
    assert record.read_description(tmp_path / "nowhere") == {}


def test_results_import_neither_ray_nor_torch() -> None:
    code = "import sys, raycompress.results; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
