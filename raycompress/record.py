"""A run's record on disk: the one owner of every name the trainable writes and the readers read.

The trainable writes, `results`, the report and the analysis tables read; all of them import
the names below instead of spelling them. No Ray, no torch: readers load results without
either.

Files. In each checkpoint of a trial: `STATE_FILE` (the run's torch state), `HISTORY_FILE`,
the authoritative per-epoch history (Tune's result.json can lose epochs when a trial is
restarted), and `MODEL_FILE`, what network ran and where: {"model", "stages" (names of
l = 1..L), "batch_norm" (the regime it was measured in), "adaptation" (how a torchvision model
was changed for the data), "device", "device_note" (why it is not the one asked for)}. In
the experiment folder: `SWEEP_FILE`, the sweep's description.

History rows (one per epoch, plain JSON):

    {"epoch": int, "train_step_loss": float (nats), "stop_reason": str | None,
     "splits": {split: {"loss": float, "accuracy": float,
                        "layers": {"l": {NC statistic: value, "trace_ratio": float}}}},
     "vinfo":  {split: {"l": {𝒱-information key: value}}}}

A 𝒱-information measurement's keys: for each `Term` its value (clipped when asked), its raw
value, its budget curve (`<value>@<budget>`, raw bits after that many decoder epochs) and
convergence indicator (`<value>_last_gain`), its protocol and its decoders ("heads"), each
with `<head>_epochs` and `<head>_stop`;
`num_digits`, the entropies `h_y_bits`, `h_digit{j}_bits`, the Monte-Carlo spread, `clipped`,
`decoder_config`, `decoder_batching`, `decoder_compute` (precision, memory format, compile)
and `error` ("" when nothing went wrong).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raycompress import __version__

if TYPE_CHECKING:
    from raycompress.training import EpochRecord

STATE_FILE = "run.pt"
HISTORY_FILE = "history.json"
MODEL_FILE = "model.json"
SWEEP_FILE = "raycompress_sweep.json"
SPLITS = ("train", "test")

ERROR = "error"
NUM_DIGITS = "num_digits"
SUFF_HEAD, HELD_OUT_HEAD = "suff", "held_out"


def digit_head(j: int) -> str:
    """The minimality decoder of relabelling digit j."""
    return f"digit{j}"


def epochs_key(head: str) -> str:
    return f"{head}_epochs"


def stop_key(head: str) -> str:
    return f"{head}_stop"


def raw_key(value: str) -> str:
    """The unclipped value beside a (possibly clipped) one."""
    return f"{value}_raw"


def digit_key(j: int) -> str:
    """Minimality of digit j alone (raw, bits)."""
    return raw_key(f"v_min_digit{j}")


def digit_entropy_key(j: int) -> str:
    return f"h_digit{j}_bits"


BUDGET = "budget"  # the tidy frame's column of a budget-curve point: decoder epochs
_AT = "@"


def budget_key(value: str, budget: int) -> str:
    """A term's value after `budget` decoder epochs: one point of its budget curve."""
    return f"{value}{_AT}{budget}"


def curve_metric(value: str) -> str:
    """The tidy frame's metric of a term's budget-curve points (their budget in BUDGET)."""
    return f"{value}_at_budget"


def split_budget_key(key: str) -> tuple[str, int] | None:
    """(value, budget) of a `budget_key`; None for any other key."""
    value, at, budget = key.rpartition(_AT)
    return (value, int(budget)) if at and budget.isdigit() else None


def gain_key(value: str) -> str:
    """The convergence indicator beside a value: bits gained between its last two budgets."""
    return f"{value}_last_gain"


@dataclass(frozen=True)
class Term:
    """One 𝒱-information quantity as recorded: its value key, its protocol key, its decoder
    (None: one decoder per relabelling digit) and the keys that share its protocol note."""

    value: str
    protocol: str
    head: str | None
    companions: tuple[str, ...] = ()

    def heads(self, values: dict[str, Any]) -> list[str]:
        """The decoders behind this quantity in one measurement."""
        if self.head is not None:
            return [self.head]
        return [digit_head(j) for j in range(num_digits(values))]

    def keys(self, values: dict[str, Any]) -> list[str]:
        """Every key of `values` that this term's protocol note belongs beside."""
        digits = [] if self.head else [digit_key(j) for j in range(num_digits(values))]
        keys = [self.value, raw_key(self.value), gain_key(self.value), *self.companions, *digits]
        return [key for key in keys if key in values]


SUFFICIENCY = Term("v_suff", "suff_protocol", SUFF_HEAD)
MINIMALITY = Term("v_min", "min_protocol", None, ("v_min_mc_mean", "v_min_mc_std"))
HELD_OUT = Term("v_suff_held_out", "held_out_protocol", HELD_OUT_HEAD)
TERMS = (SUFFICIENCY, MINIMALITY, HELD_OUT)


