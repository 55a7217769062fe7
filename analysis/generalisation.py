"""Does a measure track generalisation? The generalisation-measure literature's statistics,
across a sweep's networks rather than across one run's epochs.

    rank_measures(frame) -> DataFrame   one row per measure (see RANKING)

Every network is compared at one common point (`common_point`): the epoch where its training
met the loss threshold, the thesis' stop, or its last epoch for a run that never met it
(`met_threshold` False). There each measure μ — every neural-collapse statistic per layer and
split, the compression gap of each layer (test − train tr(Σ_W Σ_B⁺), the thesis' fig. 3.3),
𝒱-information per layer and split, the baselines of `schema.Baseline` — is set against
the generalisation gap g (test − train loss, nats; or the accuracy gap, train − test). Seeds of
one configuration θ are averaged first (`configurations`), except by the robust sign-error,
which keeps them apart as repeats.

    τ        Kendall (Jiang et al. 2020): 1/(N(N−1)) Σ_{i≠j} sgn(μ_i − μ_j) sgn(g_i − g_j)
    ψ_a, Ψ   τ over the configurations that differ in axis a only, averaged over every setting
             of the other axes; Ψ = the mean of ψ_a over the axes
    CMI      min over axis pairs S of I(V_μ; V_g | U_S) / H(V_g | U_S), × 100, U_S both
             networks' values of S; needs a complete grid, ≥ 3 axes. By Jiang et al.'s
             definition (`CMI.JIANG`, the default): ordered pairs θ ≠ θ′, V = sgn(x(θ) − x(θ′))
             ∈ {−1, 0, +1}, conditional quantities weighted by p(U_S). As the PGDL
             competition's scorer computes it (`CMI.PGDL`): every ordered pair, self-pairs
             included, V = 1[x(θ) > x(θ′)] (a tie reads "−"), each cell of U_S weighted alike
    robust   Dziugaite et al. 2020: environments are ordered pairs of configurations differing
             in one axis; in each, the sign-error (1 − sgn Δμ sgn Δg)/2 averaged over seed pairs
             with Hoeffding weights (w − ½)₊, w = max(0, 1 − 2 exp(−2 n (Δe/2)²))² (Δe: the
             pair's difference of error gaps, n test points); an environment counts when its
             effective sample size (Σw)²/Σw² ≥ min_ess; worst case (and the environments at
             it: `robust_worst_at`), mean and 90th percentile. With s seeds a configuration an
             environment has s² seed pairs, a bound on its effective sample size, and a pair
             weighs anything only beyond `resolution(n)` (`environment_table`: per axis)

A statistic a sweep is too small for is NaN with its reason in the `gaps` column. Pure pandas
and numpy: no torch, no Ray, no files.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from raycompress.analysis.tables import COMPRESSION_GAP, SEED
from raycompress.results import TRIAL_ID, axis_columns
from raycompress.schema import (
    ACCURACY,
    FAMILY,
    LOSS,
    NC,
    SATURATED,
    TRAIN_STEP_LOSS,
    Baseline,
    Quantity,
)
from raycompress.stopping import Stop

GAP, ACCURACY_GAP = "gap", "accuracy_gap"  # test − train loss (nats); train − test accuracy
# beside a 𝒱-information measure, per trial: why its value is not a measurement ('' when it is)
STATUS, UNCERTIFIED = "#status", "uncertified"
STATUSES = (SATURATED, UNCERTIFIED)  # in the order every text names them
EPOCH, MET_THRESHOLD, SEEDS = "epoch", "met_threshold", "seeds"
# The statistics of NC measured per layer; the rank and tolerance are decisions, not measures.
NC_MEASURES = [stat for stat in NC if stat not in (NC.RANK, NC.EIG_TOL, NC.TRACE_RATIO)]
VINFO_MEASURES = [Quantity.SUFFICIENCY, Quantity.MINIMALITY, Quantity.HELD_OUT]
MIN_ESS = 12.0  # Dziugaite et al.'s minimum effective sample size of an environment
TEST_POINTS = 10_000  # n of the Hoeffding weights: Fashion-MNIST's (and CIFAR-10's) test set
BOOTSTRAP = 200  # resamples of the seeds behind τ's interval
BOOTSTRAP_SEED = 0  # their random stream
MIN_SEEDS = 3  # seeds in every configuration before τ gets a bootstrap interval
# The fewest configurations at which a perfect τ is significant (two-sided exact p: 2/5! =
# 0.017; over 4, 2/4! = 0.083): over fewer a ranking is ±1s by chance.
MIN_CONFIGURATIONS = 5


def measure_name(metric: str, layer: int | None = None, split: str | None = None) -> str:
    """A measure's column: `nc_trace/l2/train`, `v_min/l0/test`, `compression_gap/l2`,
    `gm_path_norm`."""
    return "/".join(
        [metric, *([] if layer is None else [f"l{layer}"]), *([split] if split else [])]
    )


# ------------------------------------------------------------------- one value per network


def common_point(frame: pd.DataFrame) -> pd.DataFrame:
    """Per trial: the epoch where training met the loss threshold, else its last epoch, and
    whether it met it (index trial_id; columns `epoch`, `met_threshold`)."""
    steps = frame[frame.metric == TRAIN_STEP_LOSS].sort_values(EPOCH)
    last = steps.groupby(TRIAL_ID).tail(1).set_index(TRIAL_ID)
    return pd.DataFrame({EPOCH: last.epoch, MET_THRESHOLD: last.note == Stop.LOSS_THRESHOLD})


def _at_point(rows: pd.DataFrame, point: pd.DataFrame) -> pd.DataFrame:
    return rows[rows.epoch == rows.trial_id.map(point.epoch)]


def shared_layers(identical: pd.DataFrame | None, trials: Sequence[str]) -> dict[int, int]:
    """Layer l → the earlier layer whose representation it is in every one of `trials`
    (`identical`: `results.identical_layers`' rows); a layer that is its own in any trial is
    not merged."""
    if identical is None or identical.empty:
        return {}
    rows = identical[identical[TRIAL_ID].isin(trials)]
    same = rows.groupby("layer")["same_as"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else None)
    counts = rows.groupby("layer").size()
    return {
        int(layer): int(earlier)
        for layer, earlier in same.items()
        if earlier is not None and counts[layer] == len(set(trials))
    }


class Measure(NamedTuple):
    """A measure's column in parts: `v_min[linear]/l3=l4/test` is metric `v_min`, family
    `linear`, layers `l3=l4` (one representation, two names), split `test`."""

    metric: str
    family: str | None
    layers: str | None
    split: str | None


_MEASURE = re.compile(
    r"(?P<metric>[^/\[]+)(?:\[(?P<family>[^\]]+)\])?(?:/(?P<layers>l\d+(?:=l\d+)*))?"
    r"(?:/(?P<split>[^/]+))?"
)


def parse_measure(measure: str) -> Measure:
    """The parts of a measure's column (`measure_name`, a family, merged layers)."""
    match = _MEASURE.fullmatch(measure)
    if match is None:
        raise ValueError(f"not a measure's column: {measure!r}")
    return Measure(**match.groupdict())


def _layer(measure: str) -> int | None:
    """The layer of a measure's column (`measure_name`), None for a whole-network measure or
    merged layers."""
    layers = parse_measure(measure).layers
    return int(layers[1:]) if layers and "=" not in layers else None


def one_per_representation(trials: pd.DataFrame, same: dict[int, int]) -> pd.DataFrame:
    """The trial table with each representation once: layer l with same[l] = e is e's, so of
    a measure at several of e's layers the earliest one's column is kept, named by all of
    them ("nc_trace/l3=l4/train"), and the others are dropped."""
    group: dict[int, list[int]] = {}
    for layer, earlier in sorted(same.items()):
        group.setdefault(earlier, [earlier]).append(layer)
    label = {layer: "=".join(f"l{m}" for m in g) for g in group.values() for layer in g}
    kept: dict[str, str] = {}  # its new name → the column kept
    for column in trials.columns:
        layer = _layer(column)
        if layer not in label:
            continue
        metric, _, *rest = column.split("/")
        name = "/".join([metric, label[layer], *rest])
        if name not in kept or layer < _layer(kept[name]):
            kept[name] = column
    dropped = [c for c in trials.columns if _layer(c) in label and c not in kept.values()]
    return trials.drop(columns=dropped).rename(columns={c: n for n, c in kept.items()})


def trial_values(frame: pd.DataFrame, identical: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trial at its common point: its configuration, `epoch`, `met_threshold`,
    both gaps, and one column per measure (`measure_name`), each representation once
    (`identical`, `results.identical_layers`: `one_per_representation` of `shared_layers`).
    𝒱-information of layer 0 (the input, measured once per run) is taken wherever it was
    measured; every other value at the common point itself, so a value not measured there is
    NaN."""
    point = common_point(frame)
    config = frame.groupby(TRIAL_ID)[axis_columns(frame)].first()
    out = config.join(point)
    whole = _at_point(frame[frame.layer.isna() & frame.metric.isin([LOSS, ACCURACY])], point)
    split = whole.pivot_table(index=TRIAL_ID, columns=["metric", "split"], values="value")
    out[GAP] = split[(LOSS, "test")] - split[(LOSS, "train")]
    out[ACCURACY_GAP] = split[(ACCURACY, "train")] - split[(ACCURACY, "test")]
    columns = {}
    nc = _at_point(frame[frame.metric.isin(NC_MEASURES)], point)
    for (metric, layer, split_), rows in nc.groupby(["metric", "layer", "split"]):
        columns[measure_name(metric, int(layer), split_)] = rows.groupby(TRIAL_ID).value.last()
    vinfo = frame[frame.metric.isin(VINFO_MEASURES) & frame.budget.isna()]
    vinfo = pd.concat([_at_point(vinfo[vinfo.layer != 0], point), vinfo[vinfo.layer == 0]])
    columns |= _vinfo_columns(frame, vinfo)
    # the compression gap of the thesis' fig. 3.3, test − train tr(Σ_W Σ_B⁺), per layer
    trace = nc[nc.metric == NC.TRACE].pivot_table(
        index=[TRIAL_ID, "layer"], columns="split", values="value"
    )
    if {"train", "test"} <= set(trace.columns):
        for layer, rows in (trace["test"] - trace["train"]).dropna().groupby(level="layer"):
            columns[measure_name(COMPRESSION_GAP, int(layer))] = rows.droplevel("layer")
    baselines = _at_point(frame[frame.metric.isin(list(Baseline))], point)
    for metric, rows in baselines.groupby("metric"):
        columns[measure_name(metric)] = rows.set_index(TRIAL_ID).value
    trials = out.join(pd.DataFrame(columns)).dropna(axis=1, how="all")
    return one_per_representation(trials, shared_layers(identical, list(trials.index)))


def _vinfo_columns(frame: pd.DataFrame, rows: pd.DataFrame) -> dict[str, pd.Series]:
    """𝒱-information per quantity, family ("v_min[linear]/l2/train"; no family recorded: none
    named), layer and split; beside a measure with any value that is not a measurement, its
    STATUS column: UNCERTIFIED (some decoder of it uncertified), SATURATED (at its ceiling: the
    family memorises the split) or ''."""
    keys = [TRIAL_ID, EPOCH, "layer", "split", "metric", *([FAMILY] if FAMILY in frame else [])]
    verdicts = {q.certified: str(q) for q in VINFO_MEASURES}
    certified = frame[frame.metric.isin(list(verdicts))].assign(
        metric=lambda f: f.metric.map(verdicts)
    )
    rows = rows.merge(
        certified[[*keys, "value"]].rename(columns={"value": "certified"}), on=keys, how="left"
    )
    saturated = rows[SATURATED].eq(True).fillna(False) if SATURATED in rows else False
    uncertified = rows.certified.eq(0).fillna(False)
    rows["status"] = np.where(saturated, SATURATED, np.where(uncertified, UNCERTIFIED, ""))
    family = rows[FAMILY] if FAMILY in rows else pd.Series(pd.NA, index=rows.index, dtype=object)
    rows["named"] = [
        f"{metric}[{f}]" if isinstance(f, str) else metric
        for metric, f in zip(rows.metric, family, strict=True)
    ]
    columns = {}
    for (named, layer, split), group in rows.groupby(["named", "layer", "split"]):
        last = group.groupby(TRIAL_ID).tail(1).set_index(TRIAL_ID)
        name = measure_name(named, int(layer), split)
        columns[name] = last.value
        if last.status.ne("").any():
            columns[name + STATUS] = last.status
    return columns


def grid_axes(trials: pd.DataFrame, config: Sequence[str]) -> list[str]:
    """The configuration columns (`config`) that take two or more values, the seed left out."""
    return [c for c in config if c != SEED and trials[c].astype(str).nunique() > 1]


def too_few_configurations(trials: pd.DataFrame, config: Sequence[str]) -> str:
    """Why the sweep has too few configurations to rank measures across ('' when it has
    enough)."""
    axes = grid_axes(trials, config)
    count = trials.groupby([trials[a].astype(str) for a in axes]).ngroups if axes else 1
    if count >= MIN_CONFIGURATIONS:
        return ""
    return (
        f"the sweep has {count} configuration{'s' if count != 1 else ''}; Kendall's τ over fewer "
        f"than {MIN_CONFIGURATIONS} is ±1 or near it by chance (a perfect τ is significant at 5 % "
        f"from {MIN_CONFIGURATIONS} on)"
    )


def measures(trials: pd.DataFrame, config: Sequence[str]) -> list[str]:
    """The measure columns of `trial_values`' table (configuration columns `config`)."""
    fixed = {*config, EPOCH, MET_THRESHOLD, GAP, ACCURACY_GAP, SEEDS}
    return [c for c in trials.columns if c not in fixed and not c.endswith(STATUS)]


def withheld(trials: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Per measure of `names` with any value that is not a measurement: how many of its
    trials' values are UNCERTIFIED and SATURATED (columns), of `trials` values."""
    counts = {
        name: trials[name + STATUS].fillna("").value_counts()
        for name in names
        if name + STATUS in trials and trials[name + STATUS].fillna("").ne("").any()
    }
    table = pd.DataFrame(counts).T.reindex(columns=list(STATUSES)).fillna(0)
    table = table.astype(int).rename_axis("measure")
    return table.assign(trials=len(trials))


def without_withheld(
    trials: pd.DataFrame, names: Sequence[str]
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The trial table with every value that is not a measurement (`withheld`) set to NaN,
    and per measure that had any, what was left out (text)."""
    counts, trials, left_out = withheld(trials, names), trials.copy(), {}
    for name, row in counts.iterrows():
        trials.loc[trials[name + STATUS].fillna("") != "", name] = np.nan
        said = ", ".join(f"{row[what]} {what}" for what in STATUSES if row[what])
        left_out[name] = f"{said} of {row.trials} values left out: not measurements"
    return trials, left_out


def configurations(trials: pd.DataFrame, axes: Sequence[str], names: Sequence[str]) -> pd.DataFrame:
    """Seeds averaged: one row per configuration (the axes as columns) with the gaps and the
    measures `names`, `seeds` the count, `met_threshold` True when every seed met it."""
    keyed = trials.astype({a: str for a in axes}) if axes else trials.assign(_all="")
    keys = list(axes) or ["_all"]
    numeric = [GAP, ACCURACY_GAP, *names]
    grouped = keyed.groupby(keys, sort=True)
    out = grouped[numeric].mean().copy()  # one block (a mean by blocks leaves many)
    out[MET_THRESHOLD] = grouped[MET_THRESHOLD].all()
    out[SEEDS] = grouped.size()
    return out.reset_index().drop(columns=["_all"], errors="ignore")


# ------------------------------------------------------------------------------ statistics


def kendall_tau(mu: np.ndarray, g: np.ndarray) -> float:
    """1/(N(N−1)) Σ_{i≠j} sgn(μ_i − μ_j) sgn(g_i − g_j); ties count 0; NaN below 2 points."""
    mu, g = np.asarray(mu, dtype=np.float64), np.asarray(g, dtype=np.float64)
    keep = np.isfinite(mu) & np.isfinite(g)
    mu, g = mu[keep], g[keep]
    n = len(mu)
    if n < 2:
        return math.nan
    # argsort-free O(N²) in blocks: a grid of a few thousand configurations stays in memory
    total, block = 0.0, max(1, 2**22 // n)
    for start in range(0, n, block):
        stop = min(n, start + block)
        total += float(
            (np.sign(mu[start:stop, None] - mu) * np.sign(g[start:stop, None] - g)).sum()
        )
    return total / (n * (n - 1))


@dataclass(frozen=True)
class AxisPairs:
    """For each axis a: the unordered pairs of configurations that differ in a only (equal on
    every other axis), each with its group (one setting of the other axes)."""

    pairs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]

    @classmethod
    def of(cls, conf: pd.DataFrame, axes: Sequence[str]) -> AxisPairs:
        out = {}
        for axis in axes:
            others = [a for a in axes if a != axis]
            group = conf.groupby(others, sort=False).ngroup().to_numpy() if others else None
            group = np.zeros(len(conf), dtype=np.int64) if group is None else group
            order = np.argsort(group, kind="stable")
            sizes = np.bincount(group)
            first, second = [], []
            for start, size in zip(np.cumsum(sizes) - sizes, sizes, strict=True):
                i, j = np.triu_indices(size, 1)
                first.append(order[start + i])
                second.append(order[start + j])
            p, q = np.concatenate(first), np.concatenate(second)
            out[axis] = (p, q, group[p])
        return cls(out)


def granulated_tau(mu: np.ndarray, g: np.ndarray, pairs: AxisPairs) -> dict[str, float]:
    """ψ_a for each axis a: τ over the configurations that vary only a, averaged over every
    setting of the other axes (settings with fewer than two measured configurations skipped)."""
    finite = np.isfinite(mu) & np.isfinite(g)
    out = {}
    for axis, (p, q, group) in pairs.pairs.items():
        both = finite[p] & finite[q]
        product = np.where(both, np.sign(mu[p] - mu[q]) * np.sign(g[p] - g[q]), 0.0)
        groups = group.max() + 1 if len(group) else 0
        total = np.bincount(group, product, groups)
        count = np.bincount(group, both.astype(np.float64), groups)  # pairs of measured ones
        taus = total[count > 0] / count[count > 0]
        out[axis] = float(taus.mean()) if len(taus) else math.nan
    return out


def tau_and_psi(mu: np.ndarray, g: np.ndarray, pairs: AxisPairs) -> dict[str, float]:
    """τ, each axis' ψ (`psi_<axis>`) and Ψ, their mean over the axes where ψ is defined."""
    psi = granulated_tau(mu, g, pairs)
    finite = [v for v in psi.values() if not math.isnan(v)]
    return {
        "tau": kendall_tau(mu, g),
        **{f"psi_{axis}": value for axis, value in psi.items()},
        "Psi": float(np.mean(finite)) if finite else math.nan,
    }


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=-1)


def complete_grid(conf: pd.DataFrame, axes: Sequence[str]) -> str:
    """Why the CMI score cannot be computed on `conf` ('' when it can): it needs ≥ 3 axes (with
    two, conditioning on a pair fixes both networks) and every combination of their values."""
    if len(axes) < 3:
        return f"CMI needs ≥ 3 swept axes, the sweep has {len(axes)}"
    size = math.prod(conf[a].nunique() for a in axes)
    if len(conf) != size:
        return f"CMI needs a complete grid: {len(conf)} of {size} configurations measured"
    return ""


class CMI(StrEnum):
    """The conditional-mutual-information score's convention (the module docstring)."""

    JIANG = "jiang"  # Jiang et al. 2020's definition
    PGDL = "pgdl"  # the PGDL competition's scorer


@dataclass(frozen=True)
class PairCodes:
    """The ordered pairs (θ, θ′) of a configuration table (θ ≠ θ′, or every pair with
    `self_pairs`), with each axis pair's cell of U_S (both networks' values of the two axes) as
    one integer: shared by every measure."""

    first: np.ndarray
    second: np.ndarray
    cells: dict[tuple[str, str], np.ndarray]

    @classmethod
    def of(cls, conf: pd.DataFrame, axes: Sequence[str], self_pairs: bool = False) -> PairCodes:
        n = len(conf)
        first, second = np.nonzero(
            np.ones((n, n), dtype=bool) if self_pairs else ~np.eye(n, dtype=bool)
        )
        codes = {a: pd.factorize(conf[a])[0] for a in axes}
        cells = {}
        for a, b in itertools.combinations(axes, 2):
            ka, kb = codes[a].max() + 1, codes[b].max() + 1
            value = codes[a] * kb + codes[b]  # the pair's values in one network, < ka·kb
            cells[(a, b)] = value[first] * (ka * kb) + value[second]
        return cls(first, second, cells)


def cmi_pairs(conf: pd.DataFrame, axes: Sequence[str], convention: CMI) -> PairCodes:
    """The pairs `convention` counts."""
    return PairCodes.of(conf, axes, self_pairs=convention == CMI.PGDL)


SIGN_CODES = 3  # the codes `_signs` gives: at most −, 0, +


def _signs(x: np.ndarray, pairs: PairCodes, convention: CMI) -> np.ndarray:
    """Each pair's sign of x(θ) − x(θ′) as a code below SIGN_CODES: 0, 1, 2 for −, 0, +
    (JIANG); 0, 1 for "not greater", greater (PGDL)."""
    if convention == CMI.PGDL:
        return (x[pairs.first] > x[pairs.second]).astype(np.int64)
    return (np.sign(x[pairs.first] - x[pairs.second]) + 1).astype(np.int64)


def conditional_score(v_mu: np.ndarray, v_g: np.ndarray, cell: np.ndarray, weighted: bool) -> float:
    """I(V_μ; V_g | U) / H(V_g | U) from each pair's sign codes (below SIGN_CODES) and its
    cell u of U: per cell the plug-in entropies, then the cells weighted by p(u) (`weighted`)
    or alike; NaN where V_g is constant in every cell."""
    signs = SIGN_CODES  # a code that never occurs is an empty bin: no entropy
    joint = (cell * signs + v_g) * signs + v_mu
    counts = np.bincount(joint, minlength=(cell.max() + 1) * signs**2)
    counts = counts.reshape(-1, signs, signs).astype(np.float64)
    counts = counts[counts.sum(axis=(1, 2)) > 0]
    size = counts.sum(axis=(1, 2))
    p = counts / size[:, None, None]
    h_g, h_mu = _entropy(p.sum(axis=2)), _entropy(p.sum(axis=1))
    mutual = h_g + h_mu - _entropy(p.reshape(len(p), -1))
    weight = size / size.sum() if weighted else np.full(len(p), 1 / len(p))
    denominator = float(weight @ h_g)
    return float(weight @ mutual) / denominator if denominator > 0 else math.nan


def cmi_score(
    mu: np.ndarray, g: np.ndarray, pairs: PairCodes, convention: CMI = CMI.JIANG
) -> float:
    """min over axis pairs S of I(V_μ; V_g | U_S) / H(V_g | U_S), × 100, on `pairs` (from
    `cmi_pairs` with the same convention)."""
    v_mu, v_g = _signs(np.asarray(mu), pairs, convention), _signs(np.asarray(g), pairs, convention)
    scores = [
        conditional_score(v_mu, v_g, cell, weighted=convention == CMI.JIANG)
        for cell in pairs.cells.values()
    ]
    finite = [s for s in scores if not math.isnan(s)]
    return 100 * min(finite) if finite else math.nan


def hoeffding_weight(delta: np.ndarray, n: int) -> np.ndarray:
    """max(0, 1 − 2 exp(−2 n (Δ/2)²))²: the chance that two gaps estimated on n test points
    each differ by more than noise (Dziugaite et al. 2020)."""
    return np.maximum(0.0, 1 - 2 * np.exp(-2 * n * (np.asarray(delta) / 2) ** 2)) ** 2


def resolution(n: int) -> float:
    """The least difference of two error gaps (on n test points each) whose Hoeffding weight
    exceeds ½, so that its seed pair counts at all: √(2 ln(2 / (1 − √½)) / n)."""
    return math.sqrt(2 * math.log(2 / (1 - math.sqrt(0.5))) / n)


def effective_sample_size(weight: np.ndarray, env: np.ndarray, count: int) -> np.ndarray:
    """(Σw)² / Σw² of each of `count` environments (0 where every weight is 0)."""
    total = np.bincount(env, weight, count)
    squares = np.bincount(env, weight**2, count)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(squares > 0, total**2 / squares, 0.0)


def _kept(ess: np.ndarray, min_ess: float) -> np.ndarray:
    """The environments the robust sign-error keeps: effective sample size ≥ min_ess (one
    exactly at it, up to rounding, included)."""
    return (ess >= min_ess) | np.isclose(ess, min_ess)


@dataclass(frozen=True)
class Environments:
    """Every ordered pair of configurations differing in exactly one axis, with their seed
    pairs: row k of `a`/`b` is one seed pair, of environment `env[k]`, its difference of error
    gaps `delta[k]` (absolute) and its weight (w − ½)₊. Per environment e: `changed[e]`, the
    axis it changes, and `names[e]`, e in words ("lr 0.002 → 0.008 at batch_size=200, …")."""

    a: np.ndarray
    b: np.ndarray
    env: np.ndarray
    delta: np.ndarray
    weight: np.ndarray
    count: int
    changed: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, trials: pd.DataFrame, axes: Sequence[str], error_gap: np.ndarray, test_points: int
    ) -> Environments:
        if not len(axes):
            return cls.none()
        codes = np.stack([pd.factorize(trials[a].astype(str))[0] for a in axes], axis=1)
        config = pd.factorize(pd.Series(map(tuple, codes)))[0]
        members = [np.flatnonzero(config == k) for k in range(config.max() + 1)]
        keys = codes[[m[0] for m in members]]
        a_rows, b_rows, env_rows, changed, names, env = [], [], [], [], [], 0
        for i in range(len(axes)):
            others = np.delete(keys, i, axis=1)
            # configurations equal on every other axis: one group per setting of the others
            group = pd.factorize(pd.Series(map(tuple, others)))[0] if others.shape[1] else 0
            for _, same in pd.Series(range(len(keys))).groupby(np.broadcast_to(group, len(keys))):
                for p, q in itertools.permutations(same.to_numpy(), 2):
                    grid = np.array(list(itertools.product(members[p], members[q])))
                    a_rows.append(grid[:, 0])
                    b_rows.append(grid[:, 1])
                    env_rows.append(np.full(len(grid), env))
                    changed.append(axes[i])
                    names.append(
                        cls._name(trials.iloc[members[p][0]], trials.iloc[members[q][0]], axes, i)
                    )
                    env += 1
        if not env:
            return cls.none()
        a, b = np.concatenate(a_rows), np.concatenate(b_rows)
        delta = np.abs(error_gap[a] - error_gap[b])
        w = hoeffding_weight(delta, test_points)
        weight = np.where(w > 0.5, w - 0.5, 0.0)
        env_of = np.concatenate(env_rows)
        return cls(a, b, env_of, delta, weight, env, tuple(changed), tuple(names))

    @classmethod
    def none(cls) -> Environments:
        """No environment: a sweep without two configurations that differ in one axis."""
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, empty, empty, np.zeros(0), np.zeros(0), 0)

    @staticmethod
    def _name(first: pd.Series, second: pd.Series, axes: Sequence[str], changed: int) -> str:
        axis = axes[changed]
        fixed = ", ".join(f"{a}={first[a]}" for a in axes if a != axis)
        return f"{axis} {first[axis]} → {second[axis]}" + (f" at {fixed}" if fixed else "")

    def within_noise(self) -> int:
        """Environments whose every seed pair has weight 0: gap differences inside the noise."""
        return int((np.bincount(self.env, self.weight, self.count) == 0).sum())

    def by_axis(self, min_ess: float) -> pd.DataFrame:
        """Per changed axis: its environments, the most seed pairs of one, the median and the
        largest mean |Δ error gap| of an environment over its seed pairs, the share of seed
        pairs with any weight, and the environments whose effective sample size reaches
        `min_ess` (those the robust sign-error keeps)."""
        pairs = np.bincount(self.env, minlength=self.count)
        mean_delta = np.bincount(self.env, self.delta, self.count) / np.maximum(pairs, 1)
        ess = effective_sample_size(self.weight, self.env, self.count)
        per_env = pd.DataFrame({
            "axis": self.changed, "pairs": pairs, "delta": mean_delta,
            "kept": _kept(ess, min_ess),
        })  # fmt: skip
        weighted = pd.Series(self.weight > 0).groupby(np.asarray(self.changed)[self.env]).mean()
        table = per_env.groupby("axis", sort=False).agg(
            environments=("pairs", "size"),
            seed_pairs=("pairs", "max"),
            median_delta=("delta", "median"),
            largest_delta=("delta", "max"),
            kept=("kept", "sum"),
        )
        table.insert(4, "weighted_pairs", weighted.reindex(table.index))
        return table.reset_index()

    def most_pairs(self) -> int:
        """The seed pairs of the largest environment: a bound on its effective sample size."""
        return int(np.bincount(self.env).max()) if self.count else 0

    def sign_errors(self, mu: np.ndarray, g: np.ndarray, min_ess: float) -> pd.Series:
        """Each environment's weighted sign-error, for those whose effective sample size
        (Σw)²/Σw² reaches min_ess, indexed by environment."""
        measured = np.isfinite(mu[self.a]) & np.isfinite(mu[self.b])  # a failed value: no vote
        error = (1 - np.sign(mu[self.a] - mu[self.b]) * np.sign(g[self.a] - g[self.b])) / 2
        weight = np.where(measured, self.weight, 0.0)
        total = np.bincount(self.env, weight, self.count)
        loss = np.bincount(self.env, weight * np.where(measured, error, 0.0), self.count)
        ess = effective_sample_size(weight, self.env, self.count)
        kept = _kept(ess, min_ess) & (total > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return pd.Series((loss / total)[kept], index=np.flatnonzero(kept), dtype=np.float64)

    def deciding(self, errors: pd.Series) -> str:
        """The environments at the worst of `errors` (`sign_errors`), in words."""
        if not len(errors):
            return ""
        # an environment and its reverse give one error, summed in another order: equal to
        # the last bits, not exactly
        at_worst = np.isclose(errors, errors.max(), rtol=0, atol=1e-12)
        worst = [self.names[e] for e in errors.index[at_worst]]
        return worst[0] + (f" and {len(worst) - 1} more" if len(worst) > 1 else "")


def environment_table(
    trials: pd.DataFrame,
    config: Sequence[str],
    *,
    min_ess: float = MIN_ESS,
    test_points: int = TEST_POINTS,
) -> pd.DataFrame:
    """Per swept axis, how far changing it moves the error gap and what the robust
    sign-error keeps (`Environments.by_axis`), of a table of `trial_values`."""
    axes = grid_axes(trials, config)
    error_gap = trials[ACCURACY_GAP].to_numpy(dtype=np.float64)
    return Environments.of(trials, axes, error_gap, test_points).by_axis(min_ess)


def no_environment(envs: Environments, min_ess: float, test_points: int) -> str:
    """Why the robust sign-error kept no environment, in words."""
    most = envs.most_pairs()
    bound = f", so an effective sample size of at most {most}," if most < min_ess else ""
    return (
        f"no environment reaches an effective sample size of {min_ess:g} (at most {most} seed "
        f"pairs per environment{bound} and in {envs.within_noise()} of {envs.count} every pair's "
        f"error gaps differ by less than {100 * resolution(test_points):.2g} points, the least "
        f"that {test_points} test points resolve)"
    )


def seed_intervals(
    trials: pd.DataFrame, axes: Sequence[str], measure: str, gap: str, resamples: int, seed: int
) -> dict[str, tuple[float, float]]:
    """95 % intervals over seeds of τ, of each axis' ψ (`psi_<axis>`) and of Ψ: each
    configuration's seeds resampled with replacement, then averaged again (percentiles 2.5
    and 97.5 of `resamples` draws)."""
    rng = np.random.default_rng(seed)
    keys = trials[list(axes)].astype(str)  # as `configurations` groups them
    config = keys.groupby(list(axes), sort=True).ngroup().to_numpy()
    order = np.argsort(config, kind="stable")
    values = trials[[measure, gap]].to_numpy(np.float64)[order]
    sizes = np.bincount(config)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    axis_pairs = AxisPairs.of(keys.iloc[order[starts]].reset_index(drop=True), axes)
    used = np.arange(sizes.max()) < sizes[:, None]  # (configurations, most seeds)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        draw = starts[:, None] + (rng.random(used.shape) * sizes[:, None]).astype(np.int64)
        drawn = values[np.where(used, draw, 0)]  # (configurations, most seeds, 2)
        # a withheld value (NaN) is no draw, as `configurations` averages the seeds it has
        counted = used[..., None] & np.isfinite(drawn)
        with np.errstate(invalid="ignore"):
            means = np.where(counted, drawn, 0.0).sum(1) / counted.sum(1)
        for name, value in tau_and_psi(means[:, 0], means[:, 1], axis_pairs).items():
            draws.setdefault(name, []).append(value)
    with warnings.catch_warnings():  # a statistic undefined in every draw: NaN, said so
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            name: tuple(float(p) for p in np.nanpercentile(values, [2.5, 97.5]))
            for name, values in draws.items()
        }


# ------------------------------------------------------------------------------- the ranking

# by |Ψ| (|τ| where Ψ is undefined), 1 the best; ties share the best rank; <NA>: no statistic,
# or a measure not measured in every configuration (its values there withheld)
RANK = "rank"
# The columns of `rank_measures` after RANK, besides one `psi_<axis>` per swept axis after Ψ,
# and after them, each of τ, Ψ and ψ_<axis> with its interval over seeds (`interval_columns`).
RANKING = [
    "measure", "tau", "Psi", "cmi", "robust_worst", "robust_mean", "robust_p90",
    "robust_worst_at", "environments", "configurations", "gaps",
]  # fmt: skip
LOW, HIGH = "_low", "_high"  # the ends of a statistic's interval over seeds: `tau_low`, …


def interval_columns(statistics: Sequence[str]) -> list[str]:
    """The columns of each statistic's interval over seeds (`seed_intervals`), in order."""
    return [f"{name}{end}" for name in statistics for end in (LOW, HIGH)]


def rank_measures(
    frame: pd.DataFrame, gap: str = GAP, identical: pd.DataFrame | None = None, **options: Any
) -> pd.DataFrame:
    """Every measure of a sweep's tidy frame ranked by how it tracks `gap` (GAP or
    ACCURACY_GAP) across the sweep's configurations: `rank_trials` of its `trial_values`
    (each representation once: `identical`; `options`: min_ess, test_points, resamples, seed,
    cmi)."""
    return rank_trials(trial_values(frame, identical), axis_columns(frame), gap, **options)


def rank_trials(
    trials: pd.DataFrame,
    config: Sequence[str],
    gap: str = GAP,
    *,
    min_ess: float = MIN_ESS,
    test_points: int = TEST_POINTS,
    resamples: int = BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    cmi: CMI = CMI.JIANG,
) -> pd.DataFrame:
    """Every measure of a table of `trial_values` (configuration columns `config`) ranked by
    how it tracks `gap`: one row per measure (RANK, then RANKING, with `psi_<axis>` per swept
    axis), sorted by |Ψ| (by |τ| where Ψ is undefined), ties sharing a rank; a measure with
    values withheld from some configuration keeps its statistics there but no rank. The robust
    sign-error keeps environments of effective sample size ≥ `min_ess` and, whatever `gap`,
    reads the error gap (train − test accuracy, a difference of two rates estimated on
    `test_points` samples), the gap whose differences weigh its seed pairs, as Dziugaite et
    al. score it. The intervals of τ, Ψ and each ψ over seeds (`seed_intervals`):
    `resamples` bootstrap draws of the seeds (0: none), seeded by `seed`. The CMI score by
    the convention `cmi`."""
    if gap not in (GAP, ACCURACY_GAP):
        raise ValueError(f"gap must be {GAP!r} or {ACCURACY_GAP!r}, got {gap!r}")
    axes = grid_axes(trials, config)
    names = measures(trials, config)
    trials, left_out = without_withheld(trials, names)
    conf = configurations(trials, axes, names)
    fewest = int(conf[SEEDS].min()) if len(conf) else 0
    shared: list[str] = []
    if len(conf) < 2:
        shared.append(f"τ needs ≥ 2 configurations, the sweep has {len(conf)}")
    if not axes:
        shared.append("ψ, Ψ and the robust score need a swept axis")
    no_cmi = complete_grid(conf, axes)
    shared += [no_cmi] if no_cmi else []
    if fewest < MIN_SEEDS:
        shared.append(f"τ's interval needs ≥ {MIN_SEEDS} seeds per configuration (fewest {fewest})")
    pairs = None if no_cmi else cmi_pairs(conf, axes, cmi)
    axis_pairs = AxisPairs.of(conf, axes)
    error_gap = trials[ACCURACY_GAP].to_numpy(dtype=np.float64)
    envs = Environments.of(trials, axes, error_gap, test_points) if axes else None
    g_conf = conf[gap].to_numpy(np.float64)
    rows = []
    for name in names:
        mu, per_trial = conf[name].to_numpy(np.float64), trials[name].to_numpy(np.float64)
        measured = int(np.isfinite(mu).sum())
        row: dict = {"measure": name, "configurations": measured}
        gaps = [*shared, *([left_out[name]] if name in left_out else [])]
        if measured < MIN_CONFIGURATIONS <= len(conf):
            # the few left (most values withheld) would rank by chance: no statistic
            mu, per_trial = np.full_like(mu, np.nan), np.full_like(per_trial, np.nan)
            gaps.append(
                f"measured in {measured} of {len(conf)} configurations, fewer than "
                f"{MIN_CONFIGURATIONS}: not ranked"
            )
        elif measured < len(conf):
            # over the configurations its decoders certified: another, self-selected sample
            gaps.append(f"measured in {measured} of {len(conf)} configurations: not ranked")
        row |= tau_and_psi(mu, g_conf, axis_pairs)
        complete = bool(np.isfinite(mu).all() and np.isfinite(g_conf).all())
        if pairs is not None and complete:
            row["cmi"] = cmi_score(mu, g_conf, pairs, cmi)
        else:
            row["cmi"] = math.nan
            if pairs is not None:
                gaps.append("CMI needs the measure and the gap in every configuration")
        errors = pd.Series(dtype=np.float64)
        if envs is not None:
            errors = envs.sign_errors(per_trial, error_gap, min_ess)
            if not len(errors):
                gaps.append(no_environment(envs, min_ess, test_points))
        row["environments"] = len(errors)
        worst, mean, p90 = (
            (errors.max(), errors.mean(), np.percentile(errors, 90)) if len(errors)
            else (math.nan,) * 3
        )  # fmt: skip
        row |= {"robust_worst": worst, "robust_mean": mean, "robust_p90": p90}
        row["robust_worst_at"] = envs.deciding(errors) if envs is not None else ""
        if resamples and fewest >= MIN_SEEDS and np.isfinite(mu).sum() >= 2:
            intervals = seed_intervals(trials, axes, name, gap, resamples, seed)
            ends = itertools.chain(*intervals.values())
            row |= dict(zip(interval_columns(intervals), ends, strict=True))
        rows.append(row | {"gaps": "; ".join(gaps)})
    statistics = ["tau", "Psi", *(f"psi_{axis}" for axis in axes)]
    columns = [*RANKING[:3], *statistics[2:], *RANKING[3:], *interval_columns(statistics)]
    out = pd.DataFrame(rows, columns=columns)  # an interval not drawn: NaN
    # rounded, so that two measures equal but for the last bits of a mean share a rank
    order = out.Psi.abs().fillna(out.tau.abs()).fillna(-1).round(12)
    # a measure missing from some configurations keeps its statistics but not a rank
    order = order.mask(out.configurations < len(conf), -1)
    rank = order.rank(method="min", ascending=False).astype("Int64")
    out.insert(0, RANK, rank.mask(order < 0))  # a measure with no statistic has no rank
    return out.iloc[np.argsort(-order.to_numpy(), kind="stable")].reset_index(drop=True)
