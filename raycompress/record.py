"""A run's record on disk: the files a sweep writes and the readers read, and Tune's summary.

The trainable writes, `results`, the report and the analysis tables read; all of them import
the names below instead of spelling them. What a file holds is typed in `schema`; this module
only puts it on disk and takes it off. No Ray, no torch: readers load results without either.

Files. In each checkpoint of a trial: `STATE_FILE` (the run's torch state), `HISTORY_FILE`,
the authoritative per-epoch history (`schema.EpochRecord.to_json` per epoch; Tune's
result.json can lose epochs when a trial is restarted), `ROWS_FILE`, the same history as the
tidy frame's rows with the trial's identity columns in front (Parquet: `rows_table`), and
`MODEL_FILE`, what network ran and
where: {"model", "stages" (names of l = 1..L), "batch_norm" (the regime it was measured in),
"adaptation" (how a torchvision model was changed for the data), "same_as" (the layers whose
representation is an earlier layer's, where there are such), "device", "device_note" (why
it is not the one asked for), "compute"}. In the experiment folder: `SWEEP_FILE`, the sweep's
description, and `DATASET_FILE`, every trial's rows consolidated into one Parquet file
(`results.consolidate`). Tune itself writes `PARAMS_FILE` (a trial's resolved settings) and
`RESULT_FILE` into each trial folder. A folder is local or in object storage (`storage.Folder`): the
readers read both alike.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from raycompress import __version__, storage
from raycompress.schema import (
    BUDGET,
    COLUMNS,
    FAMILY,
    NC,
    NETWORK,
    SATURATED,
    SPLITS,
    EpochRecord,
    Quantity,
)
from raycompress.stopping import Stop
from raycompress.storage import Folder

STATE_FILE = "run.pt"
HISTORY_FILE = "history.json"
ROWS_FILE = "rows.parquet"
DATASET_FILE = "raycompress_rows.parquet"
MODEL_FILE = "model.json"
SWEEP_FILE = "raycompress_sweep.json"
PARAMS_FILE = "params.json"  # Tune's
RESULT_FILE = "result.json"  # Tune's
TRIAL_ID = "trial_id"  # the first identity column of every row: Tune's id of the trial


class DamagedFileError(ValueError):
    """A results file that cannot be read (truncated, corrupt): one line naming it."""


def damaged(file: Folder, err: Exception) -> DamagedFileError:
    """The one-line error of `file`, found unreadable by `err`."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return DamagedFileError(f"{file} is damaged ({type(err).__name__}: {first[:200]})")


def _read_json(file: Folder) -> Any:
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise damaged(file, err) from None


# --------------------------------------------------------------------------- history files


def write_history(folder: Path, history: list[EpochRecord]) -> None:
    rows = [epoch.to_json() for epoch in history]
    (folder / HISTORY_FILE).write_text(json.dumps(rows, allow_nan=True))


def read_history(folder: Folder) -> list[EpochRecord]:
    """The history of a checkpoint folder; a DamagedFileError naming a file it cannot read."""
    file = folder / HISTORY_FILE
    rows = _read_json(file)
    try:
        return [EpochRecord.from_json(row) for row in rows]
    except (KeyError, TypeError, ValueError) as err:
        raise damaged(file, err) from None


def newest_history(trial: Folder) -> list[EpochRecord]:
    """The history in a trial folder's newest checkpoint; [] before its first epoch ends."""
    checkpoints = sorted(trial.glob(f"checkpoint_*/{HISTORY_FILE}"))
    return read_history(checkpoints[-1].parent) if checkpoints else []


def write_model(folder: Path, description: dict[str, Any]) -> None:
    (folder / MODEL_FILE).write_text(json.dumps(description))


def newest_model(trial: Folder) -> dict[str, Any]:
    """What network a trial ran (see MODEL_FILE), from its newest checkpoint whose file can be
    read; {} before its first epoch ends."""
    for file in sorted(trial.glob(f"checkpoint_*/{MODEL_FILE}"), reverse=True):
        try:
            return _read_json(file)
        except DamagedFileError:
            continue
    return {}


def read_params(trial: Folder) -> dict[str, Any]:
    """A trial's resolved settings, as Tune recorded them."""
    return _read_json(trial / PARAMS_FILE)


# ------------------------------------------------------------------------- the rows, columnar


def rows_table(history: list[EpochRecord], identity: Mapping[str, Any]) -> pa.Table:
    """A history as the tidy frame's rows (`schema.COLUMNS`) behind its trial's identity
    columns: `TRIAL_ID` (text), then each identity setting (dataset, model, each swept axis)
    as its JSON text, so that a list (widths) or a number keeps its value exactly. Text
    columns are dictionary-encoded: an identity column costs a few bytes whatever its rows.
    The identity is in the schema's metadata too (`IDENTITY`: readers take it from there
    instead of decoding a column of one value)."""
    rows = [row for epoch in history for row in epoch.rows()]
    columns = dict(zip(COLUMNS, zip(*rows, strict=True), strict=True)) if rows else {}
    n = len(rows)
    texts = {name: identity_text(name, value) for name, value in identity.items()}

    def constant(text: str) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int32()), pa.array([text]))

    def column(name: str, kind: pa.DataType) -> pa.Array:
        values = pa.array(columns.get(name, ()), kind)
        return values.dictionary_encode() if kind == pa.string() else values

    arrays = {name: constant(text) for name, text in texts.items()}
    arrays.update({name: column(name, kind) for name, kind in COLUMN_TYPES.items()})
    return pa.table(arrays, metadata={IDENTITY: json.dumps(texts)})


IDENTITY_SETTINGS = ("dataset", "model")  # what identifies a trial's rows besides its axes


