"""docs/generalisation.md: the `generalisation` sweep's answer, generated from committed values.

    python -m raycompress.analysis.generalisation_page RESULTS --page docs/generalisation.md \\
        [--trials-out docs/generalisation/trials.csv]

RESULTS is the sweep's experiment folder or the table of `generalisation.trial_values` saved
as CSV (`--trials-out` writes that table from a folder: one row per trial, what the page is
checked against). The command rewrites the tables between the page's markers: the headline
measures (`<!-- headline -->`: tr(Σ_W Σ_B⁺) of every layer and split, each layer's
compression gap, 𝒱-information, the baselines), the best ten by |Ψ| of every measure
(`<!-- best -->`), the headline measures against the accuracy gap (`<!-- accuracy gap -->`),
𝒱-minimality of every family beside tr(Σ_W Σ_B⁺) per layer and split against the accuracy gap
(`<!-- minimality -->`), the values that are not measurements (`<!-- withheld -->`), how far
each axis moves the error gap against what the robust sign-error keeps
(`<!-- environments -->`), the measures it scores (`<!-- robust -->`), and the gap each
statistic left (`<!-- gaps -->`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from raycompress.analysis import generalisation as gen
from raycompress.analysis.reproduction import markdown, with_table
from raycompress.analysis.tables import COMPRESSION_GAP
from raycompress.results import TRIAL_ID, axis_columns, identical_layers, load
from raycompress.schema import NC, Baseline, Quantity

HEADLINE, BEST, GAPS = "<!-- headline -->", "<!-- best -->", "<!-- gaps -->"
ACCURACY, MINIMALITY = "<!-- accuracy gap -->", "<!-- minimality -->"
WITHHELD, ENVIRONMENTS, ROBUST = "<!-- withheld -->", "<!-- environments -->", "<!-- robust -->"
BEST_COUNT = 10
# the configuration columns of a committed trial table: what `trial_values` puts before its
# values (dataset, model and every axis the sweep records)
CONFIG_END = gen.EPOCH


def read_trials(results: Path) -> tuple[pd.DataFrame, list[str]]:
    """(trial table, configuration columns) of an experiment folder or a committed CSV."""
    if results.is_dir():
        frame = load(results)
        return gen.trial_values(frame, identical_layers(results)), axis_columns(frame)
    trials = pd.read_csv(results, index_col=TRIAL_ID)
    return trials, list(trials.columns[: list(trials.columns).index(CONFIG_END)])


def _headline(measure: str) -> bool:
    metric = gen.parse_measure(measure).metric
    return metric in (NC.TRACE, COMPRESSION_GAP, *map(str, Quantity), *map(str, Baseline))


def _beside_minimality(ranking: pd.DataFrame) -> pd.DataFrame:
    """𝒱-minimality of every family beside tr(Σ_W Σ_B⁺), per layer and split, layer by layer."""
    parts = pd.DataFrame([gen.parse_measure(m) for m in ranking.measure], index=ranking.index)
    kept = parts.metric.isin([Quantity.MINIMALITY, NC.TRACE]) & parts.split.notna()
    order = parts[kept].assign(nc=parts.metric.eq(NC.TRACE), family=parts.family.fillna(""))
    order = order.sort_values(["layers", "split", "nc", "family"], kind="stable")
    return ranking.loc[order.index]


def _number(value: float) -> str:
    """Three significant digits; a mean of ±1s that cancels is 0 (not 1e-17, nor "-0")."""
    return f"{round(value, 12) + 0.0:.3g}"


def _shown(ranking: pd.DataFrame) -> pd.DataFrame:
    """The ranking as the page prints it: its rank first, three significant digits, without
    the columns the sweep left empty (the gaps table says why) and without the gaps
    themselves."""
    numbers = ranking.drop(columns=["gaps", "environments", "configurations"])
    numbers = numbers.dropna(axis=1, how="all")
    numbers = numbers.loc[:, ~numbers.eq("").all()]  # a text column with nothing to say
    shown = numbers.map(lambda v: _number(v) if isinstance(v, float) else v)
    return shown[[gen.RANK, *(c for c in shown.columns if c != gen.RANK)]]


def _withheld(trials: pd.DataFrame, config: list[str]) -> pd.DataFrame:
    counts = gen.withheld(trials, gen.measures(trials, config)).reset_index()
    if counts.empty:
        return pd.DataFrame({"measure": ["none: every value is a measurement"]})
    return counts


def _environments(trials: pd.DataFrame, config: list[str]) -> pd.DataFrame:
    """How far each axis moves the error gap (Δ: an environment's mean absolute difference
    over its seed pairs, in points), against what the robust sign-error keeps."""
    table = gen.environment_table(trials, config)
    points = ["median_delta", "largest_delta"]
    table[points] = (100 * table[points]).map(_number)
    table["weighted_pairs"] = table.weighted_pairs.map(lambda share: f"{100 * share:.0f} %")
    return table.rename(
        columns={
            "seed_pairs": "seed pairs each",
            "median_delta": "median Δ error gap (points)",
            "largest_delta": "largest Δ",
            "weighted_pairs": "seed pairs weighted",
            "kept": f"kept (ESS ≥ {gen.MIN_ESS:g})",
        }
    )


def _robust(ranking: pd.DataFrame) -> pd.DataFrame:
    """The measures the robust sign-error scores, its worst case first."""
    scored = ranking[ranking.environments > 0].sort_values("robust_worst", kind="stable")
    if scored.empty:
        return pd.DataFrame({"measure": ["none: no environment kept"]})
    columns = ["measure", "robust_worst", "robust_mean", "robust_p90", "environments"]
    shown = scored[columns].map(lambda v: _number(v) if isinstance(v, float) else v)
    return shown.assign(robust_worst_at=scored.robust_worst_at)


def page_tables(trials: pd.DataFrame, config: list[str]) -> dict[str, pd.DataFrame]:
    ranking = gen.rank_trials(trials, config)
    by_accuracy = gen.rank_trials(trials, config, gen.ACCURACY_GAP)
    gaps = sorted({g for text in ranking.gaps for g in text.split("; ") if g})
    notes = pd.DataFrame({"statistic left empty": gaps or ["none"]})
    return {
        HEADLINE: _shown(ranking[ranking.measure.map(_headline)]),
        BEST: _shown(ranking[ranking[gen.RANK] <= BEST_COUNT]),  # ties at the cut all in
        ACCURACY: _shown(by_accuracy[by_accuracy.measure.map(_headline)]),
        MINIMALITY: _shown(_beside_minimality(by_accuracy)),
        WITHHELD: _withheld(trials, config),
        ENVIRONMENTS: _environments(trials, config),
        ROBUST: _robust(ranking),
        GAPS: notes,
    }


def with_tables(page: str, trials: pd.DataFrame, config: list[str]) -> str:
    for marker, table in page_tables(trials, config).items():
        page = with_table(page, table, marker)
    return page


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path, help="experiment folder or committed trial table (CSV)")
    p.add_argument("--page", type=Path, required=True, help="markdown page to update")
    p.add_argument("--trials-out", type=Path, help="write the trial table here (CSV)")
    args = p.parse_args(argv)
    trials, config = read_trials(args.results)
    if args.trials_out:
        args.trials_out.parent.mkdir(parents=True, exist_ok=True)
        trials.to_csv(args.trials_out)
    args.page.write_text(with_tables(args.page.read_text(), trials, config))
    for table in page_tables(trials, config).values():
        print(markdown(table), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
