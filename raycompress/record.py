"""A run's record on disk: the files a sweep writes and the readers read, and Tune's summary.

The trainable writes, `results`, the report and the analysis tables read; all of them import
the names below instead of spelling them. What a file holds is typed in `schema`; this module
only puts it on disk and takes it off. No Ray, no torch: readers load results without either.

Files. In each checkpoint of a trial: `STATE_FILE` (the run's torch state), `HISTORY_FILE`,
the authoritative per-epoch history (`schema.EpochRecord.to_json` per epoch; Tune's
result.json can lose epochs when a trial is restarted), and `MODEL_FILE`, what network ran and
where: {"model", "stages" (names of l = 1..L), "batch_norm" (the regime it was measured in),
"adaptation" (how a torchvision model was changed for the data), "device", "device_note" (why
it is not the one asked for), "compute"}. In the experiment folder: `SWEEP_FILE`, the sweep's
description. Tune itself writes `PARAMS_FILE` (a trial's resolved settings) and `RESULT_FILE`
into each trial folder. A folder is local or in object storage (`storage.Folder`): the
readers read both alike.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

from raycompress import __version__
from raycompress.schema import NC, SPLITS, EpochRecord, Quantity
from raycompress.stopping import Stop
from raycompress.storage import Folder

STATE_FILE = "run.pt"
HISTORY_FILE = "history.json"
MODEL_FILE = "model.json"
SWEEP_FILE = "raycompress_sweep.json"
PARAMS_FILE = "params.json"  # Tune's
RESULT_FILE = "result.json"  # Tune's


# --------------------------------------------------------------------------- history files


def write_history(folder: Path, history: list[EpochRecord]) -> None:
    rows = [epoch.to_json() for epoch in history]
    (folder / HISTORY_FILE).write_text(json.dumps(rows, allow_nan=True))


def read_history(folder: Folder) -> list[EpochRecord]:
    rows = json.loads((folder / HISTORY_FILE).read_text())
    return [EpochRecord.from_json(row) for row in rows]


def newest_history(trial: Folder) -> list[EpochRecord]:
    """The history in a trial folder's newest checkpoint; [] before its first epoch ends."""
    checkpoints = sorted(trial.glob(f"checkpoint_*/{HISTORY_FILE}"))
    return read_history(checkpoints[-1].parent) if checkpoints else []


def write_model(folder: Path, description: dict[str, Any]) -> None:
    (folder / MODEL_FILE).write_text(json.dumps(description))


def newest_model(trial: Folder) -> dict[str, Any]:
    """What network a trial ran (see MODEL_FILE); {} before its first epoch ends."""
    checkpoints = sorted(trial.glob(f"checkpoint_*/{MODEL_FILE}"))
    return json.loads(checkpoints[-1].read_text()) if checkpoints else {}


def read_params(trial: Folder) -> dict[str, Any]:
    """A trial's resolved settings, as Tune recorded them."""
    return json.loads((trial / PARAMS_FILE).read_text())


# ------------------------------------------------------------------ Tune's per-epoch summary

EPOCH, STOP_REASON, ERROR = "epoch", "stop_reason", "error"
NC_SUMMARY = (NC.TRACE, NC.WITHIN_TRACE, NC.BETWEEN_TRACE, NC.CDNV, NC.RANK)
VINFO_SUMMARY = (Quantity.SUFFICIENCY, Quantity.MINIMALITY)


def summary_key(split: str, metric: str, layer: int | None = None) -> str:
    """The spelling of a summary value: `split/metric` or `split/metric/lN`."""
    return f"{split}/{metric}" if layer is None else f"{split}/{metric}/l{layer}"


def summary_metrics(record: EpochRecord, depth: int) -> dict[str, float | int | str]:
    """What Tune shows and stores per epoch: the same keys every epoch, NaN where unmeasured."""
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
            result = record.vinfo.get((layer, split))
            for q in VINFO_SUMMARY:
                out[summary_key(split, q, layer)] = result.value(q) if result else math.nan
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
    """The experiment folder's sweep description; {} for a folder written without one."""
    path = folder / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else {}
