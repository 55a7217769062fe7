"""Read a sweep's results into one tidy pandas frame — without Ray, even while it runs.

    load(experiment_folder) -> DataFrame with columns
        trial_id, dataset, model, <each swept axis>, epoch, split, layer, family, metric,
        budget, value, saturated, note

One row per (trial, epoch, split, layer, metric, budget). `split` is "train" or "test";
`layer` is <NA> for whole-network metrics (loss, accuracy, train_step_loss), l = 1..L for
neural collapse (L: the penultimate features) and l = 0..L−1 for 𝒱-information. Metric names
(`schema` owns them): `loss`, `accuracy`, `train_step_loss`, the neural-collapse statistics
(`schema.NC`: `nc_trace`, …), `v_suff`, `v_min` and the other 𝒱-information quantities
(`schema.Quantity`) with their companions (bits, epochs used, …; `schema.Term.rows`).
`family` is the decoder family 𝒱 of a 𝒱-information row (`metrics.families`: "network",
"linear", "mlp-64", …; values of two families never merge) and <NA> on every other row.
`saturated` is True where a certified 𝒱-information value (and its raw value) sits at its
ceiling — H(y), or the relabelling's entropy: the family memorises the split — False where it
does not, <NA> where nothing was judged.
`budget` is <NA> except on the points of a 𝒱-information term's budget curve: metric
`<term>_at_budget` (e.g. `v_suff_at_budget`), the value after `budget` decoder epochs; the
convergence indicator `<term>_last_gain` is the bits gained between the last two budgets.
`note` carries the text beside a value: the NC path; for 𝒱-information the protocol, each
decoder's epochs and stop reason, which decoders had stopped before a budget (their value is
carried to it), and any error; on `train_step_loss` the reason training stopped (empty before
the last epoch).

`identical_layers(experiment_folder)` says which layers of each trial are the same
representation (f₋'s penultimate features are h³ flattened), for the figures to draw once.

The source is each trial's newest checkpoint (the history of `record`, written by the
trainable and read back as `schema.EpochRecord`s), not Tune's result.json, which can lose
epochs when a trial is restarted. This module imports neither Ray nor torch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs

from raycompress import record, schema, storage
from raycompress.record import TRIAL_ID, DamagedFileError
from raycompress.storage import Folder, Remote

COLUMNS = list(schema.COLUMNS)
READERS = 16  # threads reading trials' files at once: a few requests each, mostly waiting
INCOMPLETE = "incomplete"  # frame.attrs[INCOMPLETE]: trial folder → what could not be read
log = logging.getLogger(__name__)


def _trial_id(trial: Folder) -> str:
    result = trial / record.RESULT_FILE
    first = result.read_text().split("\n", 1)[0] if result.exists() else ""
    try:
        return json.loads(first)["trial_id"] if first.strip() else trial.name
    except (json.JSONDecodeError, KeyError, TypeError):  # a damaged result.json: its folder
        return trial.name


def trial_folders(path: Folder) -> list[Folder]:
    """The trial folders of an experiment folder (each holds Tune's `record.PARAMS_FILE`)."""
    return sorted(p for p in path.iterdir() if (p / record.PARAMS_FILE).exists())


@dataclass(frozen=True)
class TrialFiles:
    """A trial folder as one listing of the experiment found it: its checkpoints that hold
    rows (`record.ROWS_FILE`) or only a history (written before the rows were), newest first."""

    folder: Folder
    checkpoints: tuple[tuple[str, bool], ...]  # (name, holds ROWS_FILE)

    @property
    def newest(self) -> str | None:
        return self.checkpoints[0][0] if self.checkpoints else None


def scan(experiment: Folder) -> list[TrialFiles]:
    """Every trial of an experiment folder from one recursive listing (object storage: one
    listing request per thousand files, whatever the number of trials)."""
    filesystem, base = storage.arrow(experiment)
    infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    files: dict[str, set[str]] = {}  # trial folder → its files below it, relative
    for info in infos:
        if info.type != fs.FileType.File:
            continue
        parts = info.path[len(base) :].strip("/").split("/")
        if len(parts) >= 2:
            files.setdefault(parts[0], set()).add("/".join(parts[1:]))
    trials = []
    for name in sorted(n for n, held in files.items() if record.PARAMS_FILE in held):
        held = files[name]
        saved = sorted(
            {f.split("/")[0] for f in held if f.startswith("checkpoint_") and "/" in f},
            reverse=True,
        )
        checkpoints = tuple(
            (c, f"{c}/{record.ROWS_FILE}" in held)
            for c in saved
            if f"{c}/{record.ROWS_FILE}" in held or f"{c}/{record.HISTORY_FILE}" in held
        )
        trials.append(TrialFiles(experiment / name, checkpoints))
    return trials


@dataclass(frozen=True)
class Selection:
    """The rows asked for: the values allowed in each column (None: any). `layers` may hold
    None, the whole-network rows (loss, accuracy, …), and `families` None, the rows of no decoder
    family (all but 𝒱-information's); `where` holds identity columns (dataset,
    model, a swept axis) and their allowed values, as the rows files hold them (JSON text).

    Rows are chosen by their dictionary codes (each file's text columns are dictionary-encoded:
    a value is compared once per file, not once per row), trials by their identity, and row
    groups of the consolidated file by their statistics, before they are read."""

    metrics: frozenset[str] | None = None
    layers: frozenset[int | None] | None = None
    splits: frozenset[str] | None = None
    trials: frozenset[str] | None = None
    families: frozenset[str | None] | None = None
    where: tuple[tuple[str, frozenset[str]], ...] = ()

    @classmethod
    def of(
        cls,
        metrics: Iterable[str] | None = None,
        layers: Iterable[int | None] | None = None,
        splits: Iterable[str] | None = None,
        trials: Iterable[str] | None = None,
        where: Mapping[str, Iterable[Any]] | None = None,
        families: Iterable[str | None] | None = None,
    ) -> Selection:
        def chosen(values: Iterable | None) -> frozenset | None:
            return None if values is None else frozenset(values)

        texts = tuple(
            (name, frozenset(record.identity_text(name, v) for v in values))
            for name, values in (where or {}).items()
        )
        return cls(
            chosen(metrics), chosen(layers), chosen(splits), chosen(trials), chosen(families),
            texts,
        )  # fmt: skip

    @property
    def row_columns(self) -> list[str]:
        """The row columns a choice of rows needs."""
        asked = {"metric": self.metrics, "layer": self.layers, "split": self.splits,
                 schema.FAMILY: self.families}  # fmt: skip
        return [name for name, values in asked.items() if values is not None]

    def keeps(self, texts: Mapping[str, str]) -> bool:
        """Whether the trial of this identity (column → text) is asked for."""
        if self.trials is not None and texts.get(TRIAL_ID) not in self.trials:
            return False
        return all(texts.get(name) in allowed for name, allowed in self.where)

    def mask(self, table: pa.Table | pa.RecordBatch) -> np.ndarray | None:
        """Which rows of `table` are asked for (None: all)."""
        keep = None
        for name, allowed in (("metric", self.metrics), ("split", self.splits)):
            if allowed is not None:
                chosen = _codes_in(table.column(name), pa.array(sorted(allowed), pa.string()))
                keep = chosen if keep is None else keep & chosen
        if self.families is not None:
            named = pa.array(sorted(f for f in self.families if f is not None), pa.string())
            family = table.column(schema.FAMILY)
            chosen = _codes_in(family, named)
            if None in self.families:
                chosen |= family.is_null().to_numpy(zero_copy_only=False)
            keep = chosen if keep is None else keep & chosen
        if self.layers is not None:
            layer = table.column("layer")
            numbered = [v for v in self.layers if v is not None]
            chosen = np.isin(layer.fill_null(-1).to_numpy(), numbered)
            if None in self.layers:
                chosen |= layer.is_null().to_numpy(zero_copy_only=False)
            keep = chosen if keep is None else keep & chosen
        return keep

    def row_groups(self, metadata: pq.FileMetaData) -> list[int]:
        """The row groups of a Parquet file whose statistics do not rule out every row."""
        names = metadata.schema.names
        bounds = {"metric": self.metrics, "split": self.splits, "layer": self.layers}
        out = []
        for group in range(metadata.num_row_groups):
            kept = True
            for name, allowed in bounds.items():
                stats = metadata.row_group(group).column(names.index(name)).statistics
                if allowed is None or stats is None or not stats.has_min_max:
                    continue
                values = [v for v in allowed if v is not None]
                nulls = None in allowed and stats.null_count > 0
                kept &= nulls or any(stats.min <= v <= stats.max for v in values)
            if kept:
                out.append(group)
        return out


def _codes_in(column: pa.Array | pa.ChunkedArray, allowed: pa.Array) -> np.ndarray:
    """Which rows of a dictionary-encoded column hold one of `allowed`: each chunk's
    dictionary looked up once, its rows by their codes."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [  # a null row: the last entry, False
        np.append(pc.is_in(chunk.dictionary, value_set=allowed).to_numpy(zero_copy_only=False),
                  False)[chunk.indices.fill_null(-1).to_numpy()]
        for chunk in chunks
    ]  # fmt: skip
    return np.concatenate(parts) if parts else np.zeros(0, bool)


def _chosen(table: pa.Table, selection: Selection, wanted: list[str]) -> pa.Table:
    """The rows of `table` that `selection` asks for, in the `wanted` columns."""
    keep = selection.mask(table)
    return (table if keep is None else table.filter(pa.array(keep))).select(wanted)


def load(
    path: str | Path | Remote,
    *,
    metrics: Iterable[str] | None = None,
    layers: Iterable[int | None] | None = None,
    splits: Iterable[str] | None = None,
    trials: Iterable[str] | None = None,
    where: Mapping[str, Iterable[Any]] | None = None,
    families: Iterable[str | None] | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """The tidy frame of an experiment folder (the folder a sweep wrote its trials into): a
    local path or a URI of object storage (`storage.folder`).

    Only the rows asked for are read (`Selection`: metrics, layers, splits, trial ids, values
    of identity columns, decoder families) and only the `columns` asked for (None: all). The
    experiment's consolidated rows (`record.DATASET_FILE`, see `consolidate`) are read for
    every trial they hold at its newest checkpoint; any other trial (still running, or newer
    than the consolidation) from its own newest checkpoint's rows, in parallel. A trial whose first
    epoch has not finished yet contributes no rows.

    A damaged file costs one trial at most: a trial whose newest checkpoint cannot be read is
    read from the one before, or skipped, with one warning line naming the file; the frame's
    `attrs["incomplete"]` maps each such trial folder to what happened. Nothing is rewritten.
    A folder that holds no trial (an empty folder, or the storage root above the experiments)
    is a one-line FileNotFoundError naming what to pass instead.
    """
    experiment = storage.folder(path)
    if not experiment.is_dir():
        raise FileNotFoundError(f"no results folder at {experiment}")
    found = scan(experiment)
    if not found:
        _no_trials(experiment)
    asked = Asked(Selection.of(metrics, layers, splits, trials, where, families), columns)
    problems: dict[str, str] = {}
    try:
        frame = _read(experiment, found, asked, problems, consolidated=True)
    except DamagedFileError as err:  # the consolidated file, damaged past its footer
        _unread_consolidation(err, problems)
        frame = _read(experiment, found, asked, problems, consolidated=False)
    frame.attrs[INCOMPLETE] = problems
    return frame


@dataclass(frozen=True)
class Asked:
    """What a load reads: the rows `selection` asks for, in the `columns` (None: all)."""

    selection: Selection
    columns: list[str] | None

    @property
    def wanted(self) -> list[str]:
        """The row columns asked for."""
        return [c for c in COLUMNS if self.columns is None or c in self.columns]

    @property
    def read(self) -> list[str]:
        """The row columns to read: those asked for and those the selection needs."""
        needed = set(self.wanted) | set(self.selection.row_columns)
        return [c for c in COLUMNS if c in needed]


def _read(
    experiment: Folder,
    found: list[TrialFiles],
    asked: Asked,
    problems: dict[str, str],
    consolidated: bool,
) -> pd.DataFrame:
    """The frame of the trials `found`: from the consolidated file where it is current (and
    `consolidated`), from each other trial's own files in parallel."""
    piece, current = (
        _consolidated(experiment, found, asked, problems) if consolidated else (None, set())
    )
    rest = [trial for trial in found if trial.folder.name not in current]
    identity = _legacy_identity(experiment, problems) if any(map(_legacy, rest)) else []

    def read(trial: TrialFiles) -> Piece | None:
        return _trial_rows(trial, asked, identity, problems)[0]

    with ThreadPoolExecutor(min(READERS, max(1, len(rest)))) as pool:
        pieces = [p for p in [piece, *pool.map(read, rest)] if p is not None]
    del piece  # `pieces` alone holds the rows: `_frame` lets each go once copied
    if not pieces and not identity:  # nothing finished: the columns a frame of them will have
        identity = _legacy_identity(experiment, problems)
    return _frame(pieces, asked, identity)


@dataclass
class Piece:
    """Rows read from one file: `rows` of them in `batches` (the row columns asked for, and a
    consolidated file's TRIAL_ID); each row's trial is one of `trials` (identity column → its
    text): the only one, or the one its TRIAL_ID names."""

    rows: int
    batches: Iterator[pa.RecordBatch]
    trials: list[dict[str, str]]

    @classmethod
    def of(cls, table: pa.Table, trials: list[dict[str, str]]) -> Piece:
        return cls(table.num_rows, iter(table.to_batches()), trials)


def _no_trials(experiment: Folder) -> None:
    experiments = sorted(p.name for p in experiment.iterdir() if p.is_dir() and trial_folders(p))
    if experiments:
        raise FileNotFoundError(
            f"{experiment} is a storage root, not an experiment folder: pass one of its "
            f"experiments, {', '.join(str(experiment / e) for e in experiments)}"
        )
    raise FileNotFoundError(
        f"{experiment} holds no trial folders: pass the experiment folder a sweep wrote "
        "(STORAGE_PATH/NAME)"
    )


def _legacy(trial: TrialFiles) -> bool:
    return any(not rows for _, rows in trial.checkpoints)


def _legacy_identity(experiment: Folder, problems: dict[str, str]) -> list[str]:
    """The identity settings of trials written before the rows were: dataset, model and the
    swept axes that the sweep's description names (without it: dataset and model)."""
    try:
        axes = record.read_description(experiment).get("axes", [])
    except DamagedFileError as err:
        log.warning("%s: its trials' swept axes are not known", err)
        problems[record.SWEEP_FILE] = str(err)
        axes = []
    return record.identity_settings(axes)


def _trial_rows(
    trial: TrialFiles, asked: Asked, identity: list[str], problems: dict[str, str]
) -> tuple[Piece | None, str | None]:
    """A trial's rows from its newest readable checkpoint, and that checkpoint's name; a
    damaged checkpoint is passed over with one warning line."""
    damaged = []
    for checkpoint, has_rows in trial.checkpoints:
        folder = trial.folder / checkpoint
        try:
            table = None
            if has_rows:
                with contextlib.suppress(record.OlderRowsError):  # then read as older ones are
                    table = record.read_table(folder / record.ROWS_FILE, asked.read)
            if table is None:
                table = _history_rows(trial, folder, identity, asked)
            texts = json.loads(table.schema.metadata[record.IDENTITY])
            if not asked.selection.keeps(texts):  # a trial not asked for: none of its rows
                table = table.slice(0, 0)
            table = _chosen(table, asked.selection, asked.wanted)
        except DamagedFileError as err:
            damaged.append(str(err))
            continue
        if damaged:
            said = f"{'; '.join(damaged)}: read from {checkpoint}, its epochs before the damage"
            log.warning("%s", said)
            problems[trial.folder.name] = said
        return Piece.of(table, [texts]), checkpoint
    if damaged:
        said = f"{'; '.join(damaged)}: trial skipped, no checkpoint of it can be read"
        log.warning("%s", said)
        problems[trial.folder.name] = said
    return None, None


def _history_rows(
    trial: TrialFiles, checkpoint: Folder, identity: list[str], asked: Asked
) -> pa.Table:
    """The rows of a checkpoint written before the rows file, from its history and the
    trial's settings, in the columns a rows file would give (`Asked.read`)."""
    params = record.read_params(trial.folder)
    ids = {TRIAL_ID: _trial_id(trial.folder), **{key: params.get(key) for key in identity}}
    return record.rows_table(record.read_history(checkpoint), ids).select(asked.read)


MANIFEST = b"raycompress.trials"  # the consolidated file's: trial folder → checkpoint, identity


def _consolidated(
    experiment: Folder, found: list[TrialFiles], asked: Asked, problems: dict[str, str]
) -> tuple[Piece | None, set[str]]:
    """The consolidated rows asked for of the trials whose newest checkpoint they hold, and the
    names of those trial folders; (None, ∅) without a consolidation, or with a damaged one
    (warned). All of it is streamed in batches; a part is read whole (only its row groups)."""
    file = experiment / record.DATASET_FILE
    if not file.exists():
        return None, set()
    try:
        rows_file = record.open_rows(file)
        manifest = _manifest(rows_file, file)
    except DamagedFileError as err:
        _unread_consolidation(err, problems)
        return None, set()
    if set(asked.read) - set(rows_file.schema_arrow.names):  # older: each trial's own files
        return None, set()
    newest = {trial.folder.name: trial.newest for trial in found}
    current = [name for name, (checkpoint, _) in manifest.items() if newest.get(name) == checkpoint]
    chosen = [manifest[name][1] for name in current if asked.selection.keeps(manifest[name][1])]
    if len(chosen) == len(manifest) and not asked.selection.row_columns:
        columns = [TRIAL_ID, *asked.wanted]
        batches = _streamed(rows_file, file, columns)
        return Piece(rows_file.metadata.num_rows, batches, chosen), set(current)
    groups = asked.selection.row_groups(rows_file.metadata)
    try:
        table = rows_file.read_row_groups(groups, columns=[TRIAL_ID, *asked.read])
    except (pa.ArrowInvalid, OSError) as err:
        raise record.damaged(file, err) from None
    ids = pa.array([t[TRIAL_ID] for t in chosen], pa.string())
    keep = _codes_in(table.column(TRIAL_ID), ids)
    rows = asked.selection.mask(table)
    table = table.filter(pa.array(keep if rows is None else keep & rows))
    return Piece.of(table.select([TRIAL_ID, *asked.wanted]), chosen), set(current)


def _streamed(rows_file: pq.ParquetFile, file: Folder, columns: list[str]) -> Iterator:
    """A rows file's batches of 2¹⁶ rows: what is read at once stays a few MB."""
    try:
        yield from rows_file.iter_batches(batch_size=1 << 16, columns=columns)
    except (pa.ArrowInvalid, OSError) as err:
        raise record.damaged(file, err) from None


def _unread_consolidation(err: DamagedFileError, problems: dict[str, str]) -> None:
    said = f"{err}: read from each trial's own files instead"
    log.warning("%s", said)
    problems[record.DATASET_FILE] = said


def _manifest(rows_file: pq.ParquetFile, file: Folder) -> dict[str, tuple[str, dict[str, str]]]:
    try:
        found = json.loads((rows_file.schema_arrow.metadata or {})[MANIFEST])
        return {name: (checkpoint, texts) for name, (checkpoint, texts) in found.items()}
    except (KeyError, ValueError, TypeError) as err:
        raise record.damaged(file, err) from None


def _frame(pieces: list[Piece], asked: Asked, identity: list[str]) -> pd.DataFrame:
    """One pandas frame of the pieces' rows: identity columns, split, metric and note
    categorical (identity values decoded from their JSON text), layer and budget Int64,
    values float64; without pieces, an empty frame of the `identity` columns and the rows'.

    Every column is allocated once at its final length and filled batch by batch, each batch
    let go once copied: a read holds little beside the frame it becomes."""
    trials = [t for piece in pieces for t in piece.trials]
    names = list(dict.fromkeys(k for t in trials for k in t)) or [TRIAL_ID, *identity]
    names = [n for n in names if asked.columns is None or n in asked.columns]
    total = sum(piece.rows for piece in pieces)
    filled = {name: _Column(name, total) for name in asked.wanted}
    row_trial = np.zeros(total, np.int32)
    at = offset = 0
    for piece in _taken(pieces):
        chosen = pa.array([t[TRIAL_ID] for t in piece.trials], pa.string())
        for batch in piece.batches:
            n = batch.num_rows
            if len(piece.trials) == 1:
                row_trial[at : at + n] = offset
            else:
                ids = batch.column(TRIAL_ID)
                # the dictionary names every trial of the file, the rows only current ones
                found = pc.index_in(ids.dictionary, value_set=chosen).fill_null(-1)
                lookup = found.to_numpy().astype(np.int32) + offset
                row_trial[at : at + n] = lookup[ids.indices.to_numpy()]
            for name, column in filled.items():
                column.fill(batch.column(name), at)
            at += n
        offset += len(piece.trials)
    frame = pd.DataFrame({name: column.done() for name, column in filled.items()}, copy=False)
    for position, name in enumerate(names):
        frame.insert(position, name, _identity_column(name, trials, row_trial))
    return frame


def _taken(pieces: list[Piece]) -> Iterator[Piece]:
    """The pieces, each removed from the list as it is handed out (its rows let go after)."""
    pieces.reverse()
    while pieces:
        yield pieces.pop()


class _Column:
    """A row column of the frame being filled: numbers in place, text as codes into the
    categories met so far."""

    def __init__(self, name: str, rows: int) -> None:
        kind = record.COLUMN_TYPES[name]
        self.text = kind == pa.string()
        self.flag = kind == pa.bool_()
        self.nullable = name in ("layer", schema.BUDGET) or self.flag
        dtype = np.int32 if self.text else np.int64 if self.nullable else kind.to_pandas_dtype()
        self.values = np.zeros(rows, bool if self.flag else dtype)
        self.mask = np.zeros(rows, bool) if self.nullable else None
        self.codes: dict[str, int] = {}

    def fill(self, array: pa.Array, at: int) -> None:
        n = len(array)
        if self.text:  # dictionary-encoded: its dictionary mapped onto the categories so far
            texts = array.dictionary.to_pylist()
            codes = [self.codes.setdefault(t, len(self.codes)) for t in texts] + [-1]
            indices = array.indices.fill_null(-1).to_numpy()  # a null: the last code, −1
            self.values[at : at + n] = np.array(codes, np.int32)[indices]
            return
        if self.nullable:
            self.mask[at : at + n] = array.is_null().to_numpy(zero_copy_only=False)
            array = array.fill_null(False if self.flag else 0)
        self.values[at : at + n] = array.to_numpy(zero_copy_only=False)

    def done(self) -> pd.api.extensions.ExtensionArray | np.ndarray:
        if self.text:
            categories = pd.Index(list(self.codes), dtype=object)
            return pd.Categorical.from_codes(self.values, dtype=pd.CategoricalDtype(categories))
        if self.flag:  # pandas' nullable boolean: <NA> where nothing was judged
            return pd.arrays.BooleanArray(self.values, self.mask)
        if self.nullable:  # Int64, as the frame has always had them
            return pd.arrays.IntegerArray(self.values, self.mask)
        return self.values


def _identity_column(
    name: str, trials: list[dict[str, str]], row_trial: np.ndarray
) -> pd.Categorical:
    """The identity column `name` of every row, from each row's trial: categorical, its
    categories the decoded values (a list becomes a tuple: one hashable value a trial groups
    by); a setting a trial lacks or left unset (null) is missing."""
    texts = [t.get(name) for t in trials]
    known = list(dict.fromkeys(t for t in texts if t is not None and t != "null"))
    code = {text: i for i, text in enumerate(known)}
    # the codes in the narrowest type from the start: a column of them is a byte or two a row
    narrow = np.int8 if len(known) < 2**7 else np.int16 if len(known) < 2**15 else np.int32
    per_trial = np.array([code.get(t, -1) for t in texts], dtype=narrow)
    values = known if name == TRIAL_ID else [json.loads(t) for t in known]
    categories = pd.Index(
        [tuple(v) if isinstance(v, list) else v for v in values], tupleize_cols=False
    )
    codes = per_trial[row_trial] if len(per_trial) else np.zeros(len(row_trial), narrow)
    if not categories.is_unique:  # 1 and 1.0, decoded alike
        return pd.Categorical(categories.take(codes).where(codes >= 0))
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories))


