"""The tidy results frame, from a results folder laid out as Tune writes it."""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_record import history, write_trial

from raycompress import record, results, storage
from raycompress.results import INCOMPLETE, axis_columns, consolidate, load
from raycompress.schema import Quantity


@pytest.mark.slow
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
        "epoch", "split", "layer", "family", "metric", "budget", "value", "saturated", "note",
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
        result = rows[1].vinfo[row.layer, row.split, row.family]
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
    digits = {split: rows[1].vinfo[0, split, "network"].num_digits for split in ("train", "test")}
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


# ----------------------------------------------------------------- the columnar record, at scale

AXES = {"lr": [0.1, 0.2], "widths": [[8, 16], [16, 32]]}


@pytest.fixture(scope="module")
def two_epochs() -> list:
    return history(2)


def write_columnar_trial(
    root: Path, name: str, params: dict, rows: list, checkpoints: int = 2
) -> None:
    """A trial folder as the trainable writes it: each checkpoint's history and its rows."""
    write_trial(root, name, params, rows, checkpoints)
    ids = {record.TRIAL_ID: name[-5:], **{k: params.get(k) for k in ("dataset", "model", *AXES)}}
    for k in range(checkpoints):
        folder = root / name / f"checkpoint_{k:06d}"
        record.write_rows(folder, record.read_history(folder), ids)


