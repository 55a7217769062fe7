"""A synthetic tidy results frame with known structure, for the analysis tests."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

EPOCHS = [1, 2, 3, 4]
VINFO_EPOCHS = [2, 4]
BUDGETS = [5, 10, 20, 50]
NC_RATIO = 0.5  # tr(Σ_W Σ_B⁺) halves from one hidden layer to the next, exactly


def nc_value(epoch: int, layer: int, split: str, seed: int) -> float:
    """a(epoch, split, seed) · NC_RATIO^layer: log-linear in the layer, exactly."""
    return (3.0 + seed) / epoch * (1.5 if split == "test" else 1.0) * NC_RATIO**layer


def curve_value(value: float, budget: int) -> float:
    """A budget curve that rises to `value` at the last budget."""
    return value - 1.0 / budget + 1.0 / BUDGETS[-1]


def synthetic_frame() -> pd.DataFrame:
    """Two models × two seeds, four epochs; NC at layers 1..4 (4: penultimate, off the line),
    𝒱-information at layers 0..3 on epochs 2 and 4 with budget curves, one failed (NaN)
    measurement."""
    rng = np.random.default_rng(0)
    rows, curves = [], []
    for model, seed in itertools.product(["mnistnet", "mlp"], [0, 1]):
        trial = f"{model[:3]}{seed}"
        for epoch, split in itertools.product(EPOCHS, ["train", "test"]):
            base = (trial, "fashion-mnist", model, seed, epoch, split)
            gap = 0.1 * epoch if split == "test" else 0.0
            rows += [
                (*base, pd.NA, "loss", 1.0 / epoch + gap, ""),
                (*base, pd.NA, "accuracy", 1.0 - 0.5 / epoch - gap / 2, ""),
            ]
            for layer in (1, 2, 3):
                nc = nc_value(epoch, layer, split, seed)
                rows += [
                    (*base, layer, "nc_trace", nc, "two_pass"),
                    (*base, layer, "nc_cdnv", nc / 10, "two_pass"),
                ]
            rows.append((*base, 4, "nc_trace", 7.0 + rng.random(), "kept"))
            rows.append((*base, 4, "nc_self_duality", 0.1 / epoch, "kept"))
            if epoch in VINFO_EPOCHS:
                for layer in range(4):
                    failed = (trial, epoch, split, layer) == ("mni1", 4, "test", 3)
                    suff = math.log2(10) - 0.2 * layer * (split == "test")
                    minimality = math.nan if failed else 2.0 / (layer + 1) + 0.1 * epoch
                    rows += [
                        (*base, layer, "v_suff", suff, ""),
                        (*base, layer, "v_min", minimality, "decoder failed" if failed else ""),
                    ]
                    curves += [
                        (*base, layer, f"{metric}_at_budget", budget, curve_value(value, budget))
                        for metric, value in (("v_suff", suff), ("v_min", minimality))
                        for budget in BUDGETS
                    ]
            if split == "train":
                stop = "max_epochs" if epoch == EPOCHS[-1] else ""
                rows.append((*base, pd.NA, "train_step_loss", 1.2 / epoch, stop))
    columns = [
        "trial_id", "dataset", "model", "seed", "epoch", "split", "layer", "metric", "value",
        "note",
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    curve_columns = [*columns[:-2], "budget", "value"]
    frame = pd.concat([frame, pd.DataFrame(curves, columns=curve_columns)], ignore_index=True)
    frame["note"] = frame["note"].fillna("")
    frame["budget"] = frame["budget"].astype("Int64")
    frame["layer"] = frame["layer"].astype("Int64")
    frame["value"] = frame["value"].astype(float)
    return frame


def tidy_from_wide(wide: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """The tidy frame of trials given one row each: the axes, `seed`, `gap`, `accuracy_gap`
    and measure columns named as `analysis.generalisation.measure_name` writes them (`metric`
    or `metric/lL/split`). Every trial stops at epoch 3 on the loss threshold, its measures
    on that epoch's rows; epoch 2 carries other values, which must be ignored."""
    measures = [c for c in wide.columns if c not in {*axes, "seed", "gap", "accuracy_gap"}]
    rows = []
    for i, trial in wide.reset_index(drop=True).iterrows():
        key = (f"t{i}", *(trial[a] for a in axes), trial["seed"])
        for epoch in (2, 3):
            last = epoch == 3
            shift = 0.0 if last else 100.0
            values = [
                ("train", pd.NA, "train_step_loss", 0.01, "loss_threshold" if last else ""),
                ("train", pd.NA, "loss", 0.01 + shift, ""),
                ("test", pd.NA, "loss", 0.01 + shift + trial["gap"], ""),
                ("train", pd.NA, "accuracy", 1.0, ""),
                ("test", pd.NA, "accuracy", 1.0 - trial["accuracy_gap"], ""),
            ]
            for name in measures:
                metric, *where = name.split("/")
                layer = int(where[0][1:]) if where else pd.NA
                split = where[1] if where else "train"
                values.append((split, layer, metric, trial[name] + shift, ""))
            rows += [
                (*key, epoch, split, layer, metric, pd.NA, float(value), note)
                for split, layer, metric, value, note in values
            ]
    columns = ["trial_id", *axes, "seed", "epoch", "split", "layer", "metric", "budget",
               "value", "note"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    frame["layer"] = frame["layer"].astype("Int64")
    frame["budget"] = frame["budget"].astype("Int64")
    return frame


def with_verdicts(
    frame: pd.DataFrame, metric: str, saturated: list[str], uncertified: list[str]
) -> pd.DataFrame:
    """`frame` (of `tidy_from_wide`) with `metric` measured under the `linear` family, its
    value at its ceiling (`saturated`) in the trials `saturated` and uncertified (its
    `metric`_certified verdict 0) in the trials `uncertified`; certified elsewhere."""
    measured = frame.metric == metric
    frame = frame.assign(
        family=np.where(measured, "linear", None),
        saturated=pd.array(np.where(measured, False, None), dtype="boolean"),
    )
    frame.loc[measured & frame.trial_id.isin(saturated), "saturated"] = True
    verdicts = frame[measured].assign(metric=f"{metric}_certified", value=1.0, saturated=pd.NA)
    verdicts.loc[verdicts.trial_id.isin(uncertified), "value"] = 0.0
    return pd.concat([frame, verdicts], ignore_index=True)