def consolidate(path: str | Path | Remote) -> Folder:
    """Every trial's rows at its newest readable checkpoint, written atomically into one
    Parquet file in the experiment folder (`record.DATASET_FILE`), sorted by metric, layer
    and split so that a selection reads only the row groups that hold it. Its metadata names
    the checkpoint each trial's rows came from, and the trial's identity: `load` reads a
    trial from it only while that is still the trial's newest. Idempotent; damaged trials
    stay out (warned)."""
    experiment = storage.folder(path)
    found = scan(experiment)
    if not found:
        _no_trials(experiment)
    problems: dict[str, str] = {}
    identity = _legacy_identity(experiment, problems) if any(map(_legacy, found)) else []

    def read(trial: TrialFiles) -> tuple[Piece | None, str | None]:
        return _trial_rows(trial, Asked(Selection(), None), identity, problems)

    with ThreadPoolExecutor(min(READERS, len(found))) as pool:
        read_rows = list(pool.map(read, found))
    manifest, tables = {}, []
    for trial, (piece, checkpoint) in zip(found, read_rows, strict=True):
        if piece is not None and piece.rows:
            texts = piece.trials[0]
            manifest[trial.folder.name] = (checkpoint, texts)
            ids = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(piece.rows, np.int32)), pa.array([texts[TRIAL_ID]])
            )
            table = pa.Table.from_batches(list(piece.batches))
            tables.append(table.add_column(0, TRIAL_ID, ids))
    merged = pa.concat_tables(tables, promote_options="permissive").unify_dictionaries()
    del tables, read_rows
    merged = merged.take(_sort_order(merged, ("metric", "layer", "split", TRIAL_ID, "epoch")))
    metadata = {MANIFEST: json.dumps(manifest).encode()}  # trials in folder order
    merged = merged.replace_schema_metadata(metadata)
    target = experiment / record.DATASET_FILE
    # row groups of 2¹⁷ rows: a selection of one metric at one layer reads a few of them
    storage.write_atomically(target, record.table_bytes(merged, row_group_size=1 << 17))
    return target


