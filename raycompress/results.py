"""Read a sweep's results into one tidy pandas frame — without Ray, even while it runs.

    load(experiment_folder) -> DataFrame with columns
        trial_id, dataset, model, <each swept axis>, epoch, split, layer, metric, budget,
        value, note

One row per (trial, epoch, split, layer, metric, budget). `split` is "train" or "test"; `layer` is
<NA> for whole-network metrics (loss, accuracy, train_step_loss), l = 1..L for neural collapse
(L: the penultimate features) and l = 0..L−1 for 𝒱-information. Metric names: `loss`,
`accuracy`, `train_step_loss`, `nc_trace` and `nc_*` (the other neural-collapse statistics),
`v_suff`, `v_min` and the other 𝒱-information quantities under their own names (bits, epochs
used, …). `budget` is <NA> except on the points of a 𝒱-information term's budget curve: metric
`<term>_at_budget` (e.g. `v_suff_at_budget`), the value after `budget` decoder epochs; the
convergence indicator `<term>_last_gain` is the bits gained between the last two budgets.
`note` carries the text beside a value: the NC path; for 𝒱-information the
protocol, each decoder's epochs and stop reason, which decoders had stopped before a budget
(their value is carried to it), and any error (`vinfo_notes`); on
`train_step_loss` the reason training stopped (empty before the last epoch).

The source is each trial's newest checkpoint (the history `record` defines, written by the
trainable), not Tune's result.json, which can lose epochs when a trial is restarted. This
module imports neither Ray nor torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from raycompress import record

TRIAL_ID = "trial_id"
COLUMNS = ["epoch", "split", "layer", "metric", record.BUDGET, "value", "note"]
_NC_NAMES = {"nc_trace": "nc_trace", "rank": "nc_rank", "eig_tol": "nc_eig_tol"}
_NOT_VALUES = ("num_samples", "dim")  # sizes recorded with the NC statistics, not statistics


def _numeric(value: Any) -> float | None:
    if isinstance(value, (bool, int, float)):
        return float(value)
    return None


def epoch_rows(row: dict[str, Any]) -> list[tuple]:
    """One epoch of a trial's history (`record.epoch_row`) as tidy rows (see COLUMNS)."""
    epoch = row["epoch"]
    stop = row["stop_reason"] or ""
    na = pd.NA
    out: list[tuple] = [(epoch, "train", na, "train_step_loss", na, row["train_step_loss"], stop)]
    for split, report in row["splits"].items():
        out += [(epoch, split, na, m, na, report[m], "") for m in ("loss", "accuracy")]
        for layer, stats in report["layers"].items():
            for key, value in stats.items():
                number = _numeric(value)
                if number is not None and key not in _NOT_VALUES:
                    name = _NC_NAMES.get(key, f"nc_{key}")
                    out.append((epoch, split, int(layer), name, na, number, stats["path"]))
    for split, layers in row["vinfo"].items():
        for layer, values in layers.items():
            notes = vinfo_notes(values)
            for key, value in values.items():
                number = _numeric(value)
                if number is None:
                    continue
                point = record.split_budget_key(key)
                metric, budget = (record.curve_metric(point[0]), point[1]) if point else (key, na)
                out.append((epoch, split, int(layer), metric, budget, number, notes.get(key, "")))
    return out


def vinfo_notes(values: dict[str, Any]) -> dict[str, str]:
    """The text beside each number of one (layer, split) 𝒱-information measurement.

    Each term's values (raw and clipped, and minimality's per-digit values) carry its protocol
    (which split fitted, which scored) with the epochs each decoder ran and why it stopped; each
    `<head>_epochs` row carries its decoder's stop reason ("loss_threshold" or "plateau":
    converged; "max_epochs": the cap; "diverged"). A failure's message follows "error:" on
    every row of the measurement.
    """
    error = f"error: {values[record.ERROR]}" if values.get(record.ERROR) else ""
    notes = dict.fromkeys(values, error)
    for term in record.TERMS:
        if term.protocol not in values:
            continue
        heads = term.heads(values)
        runs = ", ".join(
            f"{values[record.epochs_key(h)]} ({values[record.stop_key(h)]})" for h in heads
        )
        text = _joined(f"{values[term.protocol]}; decoder epochs (stop): {runs}", error)
        notes |= dict.fromkeys(term.keys(values), text)
        notes |= {record.epochs_key(h): _joined(values[record.stop_key(h)], error) for h in heads}
        for key in values:
            point = record.split_budget_key(key)
            if point and point[0] == term.value:
                stopped = [f"{h} at {values[record.epochs_key(h)]}" for h in heads
                           if values[record.epochs_key(h)] < point[1]]  # fmt: skip
                carried = f"carried from before the budget: {', '.join(stopped)}" if stopped else ""
                notes[key] = _joined(carried, error)
    return notes


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _trial_id(trial: Path) -> str:
    result = trial / "result.json"
    if result.exists():
        with result.open() as f:
            first = f.readline()
        if first.strip():
            return json.loads(first)["trial_id"]
    return trial.name


def trial_folders(path: Path) -> list[Path]:
    """The trial folders of an experiment folder (each holds Tune's params.json)."""
    return sorted(p for p in path.iterdir() if (p / "params.json").exists())


def load(path: str | Path) -> pd.DataFrame:
    """The tidy frame of an experiment folder (the folder a sweep wrote its trials into).

    A trial whose first epoch has not finished yet contributes no rows. A folder that holds no
    trial (an empty folder, or the storage root above the experiments) is a one-line
    FileNotFoundError naming what to pass instead.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no results folder at {path}")
    trials = trial_folders(path)
    if not trials:
        experiments = sorted(p.name for p in path.iterdir() if p.is_dir() and trial_folders(p))
        if experiments:
            raise FileNotFoundError(
                f"{path} is a storage root, not an experiment folder: pass one of its "
                f"experiments, {', '.join(str(path / e) for e in experiments)}"
            )
        raise FileNotFoundError(
            f"{path} holds no trial folders: pass the experiment folder a sweep wrote "
            "(STORAGE_PATH/NAME)"
        )
    axes = record.read_description(path).get("axes", [])
    keys = ["dataset", "model", *(a for a in axes if a not in ("dataset", "model"))]
    frames = []
    for trial in trials:
        params = json.loads((trial / "params.json").read_text())
        rows = [r for epoch in record.newest_history(trial) for r in epoch_rows(epoch)]
        frame = pd.DataFrame(rows, columns=COLUMNS)
        frame.insert(0, TRIAL_ID, _trial_id(trial))
        for i, key in enumerate(keys):
            frame.insert(1 + i, key, params.get(key))
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["layer"] = out["layer"].astype("Int64")
    out[record.BUDGET] = out[record.BUDGET].astype("Int64")
    out["value"] = out["value"].astype(float)
    return out


def trial_models(path: str | Path) -> pd.DataFrame:
    """What network each trial of an experiment folder ran: one row per trial folder with its
    stage names, batch-norm regime and adaptation (`record.MODEL_FILE`; empty before the
    trial's first epoch ends)."""
    rows = []
    for trial in trial_folders(Path(path)):
        model = record.newest_model(trial)
        stages = model.get("stages")
        rows.append({
            "trial folder": trial.name, TRIAL_ID: _trial_id(trial),
            "stages": " → ".join(stages) if stages else "",
            "batch norm": model.get("batch_norm", ""), "adaptation": model.get("adaptation", ""),
        })  # fmt: skip
    return pd.DataFrame(rows)


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The configuration columns of a tidy frame: dataset, model and each swept axis."""
    return [c for c in frame.columns if c != TRIAL_ID and c not in COLUMNS]
