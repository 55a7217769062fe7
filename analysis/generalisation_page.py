"""docs/generalisation.md: the `generalisation` sweep's answer, generated from committed values.

    python -m raycompress.analysis.generalisation_page RESULTS --page docs/generalisation.md \\
        [--trials-out docs/generalisation/trials.csv] [--before EARLIER.csv [--before-family F]]
        [--robust COMPANION [--robust-trials-out docs/generalisation/robust_trials.csv]]

RESULTS is the sweep's experiment folder or the table of `generalisation.trial_values` saved
as CSV (`--trials-out` writes that table from a folder: one row per trial, what the page is
checked against). The command rewrites the tables between the page's markers: the headline
measures (`<!-- headline -->`: tr(Σ_W Σ_B⁺) of every layer and split, each layer's
compression gap, 𝒱-information, the baselines), the best ten by |Ψ| of every measure
(`<!-- best -->`), the headline measures against the accuracy gap (`<!-- accuracy gap -->`),
𝒱-minimality of every family beside tr(Σ_W Σ_B⁺) per layer and split against the accuracy gap
(`<!-- minimality -->`), the values that are not measurements (`<!-- withheld -->`), how far
each axis moves the error gap against what the robust sign-error keeps
(`<!-- environments -->`), the measures it scores (`<!-- robust -->`), the gap each
statistic left (`<!-- gaps -->`), with `--before`, the headline measures' τ, Ψ and CMI in
an earlier run beside this one's (`<!-- changed -->`), and with `--robust`, the environments
and robust sign-error of a companion sweep whose grid is made for it
(`<!-- companion environments -->`, `<!-- companion robust -->`; `generalisation_robust`).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
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
CHANGED = "<!-- changed -->"
COMPANION_ENVIRONMENTS = "<!-- companion environments -->"
COMPANION_ROBUST = "<!-- companion robust -->"
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
    """Three significant digits; a mean of ±1s that cancels is 0 (not 1e-17, nor "-0");
    nothing for a statistic that is empty (the gaps table says why)."""
    return "" if math.isnan(value) else f"{round(value, 12) + 0.0:.3g}"


def withheld_text(counts: pd.DataFrame) -> dict[str, str]:
    """Per measure of `gen.withheld`'s counts with values that are not measurements, how
    many ("3 uncertified, 1 saturated")."""
    return {
        name: ", ".join(f"{row[status]} {status}" for status in gen.STATUSES if row[status])
        for name, row in counts.iterrows()
    }


def _with_intervals(numbers: pd.DataFrame) -> pd.DataFrame:
    """Each statistic that has an interval over seeds as one cell, "0.5 [0.2, 0.8]", and its
    interval columns gone; a statistic without a drawn interval as its value alone."""
    numbers = numbers.copy()
    for low in [c for c in numbers.columns if c.endswith(gen.LOW)]:
        name = low.removesuffix(gen.LOW)
        lows, highs = numbers.pop(low), numbers.pop(f"{name}{gen.HIGH}")
        if name not in numbers:  # the statistic empty throughout: nothing to bracket
            continue
        value = numbers[name]
        drawn = value.notna() & lows.notna()
        cells = value.map(_number).astype(object)
        cells[drawn] = [
            f"{_number(v)} [{_number(lo)}, {_number(hi)}]"
            for v, lo, hi in zip(value[drawn], lows[drawn], highs[drawn], strict=True)
        ]
        numbers[name] = cells
    return numbers


def _shown(ranking: pd.DataFrame, withheld: dict[str, str], trials: int) -> pd.DataFrame:
    """The ranking as the page prints it: its rank first (none for a measure with no
    statistic), three significant digits, each interval over seeds beside its statistic
    (`_with_intervals`), how many of each measure's values were withheld (`withheld_text`, of
    `trials`), without the columns the sweep left empty (the gaps table says why) and without
    the gaps themselves."""
    numbers = ranking.drop(columns=["gaps", "environments", "configurations"])
    numbers = _with_intervals(numbers.dropna(axis=1, how="all"))
    numbers[f"withheld (of {trials})"] = [withheld.get(m, "") for m in ranking.measure]
    numbers = numbers.loc[:, ~numbers.eq("").all()]  # a text column with nothing to say
    rank = numbers.pop(gen.RANK).map(lambda r: "" if pd.isna(r) else str(r))
    shown = numbers.map(lambda v: _number(v) if isinstance(v, float) else v)
    return shown.assign(**{gen.RANK: rank})[[gen.RANK, *shown.columns]]


def _withheld(counts: pd.DataFrame) -> pd.DataFrame:
    if counts.empty:
        return pd.DataFrame({"measure": ["none: every value is a measurement"]})
    return counts.reset_index()


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
    """The measures the robust sign-error scores (against the error gap, whatever the gap the
    ranking was made against), its worst case first."""
    scored = ranking[ranking.environments > 0].sort_values("robust_worst", kind="stable")
    if scored.empty:
        return pd.DataFrame({"measure": ["none: no environment kept"]})
    columns = ["measure", "robust_worst", "robust_mean", "robust_p90", "environments"]
    shown = scored[columns].map(lambda v: _number(v) if isinstance(v, float) else v)
    return shown.assign(robust_worst_at=scored.robust_worst_at)


@dataclass(frozen=True)
class Before:
    """An earlier run's trial table to compare with (`read_trials`), `family` the decoder
    family its unnamed 𝒱-information columns are under today's names (None: none named)."""

    trials: pd.DataFrame
    config: list[str]
    family: str | None = None

    def renamed(self, measure: str) -> str:
        parts = gen.parse_measure(measure)
        if self.family is None or parts.family or parts.metric not in set(map(str, Quantity)):
            return measure
        named = f"{parts.metric}[{self.family}]"
        return "/".join(p for p in (named, parts.layers, parts.split) if p)


