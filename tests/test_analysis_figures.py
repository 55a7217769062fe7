"""Every figure on the synthetic frame: files written, and what is drawn equals the frame."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from synthetic import NC_RATIO, synthetic_frame

from raycompress.analysis import figures, generalisation, tables
from raycompress.analysis.tables import SPLITS
from raycompress.results import identical_layers, load

matplotlib.use("Agg")
PANELS = {"mlp": "fashion-mnist · mlp", "mnistnet": "fashion-mnist · mnistnet"}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame()


def drawn_lines(ax) -> list[tuple]:
    """Every non-empty line of an axes as ((x…), (y…)), rounded, sorted."""
    out = []
    for line in ax.lines:
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        if x.size:
            out.append((tuple(np.round(x, 9)), tuple(np.round(y, 9))))
    return sorted(out)


def seed_means(frame: pd.DataFrame, metric: str, model: str, by: list[str]) -> list[tuple]:
    """The lines a panel should show: per `by` group, the mean over seeds at each epoch."""
    rows = frame[(frame.metric == metric) & (frame.model == model)].dropna(subset=["value"])
    out = []
    for _, group in rows.groupby(by):
        mean = group.groupby("epoch").value.mean()
        out.append((tuple(np.round(mean.index, 9)), tuple(np.round(mean.to_numpy(), 9))))
    return sorted(out)


@pytest.mark.parametrize("name", list(figures.FIGURES))
def test_every_figure_writes_png_and_svg(frame: pd.DataFrame, name: str, tmp_path: Path) -> None:
    figure = figures.FIGURES[name](frame)
    paths = figure.save(tmp_path)
    figure.close()
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 10_000
    assert "<svg" in paths[1].read_text()[:1000]
    assert figure.caption and not figure.data.empty


@pytest.mark.parametrize("model", list(PANELS))
def test_accuracy_and_loss_curves_draw_the_seed_means(frame: pd.DataFrame, model: str) -> None:
    figure = figures.accuracy_loss(frame)
    for metric in ("accuracy", "loss"):
        ax = figure.grid.axes_dict[(metric, PANELS[model])]
        assert drawn_lines(ax) == seed_means(frame, metric, model, ["split"])
    figure.close()


def test_nc_trace_draws_every_layer_and_split_on_a_log_scale(frame: pd.DataFrame) -> None:
    figure = figures.nc_trace(frame)
    ax = figure.grid.axes_dict[("nc_trace", PANELS["mnistnet"])]
    assert ax.get_yscale() == "log"
    expected = seed_means(frame, "nc_trace", "mnistnet", ["layer", "split"])
    assert len(expected) == 8 and drawn_lines(ax) == expected
    dashes = {line.get_linestyle() for line in ax.lines if len(line.get_xdata())}
    assert dashes == {"-", "--"}  # train solid, test dashed
    figure.close()


def test_vinfo_curves_skip_unmeasured_epochs_and_failed_values(frame: pd.DataFrame) -> None:
    figure = figures.vinfo_curves(frame)
    for metric in ("v_suff", "v_min"):
        ax = figure.grid.axes_dict[(metric, PANELS["mnistnet"])]
        expected = seed_means(frame, metric, "mnistnet", ["layer", "split"])
        assert drawn_lines(ax) == expected
        assert {x for xs, _ in expected for x in xs} == {2.0, 4.0}
    figure.close()


def test_information_plane_pairs_minimality_and_sufficiency(frame: pd.DataFrame) -> None:
    figure = figures.information_plane(frame)
    ax = figure.grid.axes_dict[PANELS["mnistnet"]]
    rows = frame[frame.model == "mnistnet"].pivot_table(
        index=["layer", "split", "epoch", "trial_id"], columns="metric", values="value"
    )
    rows = rows[["v_min", "v_suff"]].dropna()  # the failed minimality drops its point
    expected, steps = [], []
    for _, path in rows.groupby(level=["layer", "split"]):
        mean = path.groupby(level="epoch").mean()
        expected.append((tuple(np.round(mean.v_min, 9)), tuple(np.round(mean.v_suff, 9))))
        points = list(zip(np.round(mean.v_min, 9), np.round(mean.v_suff, 9), strict=True))
        steps += list(itertools.pairwise(points))  # earlier epoch → later epoch
    assert drawn_lines(ax) == sorted(expected)
    arrows = [
        (tuple(np.round(a.xyann, 9)), tuple(np.round(a.xy, 9))) for a in ax.texts if a.arrowprops
    ]
    assert steps and sorted(arrows) == sorted(steps)  # every step, pointing forward in time
    figure.close()


def test_compression_gap_scatters_positive_generalisation_gaps(frame: pd.DataFrame) -> None:
    figure = figures.compression_gap(frame)
    ax = figure.grid.axes_dict[PANELS["mlp"]]
    points = sorted(map(tuple, np.round(ax.collections[0].get_offsets().data, 9)))
    gaps = tables.gaps(frame)
    gaps = gaps[gaps.trial_id.str.startswith("mlp") & (gaps.generalisation_gap > 0)]
    assert points == sorted(
        zip(np.round(gaps.generalisation_gap, 9), np.round(gaps.compression_gap, 9), strict=True)
    )
    figure.close()


def test_equi_separation_draws_pearson_and_ratio(frame: pd.DataFrame) -> None:
    figure = figures.equi_separation(frame)
    pearson = drawn_lines(figure.grid.axes_dict[("pearson", PANELS["mlp"])])
    ratio = drawn_lines(figure.grid.axes_dict[("ratio", PANELS["mlp"])])
    assert len(pearson) == len(ratio) == 2  # train and test
    assert {y for _, ys in pearson for y in ys} == {-1.0}
    assert {y for _, ys in ratio for y in ys} == {NC_RATIO}
    figure.close()


def test_nc_statistics_show_each_statistic_present(frame: pd.DataFrame) -> None:
    figure = figures.nc_statistics(frame)
    assert figure.grid.row_names == ["nc_cdnv", "nc_self_duality"]
    ax = figure.grid.axes_dict[("nc_cdnv", PANELS["mlp"])]
    assert drawn_lines(ax) == seed_means(frame, "nc_cdnv", "mlp", ["layer", "split"])
    figure.close()


def test_budget_curves_at_the_first_and_last_measurement(frame: pd.DataFrame) -> None:
    figure = figures.budget_curves(frame)
    for when, epoch in (("first", 2), ("last", 4)):
        column = f"{PANELS['mlp']}\n{when} measurement (epoch {epoch})"
        ax = figure.grid.axes_dict[("v_suff_at_budget", column)]
        assert ax.get_xscale() == "log"
        assert list(ax.get_xticks()) == [5, 10, 20, 50]  # the budgets, labelled plainly below
        bottom = figure.grid.axes_dict[("v_min_at_budget", column)]
        assert [t.get_text() for t in bottom.get_xticklabels()] == ["5", "10", "20", "50"]
        rows = frame[(frame.metric == "v_suff_at_budget") & (frame.model == "mlp")]
        rows = rows[rows.epoch == epoch]
        expected = []
        for _, group in rows.groupby(["layer", "split"]):
            mean = group.groupby("budget").value.mean()
            expected.append((tuple(float(b) for b in mean.index), tuple(np.round(mean, 9))))
        assert len(expected) == 8 and drawn_lines(ax) == sorted(expected)
    figure.close()


def test_a_frame_without_vinfo_has_nothing_to_plot_there(frame: pd.DataFrame) -> None:
    nc_only = frame[~frame.metric.str.startswith("v_")]
    for figure in (figures.vinfo_curves, figures.information_plane):
        with pytest.raises(figures.NothingToPlot, match="no values of v_suff, v_min"):
            figure(nc_only)
    figures.nc_trace(nc_only).close()


def test_every_figure_on_the_demo_sweep(demo: tuple[int, Path], tmp_path: Path) -> None:
    code, storage = demo
    assert code == 0
    frame = load(storage / "demo")
    identical = identical_layers(storage / "demo")
    for name, make in figures.FIGURES.items():
        if name == "budget_curves":  # the demo's linear family: in-sample optima, no curve
            with pytest.raises(figures.NothingToPlot, match="no values of v_suff_at_budget"):
                make(frame, identical)
            continue
        figure = make(frame, identical)
        assert all(path.stat().st_size > 5_000 for path in figure.save(tmp_path)), name
        figure.close()
    # f₋'s and the MLP's penultimate features are h³ flattened: one line, named for both
    figure = figures.nc_trace(frame, identical)
    assert {"h1", "h2", "h3 = penultimate"} == set(legend(figure)) - {"layer", "split", *SPLITS}
    for model in ("mlp", "mnistnet"):
        ax = figure.grid.axes_dict[("nc_trace", f"fashion-mnist-demo · {model}")]
        nc = frame[frame.layer < 4]
        assert drawn_lines(ax) == seed_means(nc, "nc_trace", model, ["layer", "split"])
    trace = frame[frame.metric == "nc_trace"].pivot_table(
        index=["trial_id", "epoch", "split"], columns="layer", values="value"
    )
    np.testing.assert_allclose(trace[3], trace[4], rtol=1e-9)  # what the record says
    figure.close()
    figure = figures.vinfo_curves(frame, identical)
    ax = figure.grid.axes_dict[("v_min", "fashion-mnist-demo · mnistnet")]
    assert drawn_lines(ax) == seed_means(frame, "v_min", "mnistnet", ["layer", "split"])
    figure.close()


def _identical_penultimate(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The synthetic frame with f₋'s penultimate features made h³ (as f₋'s are, flattened),
    and the record of that, `results.identical_layers`' rows; the MLP's stay apart."""
    same = frame.copy()
    f_minus = (same.model == "mnistnet") & same.metric.isin(["nc_trace", "nc_cdnv"])
    h3 = same[f_minus & (same.layer == 3)].set_index(["trial_id", "epoch", "split", "metric"])
    top = f_minus & (same.layer == 4)
    keys = pd.MultiIndex.from_frame(same.loc[top, ["trial_id", "epoch", "split", "metric"]])
    same.loc[top, "value"] = h3.value.reindex(keys).to_numpy()
    same = pd.concat([same, same[f_minus & (same.layer == 3)].assign(layer=4)])
    same = same.drop_duplicates(["trial_id", "epoch", "split", "metric", "layer", "budget"])
    identical = pd.DataFrame({"trial_id": ["mni0", "mni1"], "layer": [4, 4], "same_as": [3, 3]})
    return same.reset_index(drop=True), identical.astype("Int64", errors="ignore")