def experiment(root: Path, rows: list, columnar: bool = True) -> Path:
    """Four trials over two axes (a list-valued one among them), two checkpoints each."""
    root.mkdir(parents=True, exist_ok=True)
    record.write_description(root, {"axes": list(AXES)})
    write = write_columnar_trial if columnar else write_trial
    for i, (lr, widths) in enumerate(itertools.product(*AXES.values())):
        params = {"dataset": "fashion-mnist-demo", "model": "mlp", "lr": lr, "widths": widths}
        write(root, f"train_trial_{'abcd'[i] * 5}", params, rows)
    return root


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame in one row order, its categorical columns as plain values: frames read by
    different paths compare equal when their rows and values are."""
    plain = frame.astype({c: object for c in frame.select_dtypes("category")})
    keys = [c for c in ("trial_id", "epoch", "split", "layer", "family", "metric", "budget", "note")
            if c in plain]  # fmt: skip
    return plain.sort_values(keys, key=lambda c: c.astype(str)).reset_index(drop=True)


def test_columnar_and_legacy_folders_give_the_same_frame(tmp_path: Path, two_epochs) -> None:
    columnar = load(experiment(tmp_path / "columnar", two_epochs))
    legacy = load(experiment(tmp_path / "legacy", two_epochs, columnar=False))
    assert len(columnar) == len(legacy) > 0 and list(columnar.columns) == list(legacy.columns)
    pd.testing.assert_frame_equal(canonical(columnar), canonical(legacy))
    assert set(columnar.widths) == {(8, 16), (16, 32)} and set(columnar.lr) == {0.1, 0.2}
    for name in ("trial_id", "dataset", "model", "lr", "widths", "split", "family", "metric",
                 "note"):  # fmt: skip
        assert isinstance(columnar[name].dtype, pd.CategoricalDtype), name
    assert columnar.value.dtype == "float64" and columnar.layer.dtype == pd.Int64Dtype()
    assert columnar.saturated.dtype == pd.BooleanDtype()
    vinfo = columnar.metric.isin(["v_suff", "v_min", "num_digits"])
    whole_network_or_nc = columnar.metric.isin(["loss", "accuracy", "nc_trace"])
    assert set(columnar.family[vinfo]) == {"network"}
    assert columnar.family[whole_network_or_nc].isna().all()


def test_consolidation_is_idempotent_and_read_while_current(tmp_path: Path, two_epochs) -> None:
    root = experiment(tmp_path, two_epochs)
    before = load(root)
    target = consolidate(root)
    first = target.read_bytes()
    assert consolidate(root).read_bytes() == first  # idempotent, byte for byte
    # while current, the consolidated file is what is read: the trials' own rows, damaged
    # now, are not even opened (no warning)
    for rows in root.glob(f"*/checkpoint_*/{record.ROWS_FILE}"):
        damage(rows)
    read = load(root)
    pd.testing.assert_frame_equal(canonical(read), canonical(before))
    assert read.attrs[INCOMPLETE] == {}


def test_a_stale_consolidation_is_ignored_for_trials_that_moved_on(
    tmp_path: Path, two_epochs
) -> None:
    """A trial that wrote a newer checkpoint after the consolidation (a sweep still running)
    is read from its own files: the epochs finished so far, none lost, none twice."""
    rows = two_epochs
    root = tmp_path / "running"
    root.mkdir()
    record.write_description(root, {"axes": []})
    params = {"dataset": "fashion-mnist-demo", "model": "mlp"}
    write_columnar_trial(root, "train_trial_aaaaa", params, rows[:1], checkpoints=1)
    write_columnar_trial(root, "train_trial_bbbbb", params, rows, checkpoints=1)
    consolidate(root)
    assert set(load(root).query("trial_id == 'aaaaa'").epoch) == {1}
    newer = root / "train_trial_aaaaa" / "checkpoint_000001"
    newer.mkdir()
    record.write_history(newer, rows)
    ids = {record.TRIAL_ID: "aaaaa", "dataset": params["dataset"], "model": params["model"]}
    record.write_rows(newer, rows, ids)
    frame = load(root)
    assert sorted(frame.query("trial_id == 'aaaaa'").epoch.unique()) == [1, 2]
    per_trial = frame.groupby(["epoch", "trial_id"]).size().unstack()
    assert (per_trial.aaaaa == per_trial.bbbbb).all()  # the same history: none lost or twice
    assert frame.attrs[INCOMPLETE] == {}


@pytest.mark.parametrize(
    "select",
    [
        {"metrics": ["nc_trace", "v_min"]},
        {"layers": [1]},
        {"layers": [None], "splits": ["test"]},
        {"splits": ["train"], "metrics": ["v_suff"], "layers": [0, 2]},
        {"trials": ["bbbbb", "ccccc"]},
        {"where": {"lr": [0.2], "widths": [[8, 16]]}},
        {"metrics": ["loss"], "columns": ["trial_id", "epoch", "split", "value"]},
        {"families": ["network"], "layers": [1]},
        {"families": [None], "splits": ["train"]},
    ],
)
@pytest.mark.parametrize("consolidated", [False, True])
def test_a_selection_equals_filtering_the_whole_frame(
    tmp_path: Path, two_epochs, select: dict, consolidated: bool
) -> None:
    root = experiment(tmp_path, two_epochs)
    if consolidated:
        consolidate(root)
    whole = load(root)
    keep = pd.Series(True, index=whole.index)
    if "metrics" in select:
        keep &= whole.metric.isin(select["metrics"])
    if "layers" in select:
        numbered = [layer for layer in select["layers"] if layer is not None]
        chosen = whole.layer.isin(numbered).fillna(False).astype(bool)
        keep &= chosen | whole.layer.isna() if None in select["layers"] else chosen
    if "splits" in select:
        keep &= whole.split.isin(select["splits"])
    if "trials" in select:
        keep &= whole.trial_id.isin(select["trials"])
    if "families" in select:
        chosen = whole.family.isin(select["families"]).astype(bool)
        keep &= chosen | whole.family.isna() if None in select["families"] else chosen
    for name, values in select.get("where", {}).items():
        keep &= whole[name].isin([tuple(v) if isinstance(v, list) else v for v in values])
    expected = whole[keep][select.get("columns", list(whole.columns))]
    selected = load(root, **select)
    assert 0 < len(selected) < len(whole) or "columns" in select
    pd.testing.assert_frame_equal(canonical(selected), canonical(expected))


def test_a_reader_during_a_write_sees_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    """A writer replaces a rows file again and again with one of two tables while a reader
    reads it: every read is whole, and one of the two."""
    tables = [
        pa.table({"value": pa.array(np.full(200_000, float(k)))}) for k in (1, 2)
    ]  # a few MB each: a write takes long enough to be caught in the middle
    target = tmp_path / record.ROWS_FILE
    storage.write_atomically(target, record.table_bytes(tables[0]))
    stop = threading.Event()

    def write() -> None:
        k = 0
        while not stop.is_set():
            k ^= 1
            storage.write_atomically(target, record.table_bytes(tables[k]))

    writer = threading.Thread(target=write)
    writer.start()
    seen = set()
    try:
        for _ in range(200):
            table = record.read_table(target)
            assert table.equals(tables[0]) or table.equals(tables[1])
            seen.add(table["value"][0].as_py())
    finally:
        stop.set()
        writer.join()
    assert seen == {1.0, 2.0}  # the reader saw both files, and never half of one
    assert list(tmp_path.iterdir()) == [target]  # nothing left beside it


def damage(file: Path) -> bytes:
    """Truncate `file` to half (as a write cut short would); returns what it then holds."""
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    return file.read_bytes()


@pytest.mark.parametrize("consolidated", [False, True])
def test_a_damaged_newest_checkpoint_costs_its_trial_its_newest_epochs(
    tmp_path: Path, two_epochs, consolidated: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Its trial is read from the checkpoint before; the others as they are. Consolidated:
    the damaged checkpoint is one written after the consolidation (the trial moved on)."""
    root = experiment(tmp_path, two_epochs)
    whole = load(root)
    rows = root / "train_trial_bbbbb" / "checkpoint_000001" / record.ROWS_FILE
    if consolidated:
        consolidate(root)
        newer = rows.parent.with_name("checkpoint_000002")
        shutil.copytree(rows.parent, newer)
        rows = newer / record.ROWS_FILE
    damage(rows)
    left = damage_then_load(root, rows, caplog)
    bbbbb = left[left.trial_id == "bbbbb"]
    assert set(bbbbb.epoch) == ({1, 2} if consolidated else {1})
    others = whole[whole.trial_id != "bbbbb"]
    pd.testing.assert_frame_equal(canonical(left[left.trial_id != "bbbbb"]), canonical(others))
    said = left.attrs[INCOMPLETE]["train_trial_bbbbb"]
    assert f"read from checkpoint_00000{1 if consolidated else 0}" in said


