"""The thesis' 𝒱-information claims under decoder families that cannot memorise, and the
figure of minimality per layer through a whole run (docs/reproduction.md, "The claims under
other decoder families").

    python -m raycompress.analysis.families --page docs/reproduction.md \
        --run mnistnet benchmarks/out/vinfo_whole_run_converged_linear.json \
        --run mnistnet benchmarks/out/vinfo_audit_mlp.json \
        --stops benchmarks/out/vinfo_families_fplus.json

Both kinds of input hold each measurement as the history does (`schema.VInfoResult` as JSON):
a whole run's (`benchmarks/vinfo_whole_run.py`, or `vinfo_audit.py`'s run: every epoch to the
stop) and single stopping
epochs' (`benchmarks/vinfo_certified.py --families`). They become the tidy frame's rows, so
that the claims are judged by the reproduction's own checks (`reproduction.CHECKS`), per
(model, family).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from raycompress.analysis import reproduction
from raycompress.analysis.tables import SPLITS, V_MIN, V_SUFF
from raycompress.schema import COLUMNS, FAMILY, SATURATED, VInfoResult

MARKER = "<!-- families -->"
SOURCE = "measured"  # which run measured a row: another run trains another encoder
WHOLE_RUN, STOPPING_EPOCH = "every epoch of one run", "the stopping epoch"
FIGURE = "families_minimality.png"  # beside the page, in its folder of figures


def _rows(source: str, model: str, epoch: int, key: str, result: dict) -> list[tuple]:
    layer, split, family = key.split("/")
    rows = VInfoResult.from_json(result).rows((epoch, split, int(layer), family))
    return [(source, model, *row) for row in rows]


def whole_run(path: Path, model: str) -> pd.DataFrame:
    """The tidy rows of every measurement of a whole run (`vinfo_whole_run.py`'s output)."""
    epochs = json.loads(path.read_text())["epochs"]
    rows = [
        row
        for epoch in epochs
        for key, result in epoch.get("results", {}).items()
        for row in _rows(WHOLE_RUN, model, epoch["epoch"], key, result)
    ]
    return _frame(rows)


def stopping_epochs(path: Path) -> pd.DataFrame:
    """The tidy rows of `vinfo_certified.py --families`'s output: keys
    `model/epochE/lL/split/protocol[/family]` (no family: the network's)."""
    rows = []
    for key, measured in json.loads(path.read_text()).items():
        model, epoch, layer, split, _, *family = key.split("/")
        named = f"{layer.removeprefix('l')}/{split}/{family[0] if family else 'network'}"
        epochs = int(epoch.removeprefix("epoch"))
        rows += _rows(STOPPING_EPOCH, model, epochs, named, measured["result"])
    return _frame(rows)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of one encoder per (source, model): another source trains another encoder."""
    frame = pd.DataFrame(rows, columns=[SOURCE, "model", *COLUMNS])
    runs = frame[SOURCE] + "/" + frame.model + "/" + frame[FAMILY].astype(str)
    return frame.assign(trial_id=runs)


def _saturated_text(rows: pd.DataFrame) -> str:
    """How many of the last measurement's sufficiency and minimality values are saturated."""
    values = rows[rows.metric.isin([V_SUFF, V_MIN])]
    last = values[values.epoch == values.epoch.max()]
    judged = last[SATURATED].dropna()
    return f"{int(judged.astype(bool).sum())} of {len(last)}" if len(judged) else "not judged"


def _measured_on_every_split(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the layers measured on both splits (a run cut short leaves some on one):
    the claims read only those, and their values name them."""
    values = rows[rows.metric.isin([V_SUFF, V_MIN])].dropna(subset=["value"])
    splits = values.groupby("layer").split.nunique()
    return rows[rows.layer.isin(splits[splits == len(SPLITS)].index)]


def family_claims(frame: pd.DataFrame) -> pd.DataFrame:
    """Each 𝒱-information claim per (model, family, run): the values the reproduction's check
    reads (of the layers measured on both splits), its verdict, how many values are certified
    and how many saturated."""
    out = []
    for point in reproduction.BUDGET_CLAIMS:
        for (model, family, source), rows in frame.groupby(["model", FAMILY, SOURCE]):
            rows = _measured_on_every_split(rows)
            _, ours, verdict = reproduction.CHECKS[point](rows, model)
            certified = reproduction.certified_text(rows, model)
            name = reproduction.MODELS.get(model, model)
            out.append((point, name, family, source, ours, verdict, certified,
                        _saturated_text(rows)))  # fmt: skip
    columns = ["claim", "model", "family", SOURCE, "values", "verdict", "certified", "saturated"]
    return pd.DataFrame(out, columns=columns)


def minimality_figure(frame: pd.DataFrame, out: Path) -> Path:
    """Minimality per layer against the epoch, train solid and test dashed, a saturated value
    ringed; one panel per (model, family) with more than one measured epoch."""
    rows = frame[frame.metric == V_MIN].dropna(subset=["value"])
    runs = [(key, r) for key, r in rows.groupby(["model", FAMILY]) if r.epoch.nunique() > 1]
    figure, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.4), squeeze=False)
    for ax, ((model, family), run) in zip(axes[0], runs, strict=True):
        for (layer, split), path in run.sort_values("epoch").groupby(["layer", "split"]):
            style = "-" if split == SPLITS[0] else "--"
            color = f"C{int(layer)}"
            ax.plot(path.epoch, path.value, style, color=color, label=f"l={layer} {split}")
            marked = path[path[SATURATED].fillna(False).astype(bool)]
            ax.scatter(marked.epoch, marked.value, s=60, facecolors="none", edgecolors="black")
        title = f"{reproduction.MODELS.get(model, model)}, $\\mathcal{{V}}$ = {family}"
        ax.set(xlabel="epoch", ylabel="minimality (bits)", title=title)
        ax.legend(fontsize=7, ncol=2, loc="center right")
    figure.tight_layout()
    figure.savefig(out, dpi=150)
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--page", type=Path, required=True, help="markdown page to update")
    p.add_argument("--run", nargs=2, action="append", default=[], metavar=("MODEL", "JSON"))
    p.add_argument("--stops", nargs="*", type=Path, default=[])
    args = p.parse_args(argv)
    frames = [whole_run(Path(path), model) for model, path in args.run]
    frames += [stopping_epochs(path) for path in args.stops if path.exists()]
    frame = pd.concat(frames, ignore_index=True)
    table = family_claims(frame)
    args.page.write_text(reproduction.with_table(args.page.read_text(), table, MARKER))
    folder = args.page.with_suffix("")
    folder.mkdir(exist_ok=True)
    print(reproduction.markdown(table))
    print(minimality_figure(frame, folder / FIGURE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
