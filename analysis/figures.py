"""The thesis' figures (chapter 3) for any sweep, faceted by its axes, seeds pooled.

Each function takes the tidy frame of `raycompress.results.load` and returns a `Figure`: the
seaborn grid and the rows it draws (`data`). Train is solid, test dashed; missing values
(epochs without a measurement, a sweep still running, a failed task) are gaps, not errors.
A frame without anything to draw raises `NothingToPlot`. Panels come in one order in every
figure (`tables.panel_order`).

Layers. `identical` (`results.identical_layers` of the experiment folder; every figure takes
it, so that the report calls them alike) names the layers whose representation is the same:
each such group is drawn once, under all its names ("h3 = penultimate": f₋'s penultimate
features are h³ flattened, whose line would lie under the other's). Without it every layer is
drawn.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from raycompress import schema
from raycompress.analysis import generalisation, tables
from raycompress.analysis.tables import SPLITS, V_MIN, V_SUFF
from raycompress.results import axis_columns
from raycompress.schema import ACCURACY, BUDGET, LOSS, NC

NC_TRACE = r"$\mathrm{tr}(\Sigma_W \Sigma_B^{+})$"  # axis labels; captions (HTML) use plain text
DASHES = {"train": "", "test": (4, 2)}
MARKERS = {"train": "o", "test": "s"}
BAND = ("sd", 1)  # seeds pooled: mean ± one standard deviation
# per-epoch lines: train solid with circles, test dashed with squares, seeds as a band
BY_SPLIT = {
    "style": "split", "style_order": SPLITS, "dashes": DASHES, "markers": MARKERS,
    "markersize": 4, "errorbar": BAND,
}  # fmt: skip
NC_STATISTICS = {
    NC.TRACE_RATIO: r"$\mathrm{tr}\,\Sigma_W / \mathrm{tr}\,\Sigma_B$",
    NC.CDNV: "CDNV",
    NC.EQUINORM: "NC2 equinorm (CV of class-mean norms)",
    NC.EQUIANGULARITY: "NC2 equiangularity",
    NC.SELF_DUALITY: "NC3 self-duality",
    NC.NCC_AGREEMENT: "NC4 agreement with nearest class mean",
}
LOG_SCALED = {NC.TRACE, NC.TRACE_RATIO, NC.CDNV}


class NothingToPlot(ValueError):
    """The frame holds none of the values a figure draws."""


@dataclass
class Figure:
    name: str
    caption: str
    grid: sns.FacetGrid
    data: pd.DataFrame  # the rows drawn, before seaborn pools seeds

    def save(self, folder: str | Path) -> list[Path]:
        """Write `<name>.png` and `<name>.svg` into folder; returns their paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{self.name}.{ext}" for ext in ("png", "svg")]
        for path in paths:
            self.grid.figure.savefig(path, dpi=150, bbox_inches="tight")
        return paths

    def close(self) -> None:
        plt.close(self.grid.figure)


def _prepare(
    frame: pd.DataFrame, metrics: list[str], identical: pd.DataFrame | None = None
) -> pd.DataFrame:
    rows = frame[frame.metric.isin(metrics)].dropna(subset=["value"])
    if rows.empty:
        raise NothingToPlot(f"no values of {', '.join(metrics)} in these results")
    # named within the whole frame: "penultimate" is found among the NC layers, also for the
    # 𝒱-information rows of the layer it is the same as
    names = tables.with_layer_names(frame, identical).layer_name
    rows = tables.with_family_panels(tables.with_panels(rows.assign(layer_name=names), frame))
    return _once_per_layer(rows.sort_values(["trial_id", "metric", "split", "layer", "epoch"]))


def _once_per_layer(rows: pd.DataFrame) -> pd.DataFrame:
    """One value per layer name: of layers that are the same, the highest's (rows sorted by
    layer), which has every statistic (NC3 is measured at the penultimate features only)."""
    keys = ["trial_id", "epoch", "split", "metric", BUDGET, "layer_name", schema.FAMILY]
    keys = [k for k in keys if k in rows.columns]
    return rows[rows.layer_name.isna() | ~rows.duplicated(keys, keep="last")]