def damage_then_load(root: Path, damaged: Path, caplog: pytest.LogCaptureFixture) -> pd.DataFrame:
    """load, checking it warned once, in one line naming the damaged file, and left it as it
    was."""
    held = damaged.read_bytes()
    with caplog.at_level(logging.WARNING, logger="raycompress.results"):
        frame = load(root)
    warned = [r.getMessage() for r in caplog.records if r.name == "raycompress.results"]
    assert len(warned) == 1 and str(damaged) in warned[0] and "\n" not in warned[0]
    assert damaged.read_bytes() == held  # nothing damaged is rewritten
    return frame


@pytest.mark.parametrize("what", [record.ROWS_FILE, record.HISTORY_FILE, record.PARAMS_FILE])
def test_a_trial_that_cannot_be_read_is_skipped_and_the_others_load(
    tmp_path: Path, two_epochs, what: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every checkpoint of one trial damaged (its rows; or, for a trial written before the
    rows files, its history or its settings): that trial is skipped, every other loads."""
    columnar = what == record.ROWS_FILE
    root = experiment(tmp_path, two_epochs, columnar=columnar)
    trial = root / "train_trial_ccccc"
    files = [trial / what] if what == record.PARAMS_FILE else sorted(trial.glob(f"*/{what}"))
    for file in files:
        damage(file)
    with caplog.at_level(logging.WARNING, logger="raycompress.results"):
        frame = load(root)
    warned = [r.getMessage() for r in caplog.records if r.name == "raycompress.results"]
    assert len(warned) == 1 and str(files[-1]) in warned[0] and "trial skipped" in warned[0]
    assert set(frame.trial_id) == {"aaaaa", "bbbbb", "ddddd"}
    assert "trial skipped" in frame.attrs[INCOMPLETE]["train_trial_ccccc"]


def test_a_damaged_sweep_description_or_consolidation_is_one_line(
    tmp_path: Path, two_epochs, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = experiment(tmp_path / "legacy", two_epochs, columnar=False)
    damage(legacy / record.SWEEP_FILE)
    frame = damage_then_load(legacy, legacy / record.SWEEP_FILE, caplog)
    assert frame.trial_id.nunique() == 4 and "lr" not in frame  # its axes are not known
    with pytest.raises(record.DamagedFileError) as err:
        record.read_description(legacy)
    assert str(legacy / record.SWEEP_FILE) in str(err.value) and "\n" not in str(err.value)
    caplog.clear()
    columnar = experiment(tmp_path / "columnar", two_epochs)
    whole = load(columnar)
    damage(consolidate(columnar))
    read = damage_then_load(columnar, columnar / record.DATASET_FILE, caplog)
    pd.testing.assert_frame_equal(canonical(read), canonical(whole))  # from the trials' files


def test_the_consolidate_command(tmp_path: Path, two_epochs, capsys) -> None:
    root = experiment(tmp_path, two_epochs)
    assert results.main(["consolidate", str(root)]) == 0
    assert (root / record.DATASET_FILE).is_file()
    assert f"consolidated into {root / record.DATASET_FILE}" in capsys.readouterr().out
    assert results.main(["consolidate", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
