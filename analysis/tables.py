"""Derived tables over the tidy frame of `raycompress.results.load`; pure pandas, no I/O.

Facets. A figure panel shows the trials that share dataset, model and every swept axis but
the seed; their seeds are pooled (mean with a band). Every figure orders its panels alike
(`panel_order`): by dataset, model and each swept axis in turn, numbers by value.

Layers. Neural collapse is reported at l = 1..L (L: the penultimate features), 𝒱-information
at l = 0..L−1 (l = 0: the input x). Layer names: "x", "h1", …, "penultimate"; layers whose
representations are the same (`results.identical_layers`) share one name, "h3 = penultimate".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raycompress import schema
from raycompress.results import axis_columns
from raycompress.schema import ACCURACY, LOSS, NC, TRAIN_STEP_LOSS, Quantity
from raycompress.stopping import CONVERGED

SEED = "seed"
SPLITS = list(schema.SPLITS)
V_SUFF, V_MIN = Quantity.SUFFICIENCY, Quantity.MINIMALITY  # 𝒱-information metrics


def value_key(value: object) -> tuple[int, float, str]:
    """Sort key of a configuration value, also one kept as text: numbers by value, then the
    rest as text (so that 20 comes before 100)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return (1, 0.0, str(value))
    return (0, number, "") if number == number else (1, 0.0, str(value))  # NaN: as text


