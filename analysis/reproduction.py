"""The thesis' Fashion-MNIST findings checked against a sweep's results (docs/reproduction.md).

    python -m raycompress.analysis.reproduction RESULTS --page docs/reproduction.md \
        [--converged CONVERGED_RESULTS]

RESULTS is an experiment folder or a tidy frame saved as CSV; the command rewrites the tables
between the page's markers: the claims (`<!-- claims -->`), and the 𝒱-information claims judged
again at every decoder budget of the budget curves (`<!-- budget verdicts -->`, one row per
claim and model, and `<!-- budget values -->`, the numbers behind them) and, given the same
sweep under the converged protocol, under both protocols (`<!-- protocols -->`). Each check
states its rule; `verdict` is "reproduced", "not reproduced", "not measured", or "context"
(our numbers where the thesis states the claim for the other model only).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from raycompress import protocol
from raycompress.analysis import tables
from raycompress.analysis.tables import EQUI_SEPARATION_THRESHOLD, V_MIN, V_SUFF
from raycompress.results import load
from raycompress.schema import BUDGET, H_Y, LOSS, NC, TRAIN_STEP_LOSS
from raycompress.stopping import Stop

MODELS = {"cifarnet": "f₊", "mnistnet": "f₋"}
# thesis §3.1, Fashion-MNIST: final test accuracy and test loss (nats); both runs reached
# the 0.02 training-loss threshold
THESIS_TEST = {"cifarnet": (0.910, 0.323), "mnistnet": (0.884, 0.387)}
ACCURACY_TOLERANCE = 0.01  # one percentage point
# "≈ H(y)": sufficiency within this many bits of its ceiling, the labels' entropy
SATURATION_MARGIN_BITS = 0.1
COMPRESSION_DROP_BITS = 0.1  # a fall of minimality from its peak larger than this
# Minimality values closer than a decoder's stopping loss (in bits) are not ordered: a head
# that memorises its digit stops anywhere below that loss, so saturated layers tie within it.
TIE_BITS = protocol.LOSS_THRESHOLD / math.log(2)
MILD_CORRELATION = 0.5  # |Pearson r| below this: "only mildly correlated, if at all"
MARKER = "<!-- claims -->"
BUDGET_VERDICTS = "<!-- budget verdicts -->"
BUDGET_VALUES = "<!-- budget values -->"
PROTOCOLS = "<!-- protocols -->"


def _verdict(ok: bool) -> str:
    return "reproduced" if ok else "not reproduced"


def _layers(layers: Iterable[int], dash: str) -> str:
    """Layers as a page names them: `0–2` for a run of consecutive ones, `0, 2` otherwise."""
    layers = sorted(layers)
    if len(layers) > 1 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}{dash}{layers[-1]}"
    return ", ".join(map(str, layers))


def _nc(frame: pd.DataFrame) -> pd.DataFrame:
    """tr(Σ_W Σ_B⁺) of the hidden layers h1..h^{L−1}: rows (epoch, layer), columns splits."""
    nc = tables.hidden_layers(frame[frame.metric == NC.TRACE])
    return nc.pivot_table(index=["epoch", "layer"], columns="split", values="value")


def accuracy(frame: pd.DataFrame, model: str) -> tuple[str, str, str]:
    rows = frame[(frame.split == "test") & frame.layer.isna()].sort_values("epoch")
    final = rows[rows.epoch == rows.epoch.max()].set_index("metric").value
    thesis_accuracy, thesis_loss = THESIS_TEST[model]
    ok = abs(final["accuracy"] - thesis_accuracy) <= ACCURACY_TOLERANCE
    return (
        f"{thesis_accuracy:.1%} (loss {thesis_loss})",
        f"{final['accuracy']:.1%} (loss {final['loss']:.3f}, epoch {rows.epoch.max()})",
        _verdict(ok),
    )


def stops_at_threshold(frame: pd.DataFrame, model: str) -> tuple[str, str, str]:
    steps = frame[frame.metric == TRAIN_STEP_LOSS].sort_values("epoch")
    reason = steps.note.iloc[-1] or "not stopped"
    ours = f"{reason} at epoch {steps.epoch.iloc[-1]} (step loss {steps.value.iloc[-1]:.4f})"
    stated = f"train loss ≤ {protocol.LOSS_THRESHOLD} within {protocol.MAX_EPOCHS} epochs"
    return stated, ours, _verdict(reason == Stop.LOSS_THRESHOLD)


def test_loss_rises(frame: pd.DataFrame, model: str) -> tuple[str, str, str]:
    loss = frame[(frame.metric == LOSS) & (frame.split == "test")].set_index("epoch").value
    best = int(loss.idxmin())
    ours = f"lowest {loss.min():.3f} at epoch {best}, {loss.iloc[-1]:.3f} at the end"
    if model != "mnistnet":  # the thesis states this for f₋ only
        return "(stated for f₋ only)", ours, "context"
    risen = loss.iloc[-1] - loss.min() > 0.05 and 5 <= best <= 15
    return "rises after about epoch 10", ours, _verdict(risen)


def gaps_mildly_correlated(frame: pd.DataFrame, model: str) -> tuple[str, str, str]:
    gaps = tables.gaps(frame)
    gaps = gaps[gaps.generalisation_gap > 0]
    named = tables.with_layer_names(gaps.assign(metric=NC.TRACE))
    correlations = {
        name: np.corrcoef(rows.generalisation_gap, rows.compression_gap)[0, 1]
        for name, rows in named.groupby("layer_name", sort=False)
    }
    order = tables.layer_order(named)
    ours = "Pearson r per layer: " + ", ".join(f"{n} {correlations[n]:+.2f}" for n in order)
    mild = all(abs(r) < MILD_CORRELATION for r in correlations.values())
    return "mildly correlated, if at all", ours, _verdict(mild)


def train_below_test(frame: pd.DataFrame, model: str) -> tuple[str, str, str]:
    nc = _nc(frame)
    below = nc["train"] < nc["test"]
    final = below.xs(nc.index.get_level_values("epoch").max(), level="epoch")
    ours = f"{below.mean():.0%} of (epoch, layer) pairs; all layers at the end: {final.all()}"
    return (
        "train below test, every layer",
        ours,
        _verdict(bool(final.all()) and below.mean() >= 0.9),
    )


def decreasing_with_depth(frame: pd.DataFrame, model: str) -> tuple[str, str, str]:
    nc = _nc(frame)
    strictly = nc.groupby(level="epoch").apply(
        lambda g: bool((np.diff(g.to_numpy(), axis=0) < 0).all())
    )
    onset = tables.holds_from(strictly)
    order = " > ".join(f"h{layer}" for layer in sorted(set(nc.index.get_level_values("layer"))))
    ours = f"{order} on both splits from epoch {onset:g}" if onset == onset else "no"
    return "deeper layers compress more", ours, _verdict(bool(strictly.iloc[-1]))


def equi_separation(frame: pd.DataFrame, model: str) -> tuple[str, str, str]:
    table = tables.equi_separation(frame)
    onset = tables.equi_separation_onset(table, EQUI_SEPARATION_THRESHOLD).set_index("split")
    final = table.sort_values("epoch").groupby("split").tail(1).set_index("split")
    parts = [
        f"{split}: r = {final.pearson[split]:.3f}, ratio {final.ratio[split]:.2f}, "
        f"|r| ≥ {EQUI_SEPARATION_THRESHOLD} from epoch {onset.onset_epoch[split]:g}"
        for split in tables.SPLITS
    ]
    ok = bool((final.pearson.abs() >= EQUI_SEPARATION_THRESHOLD).all())
    return "|Pearson r| ≈ 1, early in training", "; ".join(parts), _verdict(ok)


def _vinfo_final(frame: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    rows = frame[frame.metric == metric].dropna(subset=["value"])
    if rows.empty:
        return None
    last = rows[rows.epoch == rows.epoch.max()]
    return last.pivot_table(index="layer", columns="split", values="value")


def _entropy_text(bits: float) -> str:
    """H(y) as the thesis writes it: log2 C where the C classes are balanced."""
    classes = round(2**bits)
    name = f"log2 {classes}" if math.isclose(bits, math.log2(classes)) else "H(y)"
    return f"{name} ≈ {bits:.2f} bits"


def _ceiling_text(entropy: pd.Series) -> str:
    """The ceiling of sufficiency: one H(y) where the splits share it, else one per split."""
    texts = {
        split: _entropy_text(bits)
        for split, bits in entropy.reindex(tables.SPLITS).dropna().items()
    }
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return ", ".join(f"{text} ({split})" for split, text in texts.items())


def sufficiency_saturates(frame: pd.DataFrame, model: str) -> tuple[str, str, str]:
    """The layers below the deepest 𝒱-information layer (the thesis' l = 0..2 of 0..3) carry
    all of H(y); the deepest is left out, as in the thesis."""
    stated = "every layer but the deepest ≈ H(y)"
    final = _vinfo_final(frame, V_SUFF)
    deepest = frame.loc[frame.metric == V_SUFF, "layer"].max()
    shallow = None if final is None else final[final.index < deepest]
    if shallow is None or shallow.empty:
        return stated, "—", "not measured"
    ours = "train/test bits " + ", ".join(
        f"l={layer}: {row.train:.2f}/{row.test:.2f}" for layer, row in shallow.iterrows()
    )
    if model != "cifarnet":  # the thesis states this for f₊ only
        return "(stated for f₊ only)", ours, "context"
    entropy = _vinfo_final(frame, H_Y)
    if entropy is None:
        return stated, f"{ours}; H(y) not recorded", "not measured"
    entropy = entropy.max()  # per split: H(y) is the labels', the same at every layer
    thesis = f"layers {_layers(shallow.index, '–')} ≈ {_ceiling_text(entropy)}"
    saturated = bool(shallow.ge(entropy - SATURATION_MARGIN_BITS).all().all())
    return thesis, ours, _verdict(saturated)


def minimality_drops_with_depth(frame: pd.DataFrame, model: str) -> tuple[str, str, str]:
    final = _vinfo_final(frame, V_MIN)
    if final is None:
        return "compression increases with depth", "—", "not measured"
    ours = "; ".join(
        f"{split}: " + ", ".join(f"{v:.2f}" for v in final[split]) for split in tables.SPLITS
    )
    ok = bool((np.diff(final.to_numpy(), axis=0) <= TIE_BITS).all())
    layers = _layers(final.index, "..")
    return "compression increases with depth", f"bits, l = {layers}: {ours}", _verdict(ok)


def no_compression_phase(frame: pd.DataFrame, model: str) -> tuple[str, str, str]:
    rows = frame[(frame.metric == V_MIN) & (frame.layer > 0)].dropna(subset=["value"])
    if rows.epoch.nunique() < 2:
        return "no compression phase", "—", "not measured"
    drops = {}
    for (layer, split), path in rows.sort_values("epoch").groupby(["layer", "split"]):
        drops[(layer, split)] = path.value.max() - path.value.iloc[-1]
    worst = max(drops, key=drops.get)
    ours = (
        f"largest fall of minimality from its peak: {drops[worst]:.2f} bits "
        f"(l={worst[0]}, {worst[1]}; epochs {', '.join(map(str, sorted(set(rows.epoch))))})"
    )
    return "no compression phase", ours, _verdict(drops[worst] <= COMPRESSION_DROP_BITS)


# The claims are named as the thesis states them (f₊, 𝒱-information at l = 0..3); the
# columns "thesis" and "ours" name each run's own layers.
CHECKS: dict[str, Callable[[pd.DataFrame, str], tuple[str, str, str]]] = {
    "test accuracy (± 1 point)": accuracy,
    "reaches the 0.02 training-loss threshold": stops_at_threshold,
    "test loss rises late in training (overfitting)": test_loss_rises,
    "train NC below test NC": train_below_test,
    "compression gap vs generalisation gap": gaps_mildly_correlated,
    "NC decreases with depth": decreasing_with_depth,
    "log NC linear in l (equi-separation)": equi_separation,
    "sufficiency of l = 0–2 saturates": sufficiency_saturates,
    "minimality drops with depth": minimality_drops_with_depth,
    "no compression phase (information plane)": no_compression_phase,
}


# The claims about 𝒱-information: judged again at every budget of the decoders' curves.
BUDGET_CLAIMS = (
    "sufficiency of l = 0–2 saturates",
    "minimality drops with depth",
    "no compression phase (information plane)",
)


def _trials(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(model, its rows) for each trial of f₊ or f₋, in the frame's order."""
    chosen = frame[frame.model.isin(list(MODELS))]
    return [(t.model.iloc[0], t) for _, t in chosen.groupby("trial_id", sort=False)]


def claims(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, trial of f₊ or f₋): the thesis' statement, our numbers, the verdict."""
    rows = [
        (point, MODELS[model], *check(trial, model))
        for point, check in CHECKS.items()
        for model, trial in _trials(frame)
    ]
    return pd.DataFrame(rows, columns=["claim", "model", "thesis", "ours", "verdict"])


def at_budget(frame: pd.DataFrame, budget: int) -> pd.DataFrame:
    """The frame with every sufficiency and minimality value replaced by its budget-curve point:
    what the trained decoders gave after `budget` epochs (at l = L−1 too, where the reported
    value is the affine optimum instead)."""
    terms = {term.at_budget: term for term in (V_SUFF, V_MIN)}
    points = frame[frame.metric.isin(list(terms)) & (frame[BUDGET] == budget)]
    rest = frame[~frame.metric.isin([V_SUFF, V_MIN, *terms])]
    return pd.concat([rest, points.assign(metric=points.metric.map(terms))], ignore_index=True)


def budget_claims(frame: pd.DataFrame) -> pd.DataFrame:
    """The 𝒱-information claims judged at every budget of the curves: one row per (claim,
    model, budget) with our numbers and the verdict; none where no curve was recorded."""
    budgets = sorted(int(b) for b in frame[BUDGET].dropna().unique())
    rows = [
        (point, MODELS[model], budget, *CHECKS[point](at_budget(trial, budget), model)[1:])
        for point in BUDGET_CLAIMS
        for model, trial in _trials(frame)
        for budget in budgets
    ]
    return pd.DataFrame(rows, columns=["claim", "model", "budget", "ours", "verdict"])


def budget_verdicts(by_budget: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, model): the verdict at each budget and whether it depends on it."""
    rows = []
    for (claim, model), group in by_budget.groupby(["claim", "model"], sort=False):
        verdicts = {f"{b} epochs": v for b, v in zip(group.budget, group.verdict, strict=True)}
        depends = "yes" if len(set(verdicts.values())) > 1 else "no"
        rows.append({"claim": claim, "model": model, **verdicts, "depends on the budget": depends})
    return pd.DataFrame(rows, columns=None if rows else ["claim", "model", "depends on the budget"])


def _judged(frame: pd.DataFrame, model: str, point: str) -> tuple[str, str]:
    """(our numbers, verdict) of a claim for `model`'s trial in `frame`; not measured when the
    frame has none."""
    trials = dict(_trials(frame))
    if model not in trials:
        return "—", "not measured"
    return CHECKS[point](trials[model], model)[1:]


def certified_text(frame: pd.DataFrame, model: str) -> str:
    """How many 𝒱-information terms of `model`'s trial are certified at the measurement the
    claims read (its last), and over every measurement."""
    trials = dict(_trials(frame))
    if model not in trials:
        return "—"
    metrics = [V_SUFF.certified, V_MIN.certified]
    rows = trials[model]
    rows = rows[rows.metric.isin(metrics)].dropna(subset=["value"])
    if rows.empty:
        return "none recorded (thesis protocol)"
    last = rows[rows.epoch == rows.epoch.max()]
    return (
        f"{int(last.value.sum())} of {len(last)} at epoch {last.epoch.max()}; "
        f"{int(rows.value.sum())} of {len(rows)} over epochs "
        f"{', '.join(map(str, sorted(set(rows.epoch))))}"
    )


def protocol_claims(thesis: pd.DataFrame, converged: pd.DataFrame) -> pd.DataFrame:
    """The 𝒱-information claims under both protocols, one row per (claim, model): each
    protocol's numbers and verdict, the converged run's certified terms, and `changes` where
    the verdicts differ."""
    rows = []
    for point in BUDGET_CLAIMS:
        for model, name in MODELS.items():
            ours, verdict = _judged(thesis, model, point)
            theirs, judged = _judged(converged, model, point)
            changes = "**changes**" if "not measured" not in (verdict, judged) and (
                verdict != judged
            ) else ""  # fmt: skip
            rows.append((point, name, ours, verdict, theirs, judged,
                         certified_text(converged, model), changes))  # fmt: skip
    columns = [
        "claim", "model", "thesis protocol", "verdict (thesis)", "converged protocol",
        "verdict (converged)", "certified (converged)", "verdict",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def markdown(table: pd.DataFrame) -> str:
    """The table in Markdown, its columns as the header, pipes in cells escaped."""
    lines = [
        "| " + " | ".join(map(str, table.columns)) + " |",
        "| " + " | ".join("---" for _ in table.columns) + " |",
    ]
    lines += [
        "| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join(lines)


def with_table(page: str, table: pd.DataFrame, marker: str = MARKER) -> str:
    """The page with the text between its two `marker` lines replaced by the table."""
    head, sep, rest = page.partition(marker)
    _, sep2, tail = rest.partition(marker)
    if not (sep and sep2):
        raise ValueError(f"the page needs two {marker} lines around its table")
    return f"{head}{marker}\n{markdown(table)}\n{marker}{tail}"


def page_tables(
    frame: pd.DataFrame, converged: pd.DataFrame | None = None
) -> dict[str, pd.DataFrame]:
    """Every generated table of the page, by its marker; the protocols' comparison when the
    converged protocol's results are given."""
    by_budget = budget_claims(frame)
    both = {} if converged is None else {PROTOCOLS: protocol_claims(frame, converged)}
    return {
        MARKER: claims(frame),
        BUDGET_VERDICTS: budget_verdicts(by_budget),
        BUDGET_VALUES: by_budget,
        **both,
    }


def with_tables(page: str, frame: pd.DataFrame, converged: pd.DataFrame | None = None) -> str:
    """The page with all its generated tables rewritten from `frame` (and `converged`)."""
    for marker, table in page_tables(frame, converged).items():
        page = with_table(page, table, marker)
    return page


def read(results: Path) -> pd.DataFrame:
    """An experiment folder (via results.load) or a tidy frame saved as CSV (the report's)."""
    if results.is_dir():
        return load(results)
    frame = pd.read_csv(results, keep_default_na=False, na_values=["", "NaN", "nan"])
    if BUDGET not in frame:  # results from before budget curves
        frame[BUDGET] = pd.NA
    return frame.astype({"layer": "Int64", BUDGET: "Int64", "value": float, "note": str})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path, help="experiment folder or tidy CSV")
    p.add_argument("--page", type=Path, required=True, help="markdown page to update")
    p.add_argument(
        "--converged", type=Path,
        help="the same sweep's results under the converged protocol (folder or tidy CSV)",
    )  # fmt: skip
    args = p.parse_args(argv)
    frame = read(args.results)
    converged = None if args.converged is None else read(args.converged)
    args.page.write_text(with_tables(args.page.read_text(), frame, converged))
    for table in page_tables(frame, converged).values():
        print(markdown(table), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