def legend(figure: figures.Figure) -> dict[str, tuple]:
    """The figure's legend: label → colour of its handle (the layer entries)."""
    handles = figure.grid.legend.legend_handles
    texts = [t.get_text() for t in figure.grid.legend.texts]
    return {text: tuple(h.get_color()) for text, h in zip(texts, handles, strict=True)}


def test_a_layer_identical_to_another_is_drawn_once_and_labelled(frame: pd.DataFrame) -> None:
    same, identical = _identical_penultimate(frame)
    figure = figures.nc_trace(same, identical)
    f_minus = figure.grid.axes_dict[("nc_trace", PANELS["mnistnet"])]
    expected = seed_means(same[same.layer < 4], "nc_trace", "mnistnet", ["layer", "split"])
    assert len(expected) == 6 and drawn_lines(f_minus) == expected  # h³'s line drawn once
    colours = legend(figure)
    assert {"h1", "h2", "h3 = penultimate", "h3", "penultimate"} <= set(colours)
    h3 = same[(same.model == "mnistnet") & (same.metric == "nc_trace") & (same.layer == 3)]
    merged = {tuple(line.get_color()) for line in f_minus.lines if len(line.get_xdata())}
    assert colours["h3 = penultimate"] in merged and not h3.empty
    assert colours["h3"] not in merged and colours["penultimate"] not in merged
    # the MLP, whose layers are all different here: every layer its own line and name
    mlp = figure.grid.axes_dict[("nc_trace", PANELS["mlp"])]
    assert drawn_lines(mlp) == seed_means(same, "nc_trace", "mlp", ["layer", "split"])
    assert len(drawn_lines(mlp)) == 8
    figure.close()
    # NC3, measured at the penultimate features only, stays under the joined name
    figure = figures.nc_statistics(same, identical)
    ax = figure.grid.axes_dict[("nc_self_duality", PANELS["mnistnet"])]
    assert drawn_lines(ax) == seed_means(same, "nc_self_duality", "mnistnet", ["split"])
    duality = figure.data[
        (figure.data.metric == "nc_self_duality") & (figure.data.model == "mnistnet")
    ]
    assert set(duality.layer_name) == {"h3 = penultimate"}
    figure.close()
    # the same layer is named alike in the 𝒱-information figures
    figure = figures.vinfo_curves(same, identical)
    names = figure.data.groupby("model").layer_name.unique()
    assert set(names["mnistnet"]) == {"x", "h1", "h2", "h3 = penultimate"}
    assert set(names["mlp"]) == {"x", "h1", "h2", "h3"}
    figure.close()
    figure = figures.compression_gap(same, identical)
    points = figure.data[figure.data.model == "mnistnet"]
    assert set(points.layer_name) == {"h1", "h2", "h3 = penultimate"}
    assert not points.duplicated(["trial_id", "epoch", "layer_name"]).any()
    figure.close()


