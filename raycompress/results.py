"""Read a sweep's results into one tidy pandas frame — without Ray, even while it runs.

    load(experiment_folder) -> DataFrame with columns
        trial_id, dataset, model, <each swept axis>, epoch, split, layer, metric, value, note

One row per (trial, epoch, split, layer, metric). `split` is "train" or "test"; `layer` is
<NA> for whole-network metrics (loss, accuracy, train_step_loss), l = 1..L for neural collapse
(L: the penultimate features) and l = 0..L−1 for 𝒱-information. Metric names: `loss`,
`accuracy`, `train_step_loss`, `nc_trace` and `nc_*` (the other neural-collapse statistics),
`v_suff`, `v_min` and the other 𝒱-information quantities under their own names (bits, epochs
used, …). `note` carries the text beside a value: the NC path; for 𝒱-information the
protocol, each decoder's epochs and stop reason, and any error (`vinfo_notes`); on
`train_step_loss` the reason training stopped (empty before the last epoch).

The source is each trial's newest checkpoint (`history.json`, written by the trainable), not
Tune's result.json, which can lose epochs when a trial is restarted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from raycompress.sweep import SWEEP_FILE

COLUMNS = ["epoch", "split", "layer", "metric", "value", "note"]
_NC_NAMES = {"nc_trace": "nc_trace", "rank": "nc_rank", "eig_tol": "nc_eig_tol"}


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def epoch_rows(row: dict[str, Any]) -> list[tuple]:
    """One epoch of a trial's history as tidy rows (see COLUMNS)."""
    epoch = row["epoch"]
    stop = row["stop_reason"] or ""
    out: list[tuple] = [(epoch, "train", pd.NA, "train_step_loss", row["train_step_loss"], stop)]
    for split, report in row["splits"].items():
        out += [(epoch, split, pd.NA, m, report[m], "") for m in ("loss", "accuracy")]
        for layer, stats in report["layers"].items():
            for key, value in stats.items():
                number = _numeric(value)
                if number is not None and key not in ("num_samples", "dim"):
                    name = _NC_NAMES.get(key, f"nc_{key}")
                    out.append((epoch, split, int(layer), name, number, stats["path"]))
    for split, layers in row["vinfo"].items():
        for layer, values in layers.items():
            notes = vinfo_notes(values)
            for key, value in values.items():
                number = _numeric(value)
                if number is not None and key != "layer":
                    out.append((epoch, split, int(layer), key, number, notes.get(key, "")))
    return out


def vinfo_notes(values: dict[str, Any]) -> dict[str, str]:
    """The text beside each number of one (layer, split) 𝒱-information measurement.

    v_suff, v_min and v_suff_held_out (raw and clipped, and minimality's per-digit values)
    carry their protocol (which split fitted, which scored) with the epochs each decoder ran
    and why it stopped; each `*_epochs` row carries its decoder's stop reason ("loss_threshold"
    or "plateau": converged; "max_epochs": the cap; "diverged"). A failure's message follows
    "error:" on every row of the measurement.
    """
    error = f"error: {values['error']}" if values.get("error") else ""
    notes = {key: error for key in values}
    digits = range(int(values.get("num_digits") or 0))
    terms = [  # (protocol key, value keys, decoder prefixes of <prefix>_epochs / <prefix>_stop)
        ("suff_protocol", ["v_suff", "v_suff_raw"], ["suff"]),
        (
            "min_protocol",
            ["v_min", "v_min_raw", "v_min_mc_mean", "v_min_mc_std"]
            + [f"v_min_digit{j}_raw" for j in digits],
            [f"digit{j}" for j in digits],
        ),
        ("held_out_protocol", ["v_suff_held_out", "v_suff_held_out_raw"], ["held_out"]),
    ]
    for protocol, keys, heads in terms:
        if protocol not in values:
            continue
        runs = ", ".join(f"{values[f'{h}_epochs']} ({values[f'{h}_stop']})" for h in heads)
        text = _joined(f"{values[protocol]}; decoder epochs (stop): {runs}", error)
        notes.update({key: text for key in keys if key in values})
        notes.update({f"{h}_epochs": _joined(values[f"{h}_stop"], error) for h in heads})
    return notes


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _newest_history(trial: Path) -> list[dict[str, Any]]:
    checkpoints = sorted(trial.glob("checkpoint_*/history.json"))
    if not checkpoints:
        return []
    return json.loads(checkpoints[-1].read_text())


def _trial_id(trial: Path) -> str:
    result = trial / "result.json"
    if result.exists():
        with result.open() as f:
            first = f.readline()
        if first.strip():
            return json.loads(first)["trial_id"]
    return trial.name


def load(path: str | Path) -> pd.DataFrame:
    """The tidy frame of an experiment folder (the folder a sweep wrote its trials into)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no results folder at {path}")
    meta_file = path / SWEEP_FILE
    axes = json.loads(meta_file.read_text())["axes"] if meta_file.exists() else []
    frames = []
    for trial in sorted(p for p in path.iterdir() if (p / "params.json").exists()):
        params = json.loads((trial / "params.json").read_text())
        rows = [r for epoch in _newest_history(trial) for r in epoch_rows(epoch)]
        frame = pd.DataFrame(rows, columns=COLUMNS)
        frame.insert(0, "trial_id", _trial_id(trial))
        keys = ["dataset", "model", *(a for a in axes if a not in ("dataset", "model"))]
        for i, key in enumerate(keys):
            frame.insert(1 + i, key, params.get(key))
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["trial_id", "dataset", "model", *COLUMNS])
    out = pd.concat(frames, ignore_index=True)
    out["layer"] = out["layer"].astype("Int64")
    out["value"] = out["value"].astype(float)
    return out
