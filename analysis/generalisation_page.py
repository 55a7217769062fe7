"""docs/generalisation.md: the `generalisation` sweep's answer, generated from committed values.

    python -m raycompress.analysis.generalisation_page RESULTS --page docs/generalisation.md \\
        [--trials-out docs/generalisation/trials.csv]

RESULTS is the sweep's experiment folder or the table of `generalisation.trial_values` saved
as CSV (`--trials-out` writes that table from a folder: one row per trial, what the page is
checked against). The command rewrites the tables between the page's markers: the headline
measures (`<!-- headline -->`: tr(Σ_W Σ_B⁺) of every layer and split, each layer's
compression gap, 𝒱-information, the baselines), the best ten by |Ψ| of every measure
(`<!-- best -->`), the headline measures against the accuracy gap (`<!-- accuracy gap -->`),
and the gap each statistic left (`<!-- gaps -->`).
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
ACCURACY = "<!-- accuracy gap -->"
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
    metric = measure.split("/")[0]
    return metric in (NC.TRACE, COMPRESSION_GAP, *map(str, Quantity), *map(str, Baseline))


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


def page_tables(trials: pd.DataFrame, config: list[str]) -> dict[str, pd.DataFrame]:
    ranking = gen.rank_trials(trials, config)
    by_accuracy = gen.rank_trials(trials, config, gen.ACCURACY_GAP)
    gaps = sorted({g for text in ranking.gaps for g in text.split("; ") if g})
    notes = pd.DataFrame({"statistic left empty": gaps or ["none"]})
    return {
        HEADLINE: _shown(ranking[ranking.measure.map(_headline)]),
        BEST: _shown(ranking[ranking[gen.RANK] <= BEST_COUNT]),  # ties at the cut all in
        ACCURACY: _shown(by_accuracy[by_accuracy.measure.map(_headline)]),
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