def _changed(ranking: pd.DataFrame, before: Before) -> pd.DataFrame:
    """The headline measures of both runs against the loss gap: τ, Ψ and CMI then and now."""
    then = gen.rank_trials(before.trials, before.config, resamples=0)
    then = then.assign(measure=then.measure.map(before.renamed)).set_index("measure")
    now = ranking.set_index("measure")
    both = [m for m in now.index if m in then.index and _headline(m)]
    statistics = ["tau", "Psi", "cmi"]
    table = pd.concat(
        {"then": then.loc[both, statistics], "now": now.loc[both, statistics]}, axis=1
    )
    table.columns = [f"{statistic} {when}" for when, statistic in table.columns]
    table = table[[f"{s} {w}" for s in statistics for w in ("then", "now")]]
    return table.map(_number).reset_index()


def _companion(trials: pd.DataFrame, config: list[str]) -> dict[str, pd.DataFrame]:
    """A companion sweep's environments and the measures its robust sign-error scores."""
    return {
        COMPANION_ENVIRONMENTS: _environments(trials, config),
        COMPANION_ROBUST: _robust(gen.rank_trials(trials, config, resamples=0)),
    }


def page_tables(
    trials: pd.DataFrame,
    config: list[str],
    before: Before | None = None,
    companion: tuple[pd.DataFrame, list[str]] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every generated table of the page, by its marker; the comparison with an earlier run
    (CHANGED) where `before` is given, a companion sweep's robust sign-error where
    `companion` (trial table, configuration columns) is."""
    ranking = gen.rank_trials(trials, config)
    by_accuracy = gen.rank_trials(trials, config, gen.ACCURACY_GAP)
    counts = gen.withheld(trials, gen.measures(trials, config))
    # what the sweep is too small for: the gaps of the measures with every value measured
    measured = ranking[~ranking.measure.isin(counts.index)]
    gaps = sorted({g for text in measured.gaps for g in text.split("; ") if g})
    if len(counts):
        gaps.append(
            f"{len(counts)} measures with values that are not measurements: how many in the "
            "withheld table; ranked only where measured in every configuration"
        )
    notes = pd.DataFrame({"statistic left empty": gaps or ["none"]})
    withheld, n = withheld_text(counts), len(trials)
    best = ranking[gen.RANK].le(BEST_COUNT).fillna(False).astype(bool)  # ties at the cut all in
    return {
        HEADLINE: _shown(ranking[ranking.measure.map(_headline)], withheld, n),
        BEST: _shown(ranking[best], withheld, n),
        ACCURACY: _shown(by_accuracy[by_accuracy.measure.map(_headline)], withheld, n),
        MINIMALITY: _shown(_beside_minimality(by_accuracy), withheld, n),
        WITHHELD: _withheld(counts),
        ENVIRONMENTS: _environments(trials, config),
        ROBUST: _robust(ranking),
        GAPS: notes,
        **({CHANGED: _changed(ranking, before)} if before is not None else {}),
        **(_companion(*companion) if companion is not None else {}),
    }


def _written(page: str, tables: dict[str, pd.DataFrame]) -> str:
    for marker, table in tables.items():
        page = with_table(page, table, marker)
    return page


def with_tables(
    page: str,
    trials: pd.DataFrame,
    config: list[str],
    before: Before | None = None,
    companion: tuple[pd.DataFrame, list[str]] | None = None,
) -> str:
    """The page with every generated table rewritten (`page_tables`)."""
    return _written(page, page_tables(trials, config, before, companion))


MARKERS = (HEADLINE, BEST, ACCURACY, MINIMALITY, WITHHELD, ENVIRONMENTS, ROBUST, GAPS)


def _wrong_input(args: argparse.Namespace) -> str:
    """What is wrong with the command's input, in one line ('' when nothing is)."""
    if args.before_family and not args.before:
        return "--before-family names the family of --before's values: give --before too"
    if args.robust_trials_out and not args.robust:
        return "--robust-trials-out writes --robust's trial table: give --robust too"
    for what, path in (("RESULTS", args.results), ("--before", args.before),
                       ("--robust", args.robust)):  # fmt: skip
        if path is not None and not path.exists():
            return f"{what} {path} does not exist: give an experiment folder or a trial table"
    if not args.page.is_file():
        return f"--page {args.page} is not a file: give the markdown page to update"
    text = args.page.read_text()
    optional = [*([CHANGED] if args.before else []),
                *([COMPANION_ENVIRONMENTS, COMPANION_ROBUST] if args.robust else [])]  # fmt: skip
    for marker in (*MARKERS, *optional):
        if text.count(marker) != 2:
            return f"--page {args.page} needs two {marker} lines around that table: add them"
    return ""


def _save(trials: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    trials.to_csv(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path, help="experiment folder or committed trial table (CSV)")
    p.add_argument("--page", type=Path, required=True, help="markdown page to update")
    p.add_argument("--trials-out", type=Path, help="write the trial table here (CSV)")
    p.add_argument("--before", type=Path, help="an earlier run's trial table to compare with")
    p.add_argument(
        "--before-family", help="the decoder family of the earlier run's unnamed 𝒱-information"
    )
    p.add_argument(
        "--robust", type=Path, help="a companion sweep's folder or trial table: its environments"
    )
    p.add_argument("--robust-trials-out", type=Path, help="write --robust's trial table here (CSV)")
    args = p.parse_args(argv)
    wrong = _wrong_input(args)
    if wrong:
        print(f"error: {wrong}", file=sys.stderr)
        return 2
    trials, config = read_trials(args.results)
    before = Before(*read_trials(args.before), args.before_family) if args.before else None
    companion = read_trials(args.robust) if args.robust else None
    if args.trials_out:
        _save(trials, args.trials_out)
    if companion is not None and args.robust_trials_out:
        _save(companion[0], args.robust_trials_out)
    tables = page_tables(trials, config, before, companion)
    args.page.write_text(_written(args.page.read_text(), tables))
    for table in tables.values():
        print(markdown(table), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