def test_without_identical_layers_every_layer_is_drawn(frame: pd.DataFrame) -> None:
    same, _ = _identical_penultimate(frame)
    none = pd.DataFrame({"trial_id": [], "layer": [], "same_as": []})
    for identical in (None, none):
        figure = figures.nc_trace(same, identical)
        ax = figure.grid.axes_dict[("nc_trace", PANELS["mnistnet"])]
        assert len(drawn_lines(ax)) == 8  # h³ and the penultimate features, each a line
        assert "h3 = penultimate" not in legend(figure)
        figure.close()


def test_the_generalisation_legends_name_each_axis_values() -> None:
    from synthetic import tidy_from_wide

    rng = np.random.default_rng(0)
    wide = pd.DataFrame(
        [
            {"model": model, "lr": lr, "seed": 0, "gap": rng.random(), "accuracy_gap": 0.1,
             "nc_trace/l1/train": rng.random()}
            for model, lr in itertools.product(["mnistnet", "mlp"], [0.01, 0.002])
        ]
    )  # fmt: skip
    figure = figures.generalisation_measures(tidy_from_wide(wide, ["model", "lr"]))
    texts = {
        axis: [t.get_text() for t in figure.grid.axes_dict[("nc_trace/l1/train", axis)]
               .get_legend().texts]
        for axis in ("model", "lr")
    }  # fmt: skip
    assert texts == {"model": ["mlp", "mnistnet"], "lr": ["0.002", "0.01"]}  # low → high
    titles = [figure.grid.axes_dict[("nc_trace/l1/train", a)].get_legend().get_title().get_text()
              for a in ("model", "lr")]  # fmt: skip
    assert titles == ["model", "lr"]
    figure.close()