def trials(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per trial in configuration order (dataset, model, each swept axis, by
    `value_key`): trial_id, its configuration columns and its panel label
    ('dataset · model · axis=value …', the seed left out so that seeds share a panel)."""
    keys = axis_columns(frame)
    config = frame.drop_duplicates("trial_id")[["trial_id", *keys]]
    config = config.sort_values(
        [*keys, "trial_id"], key=lambda column: column.map(value_key), kind="stable"
    ).reset_index(drop=True)
    parts = [
        config[k].astype(str) if k in ("dataset", "model") else f"{k}=" + config[k].astype(str)
        for k in keys
        if k != SEED
    ]
    panel = parts[0].str.cat(parts[1:], sep=" · ") if parts else "all"
    return config.assign(panel=panel)


def panel_order(frame: pd.DataFrame) -> list[str]:
    """The panel labels of the tidy frame in the order every figure draws them."""
    return list(dict.fromkeys(trials(frame).panel))


# a decoder family's panels, after its trial's configuration (mathtext: the fonts lack 𝒱)
FAMILY_PANEL = " · $\\mathcal{{V}}$ = {}"


def family_order(frame: pd.DataFrame) -> list[str]:
    """The decoder families of the frame's 𝒱-information rows, in the order it lists them."""
    if schema.FAMILY not in frame:
        return []
    return list(dict.fromkeys(frame[schema.FAMILY].dropna().astype(str)))


def with_family_panels(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with panels (`with_panels`) whose 𝒱-information values of several decoder families
    are drawn apart, each family its own panels (values of two families never merge)."""
    if len(family_order(rows)) < 2:  # one family: its figures name it elsewhere
        return rows
    family = rows[schema.FAMILY].astype(object)
    suffix = family.map(lambda f: "" if pd.isna(f) else FAMILY_PANEL.format(f))
    return rows.assign(panel=rows.panel.astype(str) + suffix)


def with_panels(rows: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows keyed by trial_id (the tidy frame or a table derived from it) with each trial's
    configuration columns and panel label from `frame` added."""
    info = trials(frame)
    info = info.drop(columns=[c for c in info.columns if c in rows.columns and c != "trial_id"])
    return rows.merge(info, on="trial_id", how="left")


def with_layer_names(frame: pd.DataFrame, identical: pd.DataFrame | None = None) -> pd.DataFrame:
    """The frame with a `layer_name` column ("x", "h1", …, "penultimate") where layer is set.

    The penultimate layer is the highest neural-collapse layer of each trial. Layers whose
    representation is the same (`identical`: rows trial_id, layer, same_as, as
    `results.identical_layers` gives them) are one layer under every name it has, joined in
    network order: f₋'s h³ and penultimate features are both "h3 = penultimate"."""
    is_nc = frame.metric.isin(list(NC))
    top = frame[is_nc].groupby("trial_id").layer.max()
    is_top = is_nc & frame.layer.eq(frame.trial_id.map(top)).fillna(False)
    names = "h" + frame.layer.astype(str)
    names = names.where(frame.layer.ne(0).fillna(True), "x").where(~is_top, "penultimate")
    names = names.where(frame.layer.notna())
    if identical is not None and not identical.empty:
        names = _joined_names(frame, names, identical)
    return frame.assign(layer_name=names)


def _joined_names(frame: pd.DataFrame, names: pd.Series, identical: pd.DataFrame) -> pd.Series:
    """Each layer named by the names of every layer of its trial that is the same as it."""
    layered = frame[["trial_id", "layer"]].assign(name=names).dropna(subset=["layer"])
    same = identical.set_index(["trial_id", "layer"]).same_as
    found = same.reindex(pd.MultiIndex.from_frame(layered[["trial_id", "layer"]])).to_numpy()
    earliest = pd.Series(found, index=layered.index, dtype="Int64").fillna(layered.layer)
    layered = layered.assign(earliest=earliest)
    one = layered.drop_duplicates(["trial_id", "layer", "name"]).sort_values("layer")
    joined = one.groupby(["trial_id", "earliest"]).name.agg(" = ".join)
    keys = pd.MultiIndex.from_frame(layered[["trial_id", "earliest"]])
    return pd.Series(joined.reindex(keys).to_numpy(), index=layered.index).reindex(frame.index)


def layer_order(rows: pd.DataFrame) -> list[str]:
    """The layer names of rows (with `layer` and `layer_name`, see `with_layer_names`) in
    network order: by their layer index, never parsed from the names."""
    named = rows.dropna(subset=["layer_name"]).sort_values("layer", kind="stable")
    return list(named.layer_name.unique())


def values(frame: pd.DataFrame, metric: str) -> pd.Series:
    """One metric indexed by (trial_id, epoch, split, layer); NaN rows dropped."""
    rows = frame[frame.metric == metric].dropna(subset=["value"])
    return rows.set_index(["trial_id", "epoch", "split", "layer"]).value


def hidden_layers(nc: pd.DataFrame) -> pd.DataFrame:
    """Neural-collapse rows of the hidden layers h1..h^{L−1}: each trial's highest layer (the
    penultimate features; for f₋ h^{L−1} flattened, which would count twice) left out."""
    return nc[nc.layer < nc.trial_id.map(nc.groupby("trial_id").layer.max())]


COMPRESSION_GAP = "compression_gap"  # test − train tr(Σ_W Σ_B⁺), per layer


def gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Per trial, epoch and NC layer: the generalisation gap (test loss − train loss, nats)
    and the compression gap (test tr(Σ_W Σ_B⁺) − train tr(Σ_W Σ_B⁺)) — thesis fig. 3.3."""
    loss = frame[frame.metric == LOSS].pivot_table(
        index=["trial_id", "epoch"], columns="split", values="value"
    )
    nc = frame[frame.metric == NC.TRACE].pivot_table(
        index=["trial_id", "epoch", "layer"], columns="split", values="value"
    )
    out = pd.DataFrame({COMPRESSION_GAP: nc["test"] - nc["train"]}, index=nc.index).reset_index()
    generalisation = (loss["test"] - loss["train"]).rename("generalisation_gap")
    return out.join(generalisation, on=["trial_id", "epoch"]).dropna()


def equi_separation(frame: pd.DataFrame) -> pd.DataFrame:
    """Per trial, epoch and split, over the hidden layers l = 1..L−1 (the penultimate layer
    excluded): the Pearson correlation of log tr(Σ_W Σ_B⁺) with l, and the ratio
    r = exp(slope) of the least-squares line log tr(Σ_W Σ_B⁺) ≈ a + l log r, i.e. the fitted
    ratio between consecutive layers (He and Su 2023; thesis fig. 3.4).

    Rows with fewer than two positive, finite values are left out (no line to fit)."""
    nc = hidden_layers(frame[frame.metric == NC.TRACE])
    nc = nc[nc.value > 0].dropna(subset=["value"])
    rows = []
    for (trial, epoch, split), group in nc.groupby(["trial_id", "epoch", "split"], sort=True):
        if len(group) < 2:
            continue
        layer = group.layer.to_numpy(dtype=np.float64)
        log_nc = np.log(group.value.to_numpy(dtype=np.float64))
        slope = np.polyfit(layer, log_nc, 1)[0]
        pearson = np.corrcoef(layer, log_nc)[0, 1] if np.ptp(log_nc) > 0 else np.nan
        rows.append((trial, epoch, split, len(group), pearson, np.exp(slope)))
    columns = ["trial_id", "epoch", "split", "num_layers", "pearson", "ratio"]
    return pd.DataFrame(rows, columns=columns)


def holds_from(holds: pd.Series) -> float:
    """For a per-epoch condition (indexed by epoch), the first epoch from which it holds at
    every later epoch; NaN when it fails at the last one."""
    holds = holds.sort_index()
    if holds.empty or not holds.iloc[-1]:
        return np.nan
    misses = holds.index[~holds.to_numpy()]
    return holds.index[holds.index > misses.max()].min() if len(misses) else holds.index.min()


# |Pearson r| from which the equi-separation law is said to hold (the report's and the
# reproduction page's threshold)
EQUI_SEPARATION_THRESHOLD = 0.95


def equi_separation_onset(
    table: pd.DataFrame, threshold: float = EQUI_SEPARATION_THRESHOLD
) -> pd.DataFrame:
    """Per trial and split, the first epoch from which |Pearson| ≥ threshold at every later
    epoch (NaN when the last epoch misses it) — when the equi-separation law takes hold."""
    rows = []
    for (trial, split), group in table.groupby(["trial_id", "split"], sort=True):
        pearson = group.set_index("epoch").pearson.sort_index()
        onset = holds_from(pearson.abs() >= threshold)
        rows.append((trial, split, threshold, onset, pearson.iloc[-1]))
    columns = ["trial_id", "split", "threshold", "onset_epoch", "final_pearson"]
    return pd.DataFrame(rows, columns=columns)


# with the 𝒱-information values, their convergence indicator: bits gained between the last
# two decoder budgets
FINAL_METRICS = [NC.TRACE, V_SUFF, V_MIN, V_SUFF.last_gain, V_MIN.last_gain]


def final_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its configuration, the epochs it ran, why it stopped, the last
    epoch's loss and accuracy per split, and the last measured value of tr(Σ_W Σ_B⁺),
    sufficiency and minimality per split and layer (columns `metric/split/layer`) and their
    convergence indicators (`v_suff_last_gain/…`: bits gained between the decoders' last two
    budgets), with the epoch of the last 𝒱-information measurement (`vinfo_epoch`) and how
    many of its decoders converged rather than stopping at the epoch cap
    (`vinfo_heads_converged`, "k of n"). A decoder family other than the network's ends its
    columns' names (`v_min/train/l1/linear`); `vinfo_saturated` lists the last values that sit
    at their ceiling ("the family memorises this split"), or says none does."""
    config = frame.groupby("trial_id")[axis_columns(frame)].first()
    steps = frame[frame.metric == TRAIN_STEP_LOSS].sort_values("epoch")
    last = steps.groupby("trial_id").tail(1).set_index("trial_id")
    out = config.assign(
        epochs=last.epoch,
        stop_reason=last.note.astype(str).replace("", "(not stopped: running or cut)"),
    )
    whole = frame[frame.layer.isna() & frame.metric.isin([LOSS, ACCURACY])]
    whole = whole[whole.epoch == whole.trial_id.map(last.epoch)]
    for (metric, split), rows in whole.groupby(["metric", "split"]):
        out[f"{metric}/{split}"] = rows.set_index("trial_id").value
    measured = frame[frame.metric.isin(FINAL_METRICS)].dropna(subset=["value"])
    vinfo = measured[measured.metric != NC.TRACE]
    out["vinfo_epoch"] = vinfo.groupby("trial_id").epoch.max()
    digits = frame[frame.metric == schema.NUM_DIGITS].value.max()
    heads = schema.head_names(0 if pd.isna(digits) else int(digits))
    epochs = [schema.epochs_metric(head) for head in heads]
    heads = frame[frame.metric.isin(epochs)]
    heads = heads[heads.epoch == heads.trial_id.map(out.vinfo_epoch)]
    converged = heads.note.str.startswith(CONVERGED)
    counts = converged.groupby(heads.trial_id).agg(["sum", "size"])
    out["vinfo_heads_converged"] = counts["sum"].astype(str) + " of " + counts["size"].astype(str)
    family = measured[schema.FAMILY].astype(object).fillna("") if schema.FAMILY in measured else ""
    measured = measured.assign(family=family)
    keys = ["metric", "split", "layer", "family"]
    newest = measured.sort_values("epoch").groupby(["trial_id", *keys]).tail(1)
    for (metric, split, layer, family), rows in newest.groupby(keys):
        named = "" if family in ("", schema.NETWORK) else f"/{family}"
        out[f"{metric}/{split}/l{layer}{named}"] = rows.set_index("trial_id").value
    if schema.SATURATED in newest:
        marked = newest[newest[schema.SATURATED].fillna(False).astype(bool)]
        names = marked.metric.astype(str) + "/" + marked.split.astype(str) + "/l"
        names += marked.layer.astype(str) + " (" + marked.family + ")"
        out["vinfo_saturated"] = names.groupby(marked.trial_id).agg(", ".join)
        out["vinfo_saturated"] = out["vinfo_saturated"].fillna("none")
    return out.reset_index()
