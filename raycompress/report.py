"""Render every figure and table of a sweep's results folder into a folder with an index.html.

    python -m raycompress.report EXPERIMENT_DIR [--out DIR]

EXPERIMENT_DIR is the experiment folder a sweep wrote (STORAGE_PATH/NAME). The folder may
belong to a sweep that is still running or partly failed: what is missing is a gap in a figure,
and a figure with nothing to draw yet is listed as such. Usage errors exit with status 2 and
one line. The report goes to DIR, by default into the experiment folder itself, or for one in
object storage under ~/raycompress_reports (`default_out`): never into the current directory
unasked.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a command renders files; no display needed

import pandas as pd

from raycompress import record, storage
from raycompress.analysis import figures, generalisation, tables
from raycompress.results import (
    INCOMPLETE,
    axis_columns,
    identical_layers,
    load,
    trial_folders,
    trial_models,
)
from raycompress.storage import Folder, StorageError

GENERALISATION = figures.GENERALISATION  # the ranking's table, figure and section
ENVIRONMENTS = "generalisation_environments"  # what the robust sign-error could keep, per axis

TABLES = {
    "final_metrics": "Final metrics per trial (last epoch; last measured 𝒱-information)",
    "equi_separation": "Equi-separation per trial, epoch and split",
    "equi_separation_onset": (
        f"Epoch from which |Pearson r| ≥ {tables.EQUI_SEPARATION_THRESHOLD} holds to the end"
    ),
    GENERALISATION: (
        "Every measure ranked by how it tracks the generalisation gap across the sweep's "
        "configurations (Kendall τ, ψ per axis, Ψ, CMI, robust sign-error)"
    ),
    ENVIRONMENTS: (
        "Per swept axis: how far changing it moves the error gap (seed pairs, median and "
        "largest difference, share of pairs beyond the test set's noise) and the environments "
        "the robust sign-error keeps"
    ),
    "results": "Every value: the tidy frame of raycompress.results.load",
}


def generalisation_ranking(
    frame: pd.DataFrame, identical: pd.DataFrame | None = None
) -> tuple[dict[str, pd.DataFrame], str]:
    """The sweep's measures ranked against the gap (GENERALISATION: `rank_trials`, each
    representation once: `identical`) with its environments per axis (ENVIRONMENTS:
    `environment_table`), or no table and why the sweep is too small to rank ('' for a sweep
    without a swept axis, where the question does not arise)."""
    trials, config = generalisation.trial_values(frame, identical), axis_columns(frame)
    why = generalisation.too_few_configurations(trials, config)
    if not why:
        return {
            GENERALISATION: generalisation.rank_trials(trials, config),
            ENVIRONMENTS: generalisation.environment_table(trials, config),
        }, ""
    return {}, why if generalisation.grid_axes(trials, config) else ""


def derived_tables(
    frame: pd.DataFrame, ranked: dict[str, pd.DataFrame] | None = None
) -> dict[str, pd.DataFrame]:
    """The report's tables, with those of `generalisation_ranking` (`ranked`)."""
    equi = tables.equi_separation(frame)
    return {
        "final_metrics": tables.final_metrics(frame),
        "equi_separation": equi,
        "equi_separation_onset": tables.equi_separation_onset(equi),
        **(ranked or {}),
        "results": frame,
    }


def _params(trial: Folder) -> dict:
    try:
        return record.read_params(trial)
    except record.DamagedFileError as err:
        return {"settings": str(err)}


def trial_settings(results_dir: Folder) -> pd.DataFrame:
    """Each trial's resolved settings (Tune's `record.PARAMS_FILE`) and the network it ran
    (stages, batch-norm regime, adaptation), one row per trial folder."""
    rows = [{"trial folder": trial.name, **_params(trial)} for trial in trial_folders(results_dir)]
    return pd.DataFrame(rows).merge(trial_models(results_dir), on="trial folder", how="left")