def trial_models(path: str | Path | Remote) -> pd.DataFrame:
    """What network each trial of an experiment folder ran: one row per trial folder with its
    stage names, batch-norm regime and adaptation (`record.MODEL_FILE`; empty before the
    trial's first epoch ends)."""
    rows = []
    for trial in trial_folders(storage.folder(path)):
        model = record.newest_model(trial)
        stages = model.get("stages")
        rows.append({
            "trial folder": trial.name, TRIAL_ID: _trial_id(trial),
            "stages": " → ".join(stages) if stages else "",
            "batch norm": model.get("batch_norm", ""), "adaptation": model.get("adaptation", ""),
        })  # fmt: skip
    return pd.DataFrame(rows)


SAME_AS = "same_as"  # the key in record.MODEL_FILE that `models.describe` writes


def identical_layers(path: str | Path | Remote) -> pd.DataFrame:
    """The layers of each trial whose representation is an earlier layer's (the blocks between
    them only reshape, e.g. f₋'s penultimate features are h³ flattened; `models.describe`
    records them): rows trial_id, layer, same_as (the earliest layer it equals). No rows for a
    network without such layers, nor for a trial recorded before they were."""
    rows = [
        (_trial_id(trial), int(layer), int(earlier))
        for trial in trial_folders(storage.folder(path))
        for layer, earlier in record.newest_model(trial).get(SAME_AS, {}).items()
    ]
    frame = pd.DataFrame(rows, columns=[TRIAL_ID, "layer", SAME_AS])
    return frame.astype({"layer": "Int64", SAME_AS: "Int64"})


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The configuration columns of a tidy frame: dataset, model and each swept axis."""
    return [c for c in frame.columns if c != TRIAL_ID and c not in COLUMNS]


def _sort_order(table: pa.Table, keys: tuple[str, ...]) -> pa.Array:
    """The row order sorting `table` by `keys` (Arrow sorts no dictionary column: its text)."""
    decoded = {
        key: pc.cast(table[key], pa.string())
        if pa.types.is_dictionary(table.schema.field(key).type)
        else table[key]
        for key in keys
    }
    return pc.sort_indices(pa.table(decoded), sort_keys=[(key, "ascending") for key in keys])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m raycompress.results",
        description="Consolidate an experiment's trials into one Parquet file, which `load` "
        "then reads in one pass (a sweep does this when it ends).",
    )
    p.add_argument("command", choices=["consolidate"])
    p.add_argument("experiment", help="the experiment folder (a local path or a URI)")
    args = p.parse_args(argv)
    try:
        target = consolidate(args.experiment)
    except (FileNotFoundError, DamagedFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"consolidated into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