def test_the_generalisation_figure_plots_what_the_ranking_read() -> None:
    """𝒱-minimality tracks the gap but for two withheld values planted far off (99), each in
    one of a configuration's two seeds: the figure leaves them out as the ranking does (the
    other seed stands for the configuration); a measure withheld in every seed of one
    configuration has no rank, and the figure draws no measure that has no rank."""
    from synthetic import tidy_from_wide, with_verdicts

    levels = {"lr": [0.01, 0.1, 0.2], "width": [8, 16, 32]}
    wide = pd.DataFrame(
        [{"lr": lr, "width": w, "seed": seed, "gap": lr + w, "accuracy_gap": 0.1,
          "v_min/l1/test": lr + w, "nc_trace/l1/train": 1.0}
         for lr, w, seed in itertools.product(*levels.values(), [0, 1])]
    )  # fmt: skip
    wide.loc[[0, 2], "v_min/l1/test"] = 99.0  # seed 0 of the first two configurations
    frame = with_verdicts(tidy_from_wide(wide, list(levels)), "v_min", ["t0"], ["t2"])
    figure = figures.generalisation_measures(frame)
    drawn = figure.data[figure.data.measure == "v_min[linear]/l1/test"]
    assert len(drawn) == 9 * 2 and drawn.value.max() < 99  # 9 configurations × 2 axes
    assert drawn.value.notna().all()
    figure.close()
    wide.loc[[1], "v_min/l1/test"] = 99.0  # now both seeds of the first configuration
    everywhere = with_verdicts(tidy_from_wide(wide, list(levels)), "v_min", ["t0", "t1"], ["t2"])
    without = figures.generalisation_measures(everywhere)
    assert "v_min[linear]/l1/test" not in set(without.data.measure)
    without.close()
    ranking = generalisation.rank_trials(
        generalisation.trial_values(frame), [*levels, "seed"], resamples=0
    )
    unranked = ranking.assign(rank=pd.array([pd.NA] * len(ranking), dtype="Int64"))
    unranked.loc[0, "rank"] = 1
    only = figures.generalisation_measures(frame, unranked)
    assert set(only.data.measure) == {ranking.measure[0]}
    only.close()