def draw(
    frame: pd.DataFrame, out: Path, identical: pd.DataFrame | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Save every figure that has something to draw, each layer that is the same as another
    drawn once (`identical`, `results.identical_layers`): ({name: caption}, {name: why not})."""
    drawn, missing = {}, {}
    for name, make in figures.FIGURES.items():
        try:
            figure = make(frame, identical)
        except figures.NothingToPlot as err:
            missing[name] = str(err)
            continue
        figure.save(out)
        figure.close()
        drawn[name] = figure.caption
    return drawn, missing


def render(results: str | Path, out: Path) -> dict[str, str]:
    """Write figures (PNG, SVG), tables (CSV) and index.html of an experiment folder (local or
    a URI, `storage.folder`); returns {figure: why missing}."""
    if storage.is_uri(results):
        storage.check(str(results))
    results_dir = storage.folder(results)
    frame = load(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    unranked = ""
    if frame.empty:
        drawn, missing, derived = {}, dict.fromkeys(figures.FIGURES, "no finished epoch yet"), {}
    else:
        identical = identical_layers(results_dir)
        drawn, missing = draw(frame, out, identical)
        ranked, unranked = generalisation_ranking(frame, identical)
        derived = derived_tables(frame, ranked)
        if GENERALISATION in derived:  # a sweep with two or more configurations
            figure = figures.generalisation_measures(frame, derived[GENERALISATION], identical)
            figure.save(out)
            figure.close()
            drawn[GENERALISATION] = figure.caption
    for name, table in derived.items():
        table.to_csv(out / f"{name}.csv", index=False)
    page = index_html(results_dir, frame, drawn, missing, derived, unranked)
    (out / "index.html").write_text(page)
    return missing


def _settings_table(results_dir: Folder) -> str:
    """The sweep's description: what it is, the code that ran it, its param space, resources."""
    try:
        meta = record.read_description(results_dir)
    except record.DamagedFileError as err:
        return f"<p>{html.escape(str(err))}</p>"
    code = (
        f"raycompress {meta.get('version', 'unknown')}, commit "
        f"{meta.get('commit') or 'unknown (not run from a git checkout)'}"
        if meta
        else "unknown (no sweep description in this folder)"
    )
    shown = {
        **meta.get("param_space", {}),
        **{f"resources: {k}": v for k, v in meta.get("resources", {}).items()},
    }
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(str(v))}</code></td></tr>"
        for k, v in shown.items()
    )
    return (
        f"<p>{html.escape(meta.get('description', ''))}</p>"
        f"<p>Code: <code>{html.escape(code)}</code></p><table>{rows}</table>"
    )


def _wide(table: str) -> str:
    """A table that scrolls sideways inside the page instead of running off its edge."""
    return f"<div class='wide'>{table}</div>"


def _generalisation_section(
    derived: dict[str, pd.DataFrame], drawn: dict[str, str], unranked: str
) -> list[str]:
    """'Does compression track generalisation?': the ranking, its figure and its environments,
    for a sweep with enough configurations; one line saying why not (`unranked`) for a sweep
    with too few; nothing without either."""
    ranking = derived.get(GENERALISATION)
    if ranking is None:
        if not unranked:
            return []
        said = html.escape(unranked, quote=False)
        return [f"<p><b>Does compression track generalisation?</b> Not ranked: {said}.</p>"]
    figure = (
        [f"<figure><img src='{GENERALISATION}.png' alt='{GENERALISATION}'><figcaption>"
         f"{html.escape(drawn[GENERALISATION])}</figcaption></figure>"]
        if GENERALISATION in drawn else []
    )  # fmt: skip
    return [
        "<h2>Does compression track generalisation?</h2>",
        "<p>Each measure at the common point (the epoch where training met the loss threshold; "
        "the last epoch of a run that never met it), against the generalisation gap (test − "
        "train loss), across the sweep's configurations (seeds averaged): Kendall τ with a "
        "bootstrap interval over seeds, ψ per swept axis and their mean Ψ (Jiang et al. 2020), "
        "the conditional-mutual-information score (× 100, by Jiang et al.'s definition), and "
        "the robust sign-error "
        "over environments (worst, mean, 90th percentile; Dziugaite et al. 2020). A statistic "
        "the sweep is too small for is empty, with the reason in <code>gaps</code> "
        f"(<a href='{GENERALISATION}.csv'>CSV</a>).</p>",
        _wide(ranking.to_html(index=False, na_rep="", float_format="{:.3g}".format)),
        *figure,
        "<p>How far changing each axis moves the error gap (train − test accuracy), against "
        "what the robust sign-error can keep: an environment of s seeds a configuration has "
        "s² seed pairs, and a pair counts only where its error gaps differ by more than the "
        f"test set resolves (<a href='{ENVIRONMENTS}.csv'>CSV</a>).</p>",
        _wide(derived[ENVIRONMENTS].to_html(index=False, float_format="{:.3g}".format)),
    ]