def num_digits(values: dict[str, Any]) -> int:
    """N_D of a measurement (0 when it failed before the relabelling)."""
    return int(values.get(NUM_DIGITS) or 0)


def head_of_epochs(metric: str) -> str | None:
    """The decoder whose epoch count a metric records ("digit2_epochs" → "digit2"), else None."""
    match = re.fullmatch(rf"({SUFF_HEAD}|{HELD_OUT_HEAD}|digit\d+)_epochs", metric)
    return match.group(1) if match else None


# --------------------------------------------------------------------------- history rows


def epoch_row(record: EpochRecord) -> dict[str, Any]:
    """One epoch as plain JSON data: every statistic of every layer, split and measurement."""
    splits: dict[str, Any] = {}
    for name, report in zip(SPLITS, (record.train, record.test), strict=True):
        if report is None:
            continue
        layers = {
            str(layer): {**dataclasses.asdict(stats), "trace_ratio": stats.trace_ratio}
            for layer, stats in report.layers.items()
        }
        splits[name] = {"loss": report.loss, "accuracy": report.accuracy, "layers": layers}
    vinfo: dict[str, dict[str, Any]] = {}
    for (layer, name), values in record.vinfo.items():
        vinfo.setdefault(name, {})[str(layer)] = values
    return {
        "epoch": record.epoch,
        "train_step_loss": record.train_step_loss,
        "stop_reason": record.stop_reason,
        "splits": splits,
        "vinfo": vinfo,
    }


def write_history(folder: Path, history: list[dict[str, Any]]) -> None:
    (folder / HISTORY_FILE).write_text(json.dumps(history, allow_nan=True))


def read_history(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / HISTORY_FILE).read_text())


def newest_history(trial: Path) -> list[dict[str, Any]]:
    """The history in a trial folder's newest checkpoint; [] before its first epoch ends."""
    checkpoints = sorted(trial.glob(f"checkpoint_*/{HISTORY_FILE}"))
    return read_history(checkpoints[-1].parent) if checkpoints else []


def write_model(folder: Path, description: dict[str, Any]) -> None:
    (folder / MODEL_FILE).write_text(json.dumps(description))


def newest_model(trial: Path) -> dict[str, Any]:
    """What network a trial ran (see MODEL_FILE); {} before its first epoch ends."""
    checkpoints = sorted(trial.glob(f"checkpoint_*/{MODEL_FILE}"))
    return json.loads(checkpoints[-1].read_text()) if checkpoints else {}


# ------------------------------------------------------------------ Tune's per-epoch summary

NC_SUMMARY = ("nc_trace", "within_trace", "between_trace", "cdnv", "rank")
VINFO_SUMMARY = (SUFFICIENCY.value, MINIMALITY.value)


def summary_key(split: str, metric: str, layer: int | None = None) -> str:
    """The spelling of a summary value: `split/metric` or `split/metric/lN`."""
    return f"{split}/{metric}" if layer is None else f"{split}/{metric}/l{layer}"


def summary_metrics(row: dict[str, Any], depth: int) -> dict[str, float | int | str]:
    """What Tune shows and stores per epoch: the same keys every epoch, NaN where unmeasured."""
    out: dict[str, float | int | str] = {
        "epoch": row["epoch"],
        "train_step_loss": row["train_step_loss"],
        "stop_reason": row["stop_reason"] or "",
    }
    for split in SPLITS:
        report = row["splits"].get(split, {})
        for metric in ("loss", "accuracy"):
            out[summary_key(split, metric)] = report.get(metric, math.nan)
        for layer in range(1, depth + 1):
            stats = report.get("layers", {}).get(str(layer), {})
            for key in NC_SUMMARY:
                out[summary_key(split, key, layer)] = stats.get(key, math.nan)
        for layer in range(depth):
            values = row["vinfo"].get(split, {}).get(str(layer), {})
            for key in VINFO_SUMMARY:
                out[summary_key(split, key, layer)] = values.get(key, math.nan)
    return out


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


def write_description(folder: Path, description: dict[str, Any]) -> dict[str, Any]:
    """Write the sweep's description with the code that runs it (package version, git commit)
    into the experiment folder; returns what was written."""
    described = {**description, "version": __version__, "commit": git_commit()}
    (folder / SWEEP_FILE).write_text(json.dumps(described, indent=1))
    return described


def read_description(folder: Path) -> dict[str, Any]:
    """The experiment folder's sweep description; {} for a folder written without one."""
    path = folder / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else {}