def identity_settings(axes: list[str]) -> list[str]:
    """The settings that identify a trial's rows: dataset, model and the sweep's swept axes."""
    return [*IDENTITY_SETTINGS, *(a for a in axes if a not in IDENTITY_SETTINGS)]


def identity_text(name: str, value: Any) -> str:
    """How an identity column holds a value: the trial id as it is, a setting as JSON."""
    return value if name == TRIAL_ID else json.dumps(value)


IDENTITY = b"raycompress.identity"  # a rows file's metadata: its identity columns' texts
# the narrowest types that hold every value (a layer index, a decoder epoch), so that a read
# holds little beside the frame it becomes; `results.load` makes layer and budget Int64
COLUMN_TYPES = {
    "epoch": pa.int64(), "split": pa.string(), "layer": pa.int16(), FAMILY: pa.string(),
    "metric": pa.string(), BUDGET: pa.int32(), "value": pa.float64(), SATURATED: pa.bool_(),
    "note": pa.string(),
}  # fmt: skip
assert tuple(COLUMN_TYPES) == COLUMNS


def table_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
    return sink.getvalue()


def write_rows(folder: Folder, history: list[EpochRecord], identity: Mapping[str, Any]) -> None:
    """`ROWS_FILE` in a checkpoint folder, written atomically."""
    storage.write_atomically(folder / ROWS_FILE, table_bytes(rows_table(history, identity)))


class OlderRowsError(LookupError):
    """A rows file written before some of today's columns (`COLUMN_TYPES`): its checkpoint's
    history, which every version reads, holds the rows in full."""


def read_table(file: Folder, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file of rows (`ROWS_FILE` or `DATASET_FILE`), the `columns` asked for (None:
    all); a DamagedFileError naming a file it cannot read, an OlderRowsError for one that
    lacks a row column asked for."""
    filesystem, path = storage.arrow(file)
    try:
        return pq.read_table(path, filesystem=filesystem, columns=columns, use_threads=False)
    except (pa.ArrowInvalid, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        if isinstance(err, pa.ArrowInvalid) and "No match for FieldRef" in str(err):
            raise OlderRowsError(f"{file} predates a column asked for") from None
        raise damaged(file, err) from None


def open_rows(file: Folder) -> pq.ParquetFile:
    """A Parquet file of rows opened for reading row group by row group (its footer read: a
    DamagedFileError naming it when that fails)."""
    filesystem, path = storage.arrow(file)
    try:
        return pq.ParquetFile(filesystem.open_input_file(path))
    except (pa.ArrowInvalid, OSError) as err:
        raise damaged(file, err) from None


# ------------------------------------------------------------------ Tune's per-epoch summary

EPOCH, STOP_REASON, ERROR = "epoch", "stop_reason", "error"
NC_SUMMARY = (NC.TRACE, NC.WITHIN_TRACE, NC.BETWEEN_TRACE, NC.CDNV, NC.RANK)
VINFO_SUMMARY = (Quantity.SUFFICIENCY, Quantity.MINIMALITY)


def summary_key(
    split: str, metric: str, layer: int | None = None, family: str | None = None
) -> str:
    """The spelling of a summary value: `split/metric`, `split/metric/lN`, or with a decoder
    family other than the network's, `split/metric/lN/family`."""
    key = f"{split}/{metric}" if layer is None else f"{split}/{metric}/l{layer}"
    return key if family is None else f"{key}/{family}"


def summary_metrics(
    record: EpochRecord, depth: int, families: Sequence[str] = (NETWORK,)
) -> dict[str, float | int | str]:
    """What Tune shows and stores per epoch: the same keys every epoch, NaN where unmeasured;
    𝒱-information of each decoder family (by label)."""
    out: dict[str, float | int | str] = {
        EPOCH: record.epoch,
        "train_step_loss": record.train_step_loss,
        STOP_REASON: record.stop_reason or "",
    }
    reports = dict(record.reports())
    for split in SPLITS:
        report = reports.get(split)
        out[summary_key(split, "loss")] = report.loss if report else math.nan
        out[summary_key(split, "accuracy")] = report.accuracy if report else math.nan
        for layer in range(1, depth + 1):
            stats = report.layers.get(layer) if report else None
            for stat in NC_SUMMARY:
                out[summary_key(split, stat, layer)] = getattr(stats, stat, math.nan)
        for layer in range(depth):
            for family in families:
                result = record.vinfo.get((layer, split, family))
                for q in VINFO_SUMMARY:
                    value = result.value(q) if result else math.nan
                    out[summary_key(split, q, layer, None if family == NETWORK else family)] = value
    return out


def failed_summary(message: str) -> dict[str, str]:
    """Tune's one report of a trial that a retry cannot fix (bad settings, missing data)."""
    return {STOP_REASON: Stop.ERROR, ERROR: message}


# ------------------------------------------------------------------- the sweep's description


def git_commit() -> str | None:
    """The commit of the source tree this package runs from (with "+dirty" when it has
    uncommitted changes), or None outside a git checkout (an installed wheel)."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def write_description(folder: Folder, description: dict[str, Any]) -> dict[str, Any]:
    """Write the sweep's description with the code that runs it (package version, git commit)
    into the experiment folder; returns what was written."""
    described = {**description, "version": __version__, "commit": git_commit()}
    (folder / SWEEP_FILE).write_text(json.dumps(described, indent=1))
    return described


def read_description(folder: Folder) -> dict[str, Any]:
    """The experiment folder's sweep description; {} for a folder written without one; a
    DamagedFileError naming it when it cannot be read."""
    path = folder / SWEEP_FILE
    return _read_json(path) if path.exists() else {}
