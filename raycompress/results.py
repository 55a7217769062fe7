"""Read a sweep's results into one tidy pandas frame — without Ray, even while it runs.

    load(experiment_folder) -> DataFrame with columns
        trial_id, dataset, model, <each swept axis>, epoch, split, layer, metric, budget,
        value, note

One row per (trial, epoch, split, layer, metric, budget). `split` is "train" or "test";
`layer` is <NA> for whole-network metrics (loss, accuracy, train_step_loss), l = 1..L for
neural collapse (L: the penultimate features) and l = 0..L−1 for 𝒱-information. Metric names
(`schema` owns them): `loss`, `accuracy`, `train_step_loss`, the neural-collapse statistics
(`schema.NC`: `nc_trace`, …), `v_suff`, `v_min` and the other 𝒱-information quantities
(`schema.Quantity`) with their companions (bits, epochs used, …; `schema.Term.rows`).
`budget` is <NA> except on the points of a 𝒱-information term's budget curve: metric
`<term>_at_budget` (e.g. `v_suff_at_budget`), the value after `budget` decoder epochs; the
convergence indicator `<term>_last_gain` is the bits gained between the last two budgets.
`note` carries the text beside a value: the NC path; for 𝒱-information the protocol, each
decoder's epochs and stop reason, which decoders had stopped before a budget (their value is
carried to it), and any error; on `train_step_loss` the reason training stopped (empty before
the last epoch).

The source is each trial's newest checkpoint (the history of `record`, written by the
trainable and read back as `schema.EpochRecord`s), not Tune's result.json, which can lose
epochs when a trial is restarted. This module imports neither Ray nor torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from raycompress import record, schema, storage
from raycompress.storage import Folder, Remote

TRIAL_ID = "trial_id"
COLUMNS = list(schema.COLUMNS)


def _trial_id(trial: Folder) -> str:
    result = trial / record.RESULT_FILE
    first = result.read_text().split("\n", 1)[0] if result.exists() else ""
    return json.loads(first)["trial_id"] if first.strip() else trial.name


def trial_folders(path: Folder) -> list[Folder]:
    """The trial folders of an experiment folder (each holds Tune's `record.PARAMS_FILE`)."""
    return sorted(p for p in path.iterdir() if (p / record.PARAMS_FILE).exists())


def load(path: str | Path | Remote) -> pd.DataFrame:
    """The tidy frame of an experiment folder (the folder a sweep wrote its trials into): a
    local path or a URI of object storage (`storage.folder`).

    A trial whose first epoch has not finished yet contributes no rows. A folder that holds no
    trial (an empty folder, or the storage root above the experiments) is a one-line
    FileNotFoundError naming what to pass instead.
    """
    path = storage.folder(path)
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
        params = record.read_params(trial)
        rows = [r for epoch in record.newest_history(trial) for r in epoch.rows()]
        frame = pd.DataFrame(rows, columns=COLUMNS)
        frame.insert(0, TRIAL_ID, _trial_id(trial))
        for i, key in enumerate(keys):
            value = params.get(key)
            # a list-valued setting (widths) as a tuple: one hashable value a trial groups by
            frame.insert(
                1 + i, key, [tuple(value) if isinstance(value, list) else value] * len(frame)
            )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["layer"] = out["layer"].astype("Int64")
    out[schema.BUDGET] = out[schema.BUDGET].astype("Int64")
    out["value"] = out["value"].astype(float)
    return out


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


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The configuration columns of a tidy frame: dataset, model and each swept axis."""
    return [c for c in frame.columns if c != TRIAL_ID and c not in COLUMNS]