def index_html(
    results_dir: Folder,
    frame: pd.DataFrame,
    drawn: dict[str, str],
    missing: dict[str, str],
    derived: dict[str, pd.DataFrame],
    unranked: str = "",
) -> str:
    """One page: the sweep's configuration, its trials, final metrics, figures and tables;
    `unranked`: why the sweep is too small to rank its measures (`generalisation_ranking`)."""
    title = html.escape(f"raycompress report: {results_dir.name}")
    epochs = frame.groupby("trial_id").epoch.max()
    final = derived.get("final_metrics")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}img{max-width:100%}"
        "table{border-collapse:collapse;font-size:85%}td,th{border:1px solid #ccc;"
        "padding:2px 6px}.wide{overflow-x:auto}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>Results folder <code>{html.escape(str(results_dir))}</code>: {len(epochs)} "
        f"trial(s) with results, {int(epochs.sum()) if len(epochs) else 0} epochs in all.</p>",
        *(
            f"<p><b>Incomplete: {html.escape(what)}</b>: {html.escape(why)}</p>"
            for what, why in frame.attrs.get(INCOMPLETE, {}).items()
        ),
        "<h2>Sweep configuration</h2>",
        _settings_table(results_dir),
        "<h2>Trials</h2>",
        _wide(trial_settings(results_dir).to_html(index=False, na_rep="")),
        "<h2>Final metrics</h2>",
        "<p>No finished epoch yet.</p>"
        if final is None
        else "<p>One column per trial, one row per quantity (metric/split/layer).</p>"
        + _wide(final.set_index("trial_id").T.to_html(na_rep="", float_format="{:.4g}".format)),
        *_generalisation_section(derived, drawn, unranked),
        "<h2>Figures</h2>",
        *(
            f"<figure><img src='{name}.png' alt='{name}'><figcaption>{html.escape(caption)} "
            f"(<a href='{name}.svg'>SVG</a>)</figcaption></figure>"
            for name, caption in drawn.items()
            if name != GENERALISATION  # shown in its own section
        ),
        *(
            f"<p><b>{name}</b>: not drawn ({html.escape(why)}).</p>"
            for name, why in missing.items()
        ),
        "<h2>Tables (CSV)</h2><ul>",
        *(
            f"<li><a href='{name}.csv'>{name}.csv</a>: {html.escape(TABLES[name])}</li>"
            for name in derived
        ),
        "</ul></body></html>",
    ]
    return "\n".join(parts)


REPORT_FOLDER = "report"  # the default report's folder inside a local experiment folder
# where the report of an experiment in object storage goes by default, under the home folder:
# the command only reads the bucket
LOCAL_REPORTS = "raycompress_reports"


def default_out(results: str | Path) -> Path:
    """The report's folder when --out is not given: EXPERIMENT_DIR/report for a local
    experiment folder; for a URI, ~/raycompress_reports/ and the URI as a path
    (s3://BUCKET/runs/demo → ~/raycompress_reports/s3/BUCKET/runs/demo)."""
    if storage.is_uri(results):
        scheme, _, rest = str(results).partition("://")
        return Path.home() / LOCAL_REPORTS / scheme / rest.split("?", 1)[0].strip("/")
    return Path(results).expanduser() / REPORT_FOLDER


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m raycompress.report", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "results_dir",
        metavar="EXPERIMENT_DIR",
        help="the experiment folder a sweep wrote: a path or a URI (s3://…)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"folder for the figures, tables and index.html (default: EXPERIMENT_DIR/"
        f"{REPORT_FOLDER}; for a URI, which is only read, ~/{LOCAL_REPORTS}/ followed by the "
        f"URI without '://': s3://BUCKET/runs/demo → ~/{LOCAL_REPORTS}/s3/BUCKET/runs/demo)",
    )
    args = p.parse_args(argv)
    out = args.out or default_out(args.results_dir)
    try:
        missing = render(args.results_dir, out)
    except (FileNotFoundError, StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {out / 'index.html'}")
    for name, why in missing.items():
        print(f"  {name}: not drawn ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