def _panels(data: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """The panels of data, in the order of every figure (a trial's decoder families after
    it, in the order the frame lists them)."""
    present = set(data.panel)
    families = ["", *(tables.FAMILY_PANEL.format(f) for f in tables.family_order(frame))]
    return [p + f for p in tables.panel_order(frame) for f in families if p + f in present]


def _wrap(data: pd.DataFrame) -> int:
    return min(4, data.panel.nunique())


def _epoch_lines(
    data: pd.DataFrame, frame: pd.DataFrame, rows: list[str], hue: str, hue_order: list[str]
) -> sns.FacetGrid:
    """Metric rows × panel columns of per-epoch lines, one per `hue` value and split."""
    return sns.relplot(
        data, x="epoch", y="value", row="metric", col="panel", kind="line",
        row_order=[m for m in rows if m in set(data.metric)], col_order=_panels(data, frame),
        hue=hue, hue_order=hue_order, **BY_SPLIT, height=2.6, aspect=1.3,
        facet_kws={"sharey": "row"},
    )  # fmt: skip


def _per_layer(
    data: pd.DataFrame,
    frame: pd.DataFrame,
    labels: dict[str, str],
    log_scaled: set[str] = LOG_SCALED,
) -> sns.FacetGrid:
    """One row per metric in labels, one line per layer and split; a saturated value (a
    certified 𝒱-information value at its ceiling) ringed."""
    grid = _epoch_lines(data, frame, list(labels), "layer_name", tables.layer_order(data))
    _label_rows(grid, labels, log_scaled)
    if schema.SATURATED in data:
        saturated = data[data[schema.SATURATED].fillna(False).astype(bool)]
        points = saturated.groupby(["metric", "panel", "epoch", "layer_name", "split"]).value
        for (metric, panel, epoch, *_), value in points.mean().items():
            grid.axes_dict[metric, panel].scatter(
                epoch, value, s=70, facecolors="none", edgecolors="black", linewidths=0.8,
                zorder=5,
            )  # fmt: skip
    return grid


def _finish(grid: sns.FacetGrid, epochs_on_x: bool = True) -> None:
    """Panel titles without variable names, whole epochs, legend entries in plain words."""
    grid.set_titles(template="{col_name}", col_template="{col_name}")
    if epochs_on_x:
        for ax in grid.axes.flat:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if grid.legend is not None:
        grid.legend.set_title("")
        for text in grid.legend.texts:
            text.set_text({"layer_name": "layer"}.get(text.get_text(), text.get_text()))


def _label_rows(grid: sns.FacetGrid, labels: dict[str, str], log_scaled: set[str]) -> None:
    _finish(grid)
    for metric, axes_row in zip(grid.row_names, grid.axes, strict=True):
        axes_row[0].set_ylabel(labels[metric])
        if metric in log_scaled:
            for ax in axes_row:
                ax.set_yscale("log")


def accuracy_loss(frame: pd.DataFrame, identical: pd.DataFrame | None = None) -> Figure:
    """Accuracy and cross-entropy per epoch, train solid and test dashed (thesis fig. 3.1);
    whole-network values, so `identical` changes nothing."""
    data = _prepare(frame, [ACCURACY, LOSS], identical)
    data = data[data.layer.isna()]
    grid = _epoch_lines(data, frame, [ACCURACY, LOSS], "split", SPLITS)
    _label_rows(grid, {ACCURACY: "accuracy", LOSS: "cross-entropy (nats)"}, set())
    caption = "Accuracy and loss of the main network after each epoch (fig. 3.1)."
    return Figure("accuracy_loss", caption, grid, data)


def nc_trace(frame: pd.DataFrame, identical: pd.DataFrame | None = None) -> Figure:
    """tr(Σ_W Σ_B⁺) per layer and epoch on a log scale (thesis fig. 3.2)."""
    data = _prepare(frame, [NC.TRACE], identical)
    grid = _per_layer(data, frame, {NC.TRACE: NC_TRACE})
    caption = "Neural collapse tr(Σ_W Σ_B⁺) of every layer after each epoch (fig. 3.2)."
    return Figure("nc_trace", caption, grid, data)


def compression_gap(frame: pd.DataFrame, identical: pd.DataFrame | None = None) -> Figure:
    """Compression gap (test − train tr(Σ_W Σ_B⁺)) against generalisation gap (test − train
    loss), epochs with a positive generalisation gap only (thesis fig. 3.3)."""
    gaps = tables.gaps(frame)
    gaps = gaps[gaps.generalisation_gap > 0]
    if gaps.empty:
        raise NothingToPlot("no epoch with both splits' loss and NC and a positive gap")
    # the NC layers of each trial name the points, as in the other NC figures
    named = tables.with_layer_names(gaps.assign(metric=NC.TRACE), identical)
    data = _once_per_layer(tables.with_panels(named.sort_values("layer"), frame))
    grid = sns.relplot(
        data, x="generalisation_gap", y="compression_gap", col="panel", col_wrap=_wrap(data),
        col_order=_panels(data, frame), hue="layer_name", hue_order=tables.layer_order(data),
        kind="scatter", height=2.8, aspect=1.2, facet_kws={"sharex": False, "sharey": False},
    )  # fmt: skip
    _finish(grid, epochs_on_x=False)
    grid.set_axis_labels("generalisation gap (test − train loss, nats)", f"Δ {NC_TRACE}")
    caption = (
        "Compression gap (test − train tr(Σ_W Σ_B⁺)) against the generalisation gap, "
        "one point per epoch and layer, positive generalisation gaps only (fig. 3.3)."
    )
    return Figure("compression_gap", caption, grid, data)


def equi_separation(frame: pd.DataFrame, identical: pd.DataFrame | None = None) -> Figure:
    """Per epoch: Pearson correlation of log tr(Σ_W Σ_B⁺) with the layer index, and the
    fitted ratio r between consecutive layers (thesis fig. 3.4); one line per split, over the
    hidden layers as `tables.equi_separation` takes them, so `identical` changes nothing."""
    table = tables.equi_separation(frame)
    if table.empty:
        raise NothingToPlot("fewer than two hidden layers with a positive tr(Σ_W Σ_B⁺)")
    long = table.melt(
        id_vars=["trial_id", "epoch", "split"], value_vars=["pearson", "ratio"],
        var_name="metric", value_name="value",
    )  # fmt: skip
    data = tables.with_panels(long.dropna(subset=["value"]), frame)
    grid = _epoch_lines(data, frame, ["pearson", "ratio"], "split", SPLITS)
    labels = {
        "pearson": f"Pearson r(log {NC_TRACE}, l)",
        "ratio": r"fitted ratio $r$ between layers",
    }
    _label_rows(grid, labels, set())
    caption = (
        "Equi-separation law: per epoch, the Pearson correlation of log tr(Σ_W Σ_B⁺) with the "
        "layer index over the hidden layers, and the fitted ratio r between consecutive "
        "layers (fig. 3.4)."
    )
    return Figure("equi_separation", caption, grid, data)


def vinfo_curves(frame: pd.DataFrame, identical: pd.DataFrame | None = None) -> Figure:
    """Sufficiency and minimality (bits) per layer at every measured epoch (figs. 3.5, 3.7)."""
    data = _prepare(frame, [V_SUFF, V_MIN], identical)
    labels = {
        V_SUFF: r"sufficiency $I_{\mathcal{V}}(h^l \to y)$ (bits)",
        V_MIN: r"minimality $I_{\mathcal{V}}(h^l \to \mathrm{Dec}(x, \mathcal{Y}))$ (bits)",
    }
    if len(families := tables.family_order(data)) == 1:  # several: each its own panels
        labels = {
            metric: label + "\n" + _family_label(families[0]) for metric, label in labels.items()
        }
    grid = _per_layer(data, frame, labels)
    caption = (
        "𝒱-information sufficiency (top) and minimality (bottom) of every layer at each "
        "measured epoch; l = 0 (x) is measured once per run (figs. 3.5, 3.7). Each decoder "
        "family 𝒱 has its own panels; a ringed point is saturated: certified at its ceiling, "
        "the family memorises this split."
    )
    return Figure("vinfo", caption, grid, data)


def information_plane(frame: pd.DataFrame, identical: pd.DataFrame | None = None) -> Figure:
    """Minimality on x, sufficiency on y, one path per layer through the measured epochs,
    an arrow on every step in the direction of training; circles train, squares test; seeds
    pooled by their mean (thesis figs. 3.6, 3.8)."""
    data = _prepare(frame, [V_SUFF, V_MIN], identical)
    keys = ["panel", "layer", "layer_name", "split", "epoch"]
    plane = data.pivot_table(index=[*keys, "trial_id"], columns="metric", values="value")
    plane = plane.dropna().groupby(level=keys).mean().reset_index().sort_values(keys)
    if plane.empty:
        raise NothingToPlot("no epoch with both sufficiency and minimality measured")
    order = tables.layer_order(plane)
    palette = dict(zip(order, sns.color_palette(n_colors=len(order)), strict=True))
    grid = sns.relplot(
        plane, x=V_MIN, y=V_SUFF, col="panel", col_wrap=_wrap(plane),
        col_order=_panels(plane, frame), kind="line",
        hue="layer_name", hue_order=order, palette=palette,
        style="split", style_order=SPLITS, markers=MARKERS, dashes=False,
        sort=False, estimator=None, height=2.8, aspect=1.1,
    )  # fmt: skip
    for (panel, name, _), path in plane.groupby(["panel", "layer_name", "split"]):
        _arrows(grid.axes_dict[panel], path[V_MIN].tolist(), path[V_SUFF].tolist(), palette[name])
    _finish(grid, epochs_on_x=False)
    families = tables.family_order(data)
    named = f", {_family_label(families[0])}" if len(families) == 1 else ""
    grid.set_axis_labels(f"minimality (bits){named}", "sufficiency (bits)")
    caption = (
        "Information planes: minimality against sufficiency, one path per layer through "
        "the measured epochs, arrows in the direction of training (earlier → later epoch); "
        "circles train, squares test (figs. 3.6, 3.8)."
    )
    return Figure("information_plane", caption, grid, plane)


def _family_label(family: str) -> str:
    return r"$\mathcal{V}$ = " + family


def _arrows(ax: plt.Axes, x: list[float], y: list[float], color: tuple) -> None:
    """An arrowhead on each step of a path, pointing from one epoch to the next."""
    for (x0, y0), (x1, y1) in itertools.pairwise(zip(x, y, strict=True)):
        ax.annotate(
            "", xy=(x1, y1), xytext=(x0, y0),
            arrowprops={"arrowstyle": "-|>", "color": color, "lw": 0.8, "shrinkA": 3,
                        "shrinkB": 3, "mutation_scale": 9},
        )  # fmt: skip


def budget_curves(frame: pd.DataFrame, identical: pd.DataFrame | None = None) -> Figure:
    """Sufficiency and minimality (bits) against the decoder budget (epochs), per layer and
    split, at each trial's first and last 𝒱-information measurement; seeds pooled. Only
    curves of two or more budgets are drawn: a sweep that scored its decoders at one budget
    has nothing to draw a curve through."""
    curves = [V_SUFF.at_budget, V_MIN.at_budget]
    data = _prepare(frame, curves, identical)
    points = data.groupby(["trial_id", "epoch", "split", "metric", "layer", "panel"])[BUDGET]
    several = points.transform("nunique") > 1
    if not several.any():
        budgets = sorted(int(b) for b in data[BUDGET].unique())
        epochs = "epoch" if budgets == [1] else "epochs"
        raise NothingToPlot(
            f"every budget curve is one point (decoders scored after {_listed(budgets)} "
            f"{epochs} only): a curve needs several decoder budgets (`decoder_budgets`)"
        )
    left_out = "" if several.all() else " Curves scored at a single budget are left out."
    data = data[several]
    first = data.groupby("trial_id").epoch.transform("min")
    last = data.groupby("trial_id").epoch.transform("max")
    when = pd.Series(pd.NA, index=data.index, dtype="object")
    when[data.epoch.eq(first)], when[data.epoch.eq(last)] = "first", "last"
    data = data.assign(when=when).dropna(subset=["when"])
    epoch = data.epoch.astype(int).astype(str)
    data = data.assign(column=data.panel + "\n" + data.when + " measurement (epoch " + epoch + ")")
    # panels in the order of every figure, each one's first measurement before its last
    rank = {panel: i for i, panel in enumerate(_panels(data, frame))}
    columns = data.assign(rank=data.panel.map(rank)).sort_values(["rank", "epoch", "when"])
    grid = sns.relplot(
        data, x=BUDGET, y="value", row="metric", col="column", kind="line",
        row_order=curves, col_order=list(columns.column.unique()), hue="layer_name",
        hue_order=tables.layer_order(data), **BY_SPLIT, height=2.6, aspect=1.2,
        facet_kws={"sharey": "row"},
    )  # fmt: skip
    labels = {curves[0]: "sufficiency (bits)", curves[1]: "minimality (bits)"}
    _label_rows(grid, labels, set())
    budgets = sorted(int(b) for b in data[BUDGET].unique())
    for ax in grid.axes.flat:
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("decoder budget (epochs)")
    caption = (
        "𝒱-information against the decoders' training budget: each decoder scored after "
        f"{_listed(budgets)} epochs of its one training (a decoder that stopped earlier keeps "
        "its value), at the first and the last measurement of each trial. At the last layer the "
        "reported value is the affine optimum, which these trained decoders approach." + left_out
    )
    return Figure("budget_curves", caption, grid, data)


def _listed(numbers: list[int]) -> str:
    """'5, 10, 20 and 50'."""
    words = [str(n) for n in numbers]
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else words[0]


def nc_statistics(frame: pd.DataFrame, identical: pd.DataFrame | None = None) -> Figure:
    """The other neural-collapse statistics per layer and epoch."""
    data = _prepare(frame, list(NC_STATISTICS), identical)
    grid = _per_layer(data, frame, NC_STATISTICS)
    caption = (
        "The other neural-collapse statistics of every layer after each epoch: NC1 trace "
        "ratio and CDNV (log scale), NC2 equinorm and equiangularity, NC3 self-duality "
        "(penultimate layer), NC4 nearest-class-mean agreement."
    )
    return Figure("nc_statistics", caption, grid, data)


BEST_RANKED = 3  # measures drawn against the gap
GENERALISATION = "generalisation"  # that figure's name (and the report's ranking table's)


def generalisation_measures(
    frame: pd.DataFrame, ranking: pd.DataFrame | None = None, identical: pd.DataFrame | None = None
) -> Figure:
    """The best-ranked measures (by |Ψ|, `generalisation.rank_measures`, or `ranking` where it
    is already at hand) against the generalisation gap at the common point, one point per
    configuration (seeds averaged), one column per swept axis, coloured by that axis' value:
    each column's legend names its values (model names, learning rates, …) from low to high;
    each representation once (`identical`, as the ranking was made), values that are not
    measurements (uncertified, saturated) left out as the ranking leaves them."""
    trials = generalisation.trial_values(frame, identical)
    config = axis_columns(frame)
    axes = generalisation.grid_axes(trials, config)
    if not axes:
        raise NothingToPlot("one configuration: nothing to rank across")
    if ranking is None:
        ranking = generalisation.rank_trials(trials, config, resamples=0)
    ranked = list(ranking.measure[ranking[generalisation.RANK].notna()][:BEST_RANKED])
    # the values the ranking read: those that are not measurements left out
    measured, _ = generalisation.without_withheld(trials, ranked)
    conf = generalisation.configurations(measured, axes, ranked)  # axis values as text
    data = pd.concat(
        [
            conf.assign(measure=measure, axis=axis, value=conf[measure], level=conf[axis])
            for measure, axis in itertools.product(ranked, axes)
        ],
        ignore_index=True,
    )
    grid = sns.FacetGrid(
        data, row="measure", col="axis", row_order=ranked, col_order=axes, height=2.4,
        aspect=1.2, sharex=True, sharey="row",
    )  # fmt: skip
    levels = {axis: sorted(conf[axis].unique(), key=tables.value_key) for axis in axes}
    # one colour per value of every axis, so that no colour means two values in one figure
    count = sum(len(values) for values in levels.values())
    colours = iter(sns.color_palette(n_colors=count) if count <= 10 else sns.husl_palette(count))
    for axis in axes:  # a legend per axis: one for all would have to name ranks, not values
        palette = {value: next(colours) for value in levels[axis]}
        for measure in ranked:
            sns.scatterplot(
                data[(data.measure == measure) & (data.axis == axis)], x=generalisation.GAP,
                y="value", hue="level", hue_order=levels[axis], palette=palette,
                ax=grid.axes_dict[(measure, axis)], legend=measure == ranked[-1],
            )  # fmt: skip
        sns.move_legend(
            grid.axes_dict[(ranked[-1], axis)], "upper center", bbox_to_anchor=(0.5, -0.3),
            title=axis, ncol=min(len(levels[axis]), 2), frameon=False,
        )  # fmt: skip
    grid.set_titles("{row_name} · by {col_name}")
    grid.set_axis_labels("generalisation gap (nats)", "measure")
    caption = (
        f"The {len(ranked)} best-ranked measures (by |Ψ|) against the generalisation gap at the "
        "common point (test − train loss), one point per configuration (seeds averaged); each "
        "column colours the points by one swept axis, its values in the legend below it."
    )
    return Figure(GENERALISATION, caption, grid, data)


FIGURES: dict[str, Callable[[pd.DataFrame, pd.DataFrame | None], Figure]] = {
    "accuracy_loss": accuracy_loss,
    "nc_trace": nc_trace,
    "compression_gap": compression_gap,
    "equi_separation": equi_separation,
    "vinfo": vinfo_curves,
    "information_plane": information_plane,
    "budget_curves": budget_curves,
    "nc_statistics": nc_statistics,
}