def test_budget_curves_need_several_budgets(frame: pd.DataFrame) -> None:
    curve = frame.metric.str.endswith("_at_budget")
    single = frame[~curve | (frame.budget == 50)]
    with pytest.raises(figures.NothingToPlot, match=r"one point \(decoders scored after 50 epochs"):
        figures.budget_curves(single)
    # the MLP at one budget, f₋ at four: only f₋'s curves are drawn, and the caption says so
    mixed = frame[~curve | (frame.model == "mnistnet") | (frame.budget == 50)]
    figure = figures.budget_curves(mixed)
    assert {column.split("\n")[0] for column in figure.grid.col_names} == {PANELS["mnistnet"]}
    assert "Curves scored at a single budget are left out." in figure.caption
    assert "single budget" not in figures.budget_curves(frame).caption
    figure.close()


def test_every_figure_orders_its_panels_alike(frame: pd.DataFrame) -> None:
    """A batch-size axis whose panels sort otherwise by trial id (100 first) and as text
    ('batch_size=100' < 'batch_size=20'): every figure puts 20 before 100."""
    sized = frame.assign(
        trial_id=frame.trial_id.str.replace("mlp", "z"), model="mnistnet",
        batch_size=np.where(frame.trial_id.str.startswith("mlp"), 20, 100),
    )  # fmt: skip
    order = [
        "fashion-mnist · mnistnet · batch_size=20",
        "fashion-mnist · mnistnet · batch_size=100",
    ]
    assert tables.panel_order(sized) == order
    for name, make in figures.FIGURES.items():
        figure = make(sized, None)
        panels = [column.split("\n")[0] for column in figure.grid.col_names]
        assert list(dict.fromkeys(panels)) == order, name
        figure.close()


def test_two_decoder_families_get_their_own_panels_and_saturated_values_a_ring(
    frame: pd.DataFrame,
) -> None:
    """The synthetic 𝒱-information rows as two families: each draws its own panels, the values
    of one never in the other's, and every saturated point (here: the linear family's l = 0)
    gets one ring."""
    vinfo = frame.metric.isin(["v_suff", "v_min"])
    network = frame[vinfo].assign(family="network", saturated=False)
    linear = frame[vinfo].assign(family="linear", value=frame[vinfo].value / 2)
    linear = linear.assign(saturated=linear.layer.eq(0))
    both = pd.concat([frame[~vinfo], network, linear], ignore_index=True)
    figure = figures.vinfo_curves(both)
    panel = PANELS["mnistnet"]
    for family, rows in (("network", network), ("linear", linear)):
        ax = figure.grid.axes_dict[("v_min", f"{panel} · $\\mathcal{{V}}$ = {family}")]
        assert drawn_lines(ax) == seed_means(rows, "v_min", "mnistnet", ["layer", "split"])
        rings = sum(len(c.get_offsets()) for c in ax.collections if c.get_facecolor().size == 0)
        ringed = rows[(rows.model == "mnistnet") & (rows.metric == "v_min") & rows.saturated]
        expected = ringed.dropna(subset=["value"]).groupby(["epoch", "layer", "split"]).ngroups
        assert rings == expected and (family == "network") == (rings == 0)
    figure.close()
