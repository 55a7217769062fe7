"""The generalisation-measure statistics against independent references and hand-built grids."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from raycompress.analysis import generalisation as gen
from raycompress.analysis.generalisation import ACCURACY_GAP, GAP
from raycompress.results import TRIAL_ID
from tests.synthetic import tidy_from_wide, with_verdicts


def _grid(levels: dict[str, list], seeds: int = 1) -> pd.DataFrame:
    rows = [
        dict(zip([*levels, "seed"], values, strict=True))
        for values in itertools.product(*levels.values(), range(seeds))
    ]
    return pd.DataFrame(rows)


def test_tau_is_kendalls_tau_on_untied_data_and_counts_ties_as_zero() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 7, 300):
        mu, g = rng.normal(size=n), rng.normal(size=n)
        assert gen.kendall_tau(mu, g) == pytest.approx(kendalltau(mu, g).statistic, abs=1e-12)
    # pairs of (1, 1, 2) × (1, 2, 3): (1,2) tied in μ; (1,3) and (2,3) concordant: 2·2 / 6
    assert gen.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(4 / 6)
    assert math.isnan(gen.kendall_tau([1.0], [2.0]))


def test_granulated_tau_on_a_grid_with_a_known_answer() -> None:
    """g = a + 10 b; μ = a − 10 b: with only a varying μ follows g (ψ_a = 1), with only b
    varying it runs against it (ψ_b = −1), so Ψ = 0 while τ over the grid is carried by b."""
    conf = _grid({"a": [0, 1, 2], "b": [0, 1]})
    conf[GAP] = conf.a + 10 * conf.b
    conf["mu"] = conf.a - 10 * conf.b
    pairs = gen.AxisPairs.of(conf, ["a", "b"])
    psi = gen.granulated_tau(conf.mu.to_numpy(float), conf[GAP].to_numpy(float), pairs)
    assert psi == {"a": pytest.approx(1.0), "b": pytest.approx(-1.0)}
    # 15 pairs: 6 with equal b (concordant), 9 with different b (discordant)
    assert gen.kendall_tau(conf.mu, conf[GAP]) == pytest.approx((6 - 9) / 15)


def _cmi(conf: pd.DataFrame, measure: str, axes: list[str]) -> float:
    pairs = gen.PairCodes.of(conf, axes)
    return gen.cmi_score(conf[measure].to_numpy(), conf[GAP].to_numpy(), pairs)


def test_the_conditional_mutual_information_score_on_constructed_cases() -> None:
    rng = np.random.default_rng(1)
    axes = ["a", "b", "c"]
    conf = _grid({"a": [0, 1, 2], "b": [0, 1, 2], "c": [0, 1, 2, 3]})
    conf[GAP] = conf.a + rng.normal(0, 0.3, len(conf))
    conf["itself"] = conf[GAP]
    conf["through_a"] = conf.a.astype(float)  # tracks g only through a
    assert _cmi(conf, "itself", axes) == pytest.approx(100.0)
    wide = _grid({"a": [0, 1, 2], "b": [0, 1, 2], "c": list(range(12))})
    wide[GAP], wide["noise"] = rng.normal(size=(2, len(wide)))
    assert _cmi(wide, "noise", axes) < 2  # ≈ 0 but for the plug-in estimate's small bias
    assert gen.kendall_tau(conf.through_a, conf[GAP]) > 0.5  # so τ alone is fooled
    assert _cmi(conf, "through_a", axes) == pytest.approx(0.0, abs=1e-12)


def _by_the_definition(conf: pd.DataFrame, measure: str, axes: list[str], pgdl: bool) -> float:
    """The CMI score written out pair by pair from the definitions (loops and dicts):
    Jiang et al.'s, or the PGDL scorer's (self-pairs, ties read "−", cells alike)."""

    def sign(d: float) -> int:
        return int(d > 0) if pgdl else int(np.sign(d))

    def entropy(counts: dict) -> float:
        n = sum(counts.values())
        return -sum(c / n * math.log2(c / n) for c in counts.values() if c)

    rows = conf.to_dict("records")
    scores = []
    for a, b in itertools.combinations(axes, 2):
        cells: dict[tuple, list[tuple[int, int]]] = {}
        for i, j in itertools.product(range(len(rows)), repeat=2):
            if i == j and not pgdl:
                continue
            u = (rows[i][a], rows[i][b], rows[j][a], rows[j][b])
            v_g, v_mu = sign(rows[i][GAP] - rows[j][GAP]), sign(rows[i][measure] - rows[j][measure])
            cells.setdefault(u, []).append((v_g, v_mu))
        total = sum(len(pairs) for pairs in cells.values())
        mutual = h_g = 0.0
        for pairs in cells.values():
            w = 1 / len(cells) if pgdl else len(pairs) / total
            g_only = {v: sum(1 for x in pairs if x[0] == v) for v in {x[0] for x in pairs}}
            mu_only = {v: sum(1 for x in pairs if x[1] == v) for v in {x[1] for x in pairs}}
            joint = {v: pairs.count(v) for v in set(pairs)}
            mutual += w * (entropy(g_only) + entropy(mu_only) - entropy(joint))
            h_g += w * entropy(g_only)
        if h_g > 0:
            scores.append(mutual / h_g)
    return 100 * min(scores)


def test_the_conditional_score_by_hand_weights_cells_by_their_pairs_and_keeps_ties() -> None:
    """Cell 0 holds 2 pairs, V_g = V_μ = (+, −): I = H = 1 bit. Cell 1 holds 4, V_g = (+, +, −,
    −) against V_μ = (+, −, +, −): I = 0, H = 1. Weighted by p(u) = 1/3, 2/3: 1/3; alike: 1/2.
    A tie: V_g = (0, +, −), V_μ = (+, +, −) in one cell. Three-valued, H(V_g) = log2 3 and
    I = H(V_μ) = h(1/3); read as "−", V_g = (−, +, −): H = h(1/3), I = 2 h(1/3) − log2 3."""
    cell = np.array([0, 0, 1, 1, 1, 1])
    v_g, v_mu = np.array([1, 0, 1, 1, 0, 0]), np.array([1, 0, 1, 0, 1, 0])
    assert gen.conditional_score(v_mu, v_g, cell, weighted=True) == pytest.approx(1 / 3)
    assert gen.conditional_score(v_mu, v_g, cell, weighted=False) == pytest.approx(1 / 2)
    h = -(1 / 3) * math.log2(1 / 3) - (2 / 3) * math.log2(2 / 3)
    one = np.zeros(3, dtype=np.int64)
    three = gen.conditional_score(np.array([2, 2, 0]), np.array([1, 2, 0]), one, weighted=True)
    assert three == pytest.approx(h / math.log2(3))
    two = gen.conditional_score(np.array([1, 1, 0]), np.array([0, 1, 0]), one, weighted=True)
    assert two == pytest.approx((2 * h - math.log2(3)) / h)


@pytest.mark.parametrize("convention", list(gen.CMI))
def test_the_cmi_score_is_its_definition_on_grids_where_the_conventions_differ(
    convention: gen.CMI,
) -> None:
    """A 3 × 2 × 2 grid with a noisy measure, and one whose measure and gap tie in many
    pairs (rounded): each convention against the pair-by-pair reference, and the two apart."""
    rng = np.random.default_rng(4)
    axes = ["a", "b", "c"]
    conf = _grid({"a": [0, 1, 2], "b": [0, 1], "c": [0, 1]})
    conf[GAP] = conf.a + conf.b + rng.normal(0, 0.8, len(conf))
    conf["noisy"] = conf[GAP] + rng.normal(0, 1.0, len(conf))
    conf["tied"] = (conf.noisy / 2).round()
    conf["tied_gap"] = conf[GAP].round()
    pairs = gen.cmi_pairs(conf, axes, convention)
    for measure in ("noisy", "tied"):
        got = gen.cmi_score(conf[measure].to_numpy(), conf[GAP].to_numpy(), pairs, convention)
        want = _by_the_definition(conf, measure, axes, pgdl=convention == gen.CMI.PGDL)
        assert got == pytest.approx(want, abs=1e-9)
    tied = conf.assign(**{GAP: conf.tied_gap})
    got = gen.cmi_score(tied.tied.to_numpy(), tied[GAP].to_numpy(), pairs, convention)
    assert got == pytest.approx(_by_the_definition(tied, "tied", axes, convention == gen.CMI.PGDL))
    other = gen.CMI.PGDL if convention == gen.CMI.JIANG else gen.CMI.JIANG
    apart = gen.cmi_score(
        tied.tied.to_numpy(), tied[GAP].to_numpy(), gen.cmi_pairs(conf, axes, other), other
    )
    assert abs(apart - got) > 1.0


def test_the_cmi_score_needs_three_axes_and_a_complete_grid() -> None:
    conf = _grid({"a": [0, 1], "b": [0, 1], "c": [0, 1]})
    assert gen.complete_grid(conf, ["a", "b", "c"]) == ""
    assert "≥ 3 swept axes" in gen.complete_grid(conf, ["a", "b"])
    assert "7 of 8 configurations" in gen.complete_grid(conf.iloc[1:], ["a", "b", "c"])


def test_hoeffding_weights_and_a_weighted_sign_error_by_hand() -> None:
    n = 1000
    delta = 0.1  # w = (1 − 2 exp(−2 · 1000 · 0.05²))² = (1 − 2 e^−5)²
    assert gen.hoeffding_weight(np.array([delta]), n)[0] == pytest.approx(
        (1 - 2 * math.exp(-5)) ** 2
    )
    assert gen.hoeffding_weight(np.array([0.0]), n)[0] == 0.0
    # two configurations differing in a, two seeds each; error gaps 0 / 0.1 (seeds of x) and
    # 0.3 / 0.3 (y): seed pairs (x0,y0) Δe 0.3, (x0,y1) 0.3, (x1,y0) 0.2, (x1,y1) 0.2
    trials = pd.DataFrame({"a": ["x", "x", "y", "y"], "seed": [0, 1, 0, 1]})
    error = np.array([0.0, 0.1, 0.3, 0.3])
    envs = gen.Environments.of(trials, ["a"], error, n)
    assert envs.count == 2  # (x, y) and (y, x)
    w = gen.hoeffding_weight(np.array([0.3, 0.3, 0.2, 0.2]), n) - 0.5
    # μ agrees with g on the seed pairs with x0 and disagrees on those with x1
    mu = np.array([0.0, 1.0, 0.5, 0.5])
    g = error
    expected = (w[2] + w[3]) / w.sum()
    errors = envs.sign_errors(mu, g, min_ess=0)
    assert errors.tolist() == pytest.approx([expected, expected])
    assert errors.index.tolist() == [0, 1]
    assert [envs.deciding(errors)] == ["a x → y and 1 more"]
    ess = w.sum() ** 2 / (w**2).sum()
    assert len(envs.sign_errors(mu, g, min_ess=ess + 0.01)) == 0
    assert len(envs.sign_errors(mu, g, min_ess=ess)) == 2
    assert envs.within_noise() == 0
    close = gen.Environments.of(trials, ["a"], np.array([0.0, 0.0, 0.001, 0.0]), n)
    assert close.within_noise() == 2  # 0.001 apart on 1 000 test points: noise


def test_the_least_resolved_error_gap_difference_has_weight_one_half() -> None:
    for n in (1_000, 10_000):
        least = gen.resolution(n)
        assert gen.hoeffding_weight(np.array([least]), n)[0] == pytest.approx(0.5, abs=1e-12)
        below, above = gen.hoeffding_weight(np.array([least * 0.99, least * 1.01]), n)
        assert below < 0.5 < above
    assert gen.resolution(10_000) == pytest.approx(0.0196, abs=5e-5)  # ≈ 2 points


def test_environments_by_axis_say_how_far_each_axis_moves_the_error_gap() -> None:
    n = 10_000
    # axis a moves the error gap by 0.1 (far beyond noise), axis b by 0.001 (inside it); 3
    # seeds: 9 seed pairs an environment, an effective sample size of at most 9
    trials = _grid({"a": [0, 1], "b": [0, 1]}, 3)
    error = 0.1 * trials.a.to_numpy() + 0.001 * trials.b.to_numpy() + 0.0001 * trials.seed
    envs = gen.Environments.of(trials, ["a", "b"], error.to_numpy(), n)
    table = envs.by_axis(min_ess=9).set_index("axis")
    assert table.loc["a"].tolist() == pytest.approx([4, 9, 0.1, 0.1, 1.0, 4], abs=5e-4)
    assert table.loc["b"].tolist() == pytest.approx([4, 9, 0.001, 0.001, 0.0, 0], abs=5e-4)
    assert envs.by_axis(min_ess=12).kept.tolist() == [0, 0]  # 9 pairs can never give 12
    assert envs.most_pairs() == 9
    why = gen.no_environment(envs, 12, n)
    assert "at most 9 seed pairs per environment, so an effective sample size of at most 9, " in why
    assert "and in 4 of 8 every pair's error gaps differ by less than 2 points" in why


def _wide(levels: dict[str, list], seeds: int, rng: np.random.Generator) -> pd.DataFrame:
    wide = _grid(levels, seeds)
    wide[GAP] = wide.lr * 2 + wide.width * 0.01 + rng.normal(0, 0.01, len(wide))
    wide[ACCURACY_GAP] = wide[GAP]
    wide["nc_trace/l2/train"] = wide[GAP] * 3 + 1
    wide["v_min/l1/test"] = -wide[GAP]
    wide["gm_path_norm"] = rng.normal(size=len(wide))
    return wide


def test_rank_measures_reads_the_common_point_and_ranks_every_measure() -> None:
    rng = np.random.default_rng(2)
    levels = {"lr": [0.01, 0.1, 0.2], "width": [8, 16], "batch_size": [100, 400]}
    frame = tidy_from_wide(_wide(levels, 4, rng), list(levels))
    ranking = gen.rank_measures(frame, resamples=50)
    assert list(ranking.measure[:2]) == ["nc_trace/l2/train", "v_min/l1/test"]
    first = ranking.set_index("measure").loc["nc_trace/l2/train"]
    assert first.tau == pytest.approx(1.0) and first.Psi == pytest.approx(1.0)
    assert first.cmi == pytest.approx(100.0) and first.robust_worst == pytest.approx(0.0)
    assert first.tau_low == pytest.approx(1.0) and first.configurations == 12
    minimality = ranking.set_index("measure").loc["v_min/l1/test"]
    assert minimality.tau == pytest.approx(-1.0) and minimality.robust_mean == pytest.approx(1.0)
    assert {f"psi_{a}" for a in levels} <= set(ranking.columns)
    assert (ranking.gaps == "").all()  # a complete grid with 4 seeds: nothing is missing


def test_a_sweep_too_small_for_a_statistic_gets_a_stated_gap_not_a_crash() -> None:
    rng = np.random.default_rng(3)
    levels = {"lr": [0.01, 0.1], "width": [8]}
    frame = tidy_from_wide(_wide(levels, 2, rng), list(levels))
    ranking = gen.rank_measures(frame)
    row = ranking.iloc[0]
    assert math.isnan(row.cmi) and math.isnan(row.tau_low) and math.isnan(row.robust_worst)
    assert "CMI needs ≥ 3 swept axes, the sweep has 1" in row.gaps
    assert "≥ 3 seeds per configuration (fewest 2)" in row.gaps
    assert (
        "effective sample size of 12 (at most 4 seed pairs per environment, so an effective "
        "sample size of at most 4, and in " in row.gaps
    )
    single = tidy_from_wide(_wide({"lr": [0.1], "width": [8]}, 1, rng), ["lr", "width"])
    alone = gen.rank_measures(single)
    assert alone.tau.isna().all() and alone.gaps.str.contains("≥ 2 configurations").all()
    with pytest.raises(ValueError, match="gap must be 'gap' or 'accuracy_gap'"):
        gen.rank_measures(frame, gap="loss")


def test_a_run_that_never_met_the_threshold_is_marked_and_taken_at_its_last_epoch() -> None:
    rng = np.random.default_rng(4)
    frame = tidy_from_wide(_wide({"lr": [0.01, 0.1], "width": [8]}, 1, rng), ["lr", "width"])
    capped = (frame.trial_id == "t0") & (frame.metric == "train_step_loss") & (frame.epoch == 3)
    frame.loc[capped, "note"] = "max_epochs"
    values = gen.trial_values(frame)
    assert values.loc["t0", "met_threshold"] == False  # noqa: E712 (a numpy bool)
    assert values.loc["t1", "met_threshold"] == True  # noqa: E712
    assert (values.epoch == 3).all()
    assert values.loc["t0", "nc_trace/l2/train"] < 100  # epoch 3's value, not epoch 2's


def test_the_page_is_generated_from_a_committed_trial_table(tmp_path) -> None:
    from raycompress.analysis import generalisation_page as page_of

    rng = np.random.default_rng(5)
    levels = {"lr": [0.01, 0.1], "width": [8, 16], "batch_size": [100, 400]}
    frame = tidy_from_wide(_wide(levels, 2, rng), list(levels))
    gen.trial_values(frame).to_csv(tmp_path / "trials.csv")
    trials, config = page_of.read_trials(tmp_path / "trials.csv")
    assert config == [*levels, "seed"]
    expected = gen.rank_measures(frame)
    pd.testing.assert_frame_equal(gen.rank_trials(trials, config), expected)
    markers = list(page_of.page_tables(trials, config))
    assert markers == list(page_of.MARKERS)  # what the command asks of a page
    page = "".join(f"{m}\nold\n{m}\n" for m in markers)
    written = page_of.with_tables(page, trials, config)
    assert "old" not in written and "| nc_trace/l2/train |" in written
    assert "| gm_path_norm |" in written and "effective sample size of 12" in written
    beside = written.split(page_of.MINIMALITY)[1]
    # 𝒱-minimality and tr(Σ_W Σ_B⁺) of each layer together, and nothing else
    assert beside.index("| v_min/l1/test |") < beside.index("| nc_trace/l2/train |")
    assert "gm_path_norm" not in beside
    assert "none: no environment kept" in written.split(page_of.ROBUST)[1]
    with pytest.raises(ValueError, match="two <!-- withheld --> lines"):
        page_of.with_tables(page.replace(page_of.WITHHELD, ""), trials, config)


def test_the_page_compares_an_earlier_run_under_todays_names() -> None:
    from raycompress.analysis import generalisation_page as page_of

    rng = np.random.default_rng(11)
    levels = {"lr": [0.01, 0.1], "width": [8, 16], "batch_size": [100, 400]}
    earlier = gen.trial_values(tidy_from_wide(_wide(levels, 1, rng), list(levels)))
    now = earlier.rename(columns={"v_min/l1/test": "v_min[linear]/l1/test"})
    now["gm_path_norm"] = -now["gm_path_norm"]  # a measure whose τ turns
    config = [*levels, "seed"]
    before = page_of.Before(earlier, config, family="linear")
    assert before.renamed("v_min/l1/test") == "v_min[linear]/l1/test"
    assert before.renamed("nc_trace/l2/train") == "nc_trace/l2/train"
    table = page_of.page_tables(now, config, before)[page_of.CHANGED].set_index("measure")
    assert "v_min[linear]/l1/test" in table.index
    row = table.loc["v_min[linear]/l1/test"]
    assert row["tau then"] == row["tau now"] == "-1"
    path = table.loc["gm_path_norm"]
    assert path["tau now"] == page_of._number(-float(path["tau then"]))
    assert page_of.CHANGED not in page_of.page_tables(now, config)  # nothing to compare


def test_each_interval_is_printed_beside_its_statistic_and_nowhere_else() -> None:
    from raycompress.analysis import generalisation_page as page_of

    nan = math.nan
    ranking = pd.DataFrame(
        {"tau": [0.5, 0.25, nan], "tau_low": [0.2, nan, nan], "tau_high": [0.8, nan, nan],
         "Psi_low": [0.1, 0.1, nan], "Psi_high": [0.9, 0.9, nan]}  # Ψ itself left empty
    )  # fmt: skip
    shown = page_of._with_intervals(ranking)
    assert list(shown.columns) == ["tau"]
    assert list(shown.tau) == ["0.5 [0.2, 0.8]", "0.25", ""]
    assert "tau_low" in ranking  # the ranking itself untouched


def test_the_minimality_table_gives_each_statistic_its_interval_over_seeds() -> None:
    from raycompress.analysis import generalisation_page as page_of

    rng = np.random.default_rng(14)
    levels = {"lr": [0.01, 0.1, 0.2], "width": [8, 16], "batch_size": [100, 400]}
    trials = gen.trial_values(tidy_from_wide(_wide(levels, 3, rng), list(levels)))
    config = [*levels, "seed"]
    table = page_of.page_tables(trials, config)[page_of.MINIMALITY].set_index("measure")
    assert list(table.index) == ["v_min/l1/test", "nc_trace/l2/train"]
    assert "tau_low" not in table
    low, high = gen.seed_intervals(
        trials, list(levels), "v_min/l1/test", ACCURACY_GAP, gen.BOOTSTRAP, gen.BOOTSTRAP_SEED
    )["psi_lr"]
    assert table.loc["v_min/l1/test", "psi_lr"] == (
        f"{page_of._number(-1.0)} [{page_of._number(low)}, {page_of._number(high)}]"
    )
    two = gen.trial_values(tidy_from_wide(_wide(levels, 2, rng), list(levels)))
    plain = page_of.page_tables(two, config)[page_of.MINIMALITY]
    assert not plain.tau.str.contains("[", regex=False).any()  # 2 seeds: no interval


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--before-family", "linear"], "--before-family names the family of --before's values"),
        (["--before", "nowhere.csv"], "--before nowhere.csv does not exist"),
        (["--robust-trials-out", "r.csv"], "--robust-trials-out writes --robust's trial table"),
        (["--robust", "nowhere"], "--robust nowhere does not exist"),
        ([], "needs two <!-- headline --> lines around that table: add them"),
    ],
)
def test_the_page_command_refuses_bad_input_in_one_line(tmp_path, capsys, args, message) -> None:
    from raycompress.analysis import generalisation_page as page_of

    page = tmp_path / "page.md"
    page.write_text("unchanged")
    trials = tmp_path / "trials.csv"
    trials.write_text("trial_id\n")
    assert page_of.main([str(trials), "--page", str(page), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert page.read_text() == "unchanged"


def test_a_run_without_a_gap_at_its_common_point_leaves_gaps_not_a_crash() -> None:
    rng = np.random.default_rng(6)
    levels = {"lr": [0.01, 0.1, 0.2], "width": [8, 16], "batch_size": [100, 400]}
    frame = tidy_from_wide(_wide(levels, 1, rng), list(levels))
    diverged = (frame.trial_id == "t0") & (frame.epoch == 3) & (frame.metric != "train_step_loss")
    ranking = gen.rank_measures(frame[~diverged]).set_index("measure")
    assert math.isnan(ranking.loc["nc_trace/l2/train", "cmi"])
    assert "CMI needs the measure and the gap in every configuration" in ranking.gaps.iloc[0]
    assert ranking.loc["nc_trace/l2/train", "tau"] == pytest.approx(1.0)  # the other 11


def test_the_compression_gap_is_test_minus_train_trace_at_the_common_point() -> None:
    rng = np.random.default_rng(7)
    wide = _wide({"lr": [0.01, 0.1], "width": [8]}, 1, rng)
    wide["nc_trace/l2/test"] = wide["nc_trace/l2/train"] + wide[GAP] * 10
    values = gen.trial_values(tidy_from_wide(wide, ["lr", "width"]))
    expected = (wide["nc_trace/l2/test"] - wide["nc_trace/l2/train"]).to_numpy()
    np.testing.assert_allclose(values["compression_gap/l2"].to_numpy(), expected)


def test_a_layer_that_is_another_layers_representation_is_ranked_once_under_both_names() -> None:
    """f₋'s penultimate features (l4) are h³ flattened: l4's measures that l3 has are dropped,
    the one only l4 has (NC3) is kept, and each is named "l3=l4"; a measure of another layer,
    and one of the whole network, keep their names."""
    rng = np.random.default_rng(8)
    levels = {"lr": [0.01, 0.1], "width": [8, 16]}
    wide = _wide(levels, 1, rng)
    wide["nc_trace/l3/train"] = wide[GAP] * 2
    wide["nc_trace/l4/train"] = wide["nc_trace/l3/train"]
    wide["nc_self_duality/l4/train"] = -wide[GAP]
    frame = tidy_from_wide(wide, list(levels))
    trials = frame.trial_id.unique()
    identical = pd.DataFrame({"trial_id": trials, "layer": 4, "same_as": 3})
    values = gen.trial_values(frame, identical)
    layered = sorted(c for c in values.columns if "/l" in c)
    assert layered == [
        "nc_self_duality/l3=l4/train",
        "nc_trace/l2/train",
        "nc_trace/l3=l4/train",
        "v_min/l1/test",
    ]
    np.testing.assert_allclose(values["nc_trace/l3=l4/train"], values[GAP] * 2)
    assert "gm_path_norm" in values
    # merged only where every trial has the layer as the other's
    assert gen.shared_layers(identical.iloc[1:], list(trials)) == {}
    assert gen.shared_layers(identical, list(trials)) == {4: 3}
    assert "nc_trace/l4/train" in gen.trial_values(frame, identical.iloc[1:])


def test_saturated_and_uncertified_values_are_named_by_family_and_left_out_of_the_ranking() -> None:
    """𝒱-minimality under `linear`: trial t0's value sits at its ceiling, t1's is uncertified;
    both are kept in the trial table with their status and left out of τ, which the others
    decide (μ = −g: τ = −1)."""
    rng = np.random.default_rng(9)
    levels = {"lr": [0.01, 0.1, 0.2], "width": [8, 16], "batch_size": [100, 400]}
    frame = tidy_from_wide(_wide(levels, 1, rng), list(levels))
    frame = with_verdicts(frame, "v_min", saturated=["t0"], uncertified=["t1"])
    frame.loc[frame.metric.eq("v_min") & frame.trial_id.eq("t0"), "value"] = (
        99.0  # τ ≠ −1 if ranked
    )
    values = gen.trial_values(frame)
    name = "v_min[linear]/l1/test"
    assert values.loc[["t0", "t1", "t2"], name + gen.STATUS].tolist() == [
        "saturated", "uncertified", ""
    ]  # fmt: skip
    assert name + gen.STATUS not in gen.measures(values, [*levels, "seed"])
    row = gen.rank_trials(values, [*levels, "seed"], resamples=0).set_index("measure").loc[name]
    assert row.tau == pytest.approx(-1.0) and row.configurations == 10
    assert "1 saturated, 1 uncertified of 12 values left out: not measurements" in row.gaps
    counts = gen.withheld(values, gen.measures(values, [*levels, "seed"]))
    assert counts.to_dict("index") == {name: {"uncertified": 1, "saturated": 1, "trials": 12}}
    assert gen.parse_measure(name) == ("v_min", "linear", "l1", "test")
    assert gen.parse_measure("nc_trace/l3=l4/train") == ("nc_trace", None, "l3=l4", "train")
    assert gen.parse_measure("gm_path_norm") == ("gm_path_norm", None, None, None)


def test_a_measure_withheld_in_most_configurations_is_not_ranked() -> None:
    """12 configurations × 3 seeds; μ is its configuration's mean gap in every seed. Withheld
    in every seed of 8 configurations, μ keeps 4, too few to rank; withheld in one seed of
    each, it keeps every configuration, and its interval over seeds is that of the values left
    (a withheld draw is no draw: τ = 1 in every one)."""
    rng = np.random.default_rng(12)
    levels = {"lr": [0.01, 0.1, 0.2], "width": [8, 16], "batch_size": [100, 400]}
    wide = _wide(levels, 3, rng).assign(epoch=3, met_threshold=True)
    # every axis moves the gap by far more than the seeds do: no draw reorders configurations
    wide[GAP] = wide.lr * 2 + wide.width * 0.01 + wide.batch_size * 1e-4
    wide[GAP] += rng.normal(0, 1e-4, len(wide))
    wide["mu"] = wide.groupby(list(levels))[GAP].transform("mean")
    config = [*levels, "seed"]
    status = np.where(wide.index < 24, "uncertified", "")
    most = wide.assign(**{"mu#status": status, "v_min/l1/test#status": status})
    row = gen.rank_trials(most, config, resamples=20).set_index("measure").loc["mu"]
    assert row.configurations == 4 and math.isnan(row.tau) and math.isnan(row.tau_low)
    assert "measured in 4 of 12 configurations, fewer than 5: not ranked" in row.gaps
    assert pd.isna(row["rank"])  # no statistic, no rank
    from raycompress.analysis import generalisation_page as page_of

    shown = page_of.page_tables(most, config)[page_of.MINIMALITY].set_index("measure")
    withheld = shown.loc["v_min/l1/test", "withheld (of 36)"]
    assert withheld == "24 uncertified" and shown.loc["v_min/l1/test", "rank"] == ""
    assert shown.loc["nc_trace/l2/train", "withheld (of 36)"] == ""
    gaps = " ".join(page_of.page_tables(most, config)[page_of.GAPS].iloc[:, 0])
    assert "values left out" not in gaps and "measured in 4 of" not in gaps  # per measure
    assert "2 measures with values that are not measurements" in gaps
    one = wide.assign(**{"mu#status": np.where(wide.seed == 0, "uncertified", "")})
    row = gen.rank_trials(one, config, resamples=20).set_index("measure").loc["mu"]
    assert row.configurations == 12 and row.tau == pytest.approx(1.0)
    assert row.tau_low == pytest.approx(1.0) and row.tau_high == pytest.approx(1.0)
    # every seed of one configuration withheld: its statistics over the 11 others, no rank
    lost = (wide.lr == 0.2) & (wide.width == 8) & (wide.batch_size == 400)
    ranking = gen.rank_trials(wide.assign(**{"mu#status": np.where(lost, "uncertified", "")}),
                              config, resamples=0).set_index("measure")  # fmt: skip
    row = ranking.loc["mu"]
    assert row.configurations == 11 and row.tau == pytest.approx(1.0) and pd.isna(row["rank"])
    assert "measured in 11 of 12 configurations: not ranked" in row.gaps
    assert list(ranking.index).index("mu") > ranking["rank"].notna().sum() - 1  # after ranked


def test_seed_intervals_of_tau_and_of_each_axis_psi() -> None:
    """μ tracks g along lr and against it along width and batch size. With every seed alike
    each draw is the point estimate; with seed noise larger than the batch size's effect, ψ of
    the batch size reaches 0 while lr's stays 1."""
    levels = {"lr": [0.01, 1.0, 2.0], "width": [16, 8], "batch_size": [100, 400]}
    wide = _grid(levels, 4)
    wide[GAP] = wide.lr * 2 + wide.width * 0.01 - wide.batch_size * 1e-4
    wide["mu"] = wide.lr * 2 - wide.width * 0.01 + wide.batch_size * 1e-4
    axes = list(levels)
    exact = gen.seed_intervals(wide, axes, "mu", GAP, resamples=10, seed=0)
    trials = wide.assign(**{ACCURACY_GAP: wide[GAP]}, epoch=3, met_threshold=True)
    point = gen.rank_trials(trials, [*axes, "seed"], resamples=0).set_index("measure").loc["mu"]
    assert exact["psi_lr"] == (1.0, 1.0) and exact["psi_width"] == (-1.0, -1.0)
    assert exact["psi_batch_size"] == (-1.0, -1.0)
    assert exact["Psi"] == pytest.approx((point.Psi, point.Psi))
    assert exact["tau"] == pytest.approx((point.tau, point.tau))
    rng = np.random.default_rng(13)
    noisy = wide.assign(mu=wide.mu + rng.normal(0, 0.2, len(wide)))  # batch size: 0.03
    spread = gen.seed_intervals(noisy, axes, "mu", GAP, resamples=200, seed=0)
    assert spread["psi_lr"] == (1.0, 1.0)
    low, high = spread["psi_batch_size"]
    assert low <= -0.5 and high >= 0  # the seeds cannot tell the batch size's sign


def test_the_robust_sign_error_names_the_environments_that_decide_its_worst_case() -> None:
    """μ follows g when lr changes and runs against it when width changes: the worst case (1)
    is decided by the width environments, named by what changes and what is held fixed."""
    rng = np.random.default_rng(10)
    levels = {"lr": [0.01, 0.1], "width": [8, 16]}
    wide = _grid(levels, seeds=6)
    wide[GAP] = wide.lr * 2 + wide.width * 0.01 + rng.normal(0, 1e-4, len(wide))
    wide[ACCURACY_GAP] = wide.lr + wide.width * 0.01  # changes of ≥ 0.08: beyond the noise
    wide["mu"] = wide.lr * 2 - wide.width * 0.01
    wide = wide.assign(epoch=3, met_threshold=True)
    ranking = gen.rank_trials(wide, [*levels, "seed"], resamples=0).set_index("measure")
    row = ranking.loc["mu"]
    assert row.robust_worst == pytest.approx(1.0) and row.environments == 8  # ordered pairs
    assert row.robust_worst_at == "width 8 → 16 at lr=0.01 and 3 more"  # both ways, both lr
    # read against the error gap whatever the gap ranked: a loss gap that runs the other way
    # leaves every robust column as it was
    turned = gen.rank_trials(wide.assign(**{GAP: -wide[GAP]}), [*levels, "seed"], resamples=0)
    robust = ["robust_worst", "robust_mean", "robust_p90", "environments", "robust_worst_at"]
    pd.testing.assert_frame_equal(turned.set_index("measure")[robust], ranking[robust])
    envs = gen.Environments.of(wide, list(levels), wide[ACCURACY_GAP].to_numpy(), 10_000)
    # a reverse environment's error, summed in another order, may differ in its last bits
    near = pd.Series([0.04, np.nextafter(0.04, 1), 0.01], index=[0, 1, 2])
    assert envs.deciding(near) == f"{envs.names[0]} and 1 more"


def test_a_companion_sweep_fills_the_robust_tables_the_main_grid_cannot(tmp_path) -> None:
    """The main grid (2 seeds) keeps no environment; a companion of 6 seeds whose axes move the
    error gap far beyond the noise fills the companion tables from its own trial table, the
    command writing that table where asked."""
    from raycompress.analysis import generalisation_page as page_of

    rng = np.random.default_rng(12)
    levels = {"lr": [0.01, 0.1], "width": [8, 16], "batch_size": [100, 400]}
    main = gen.trial_values(tidy_from_wide(_wide(levels, 2, rng), list(levels)))
    companion = {"lr": [0.01, 0.1], "width": [8, 16]}
    wide = _grid(companion, seeds=6)
    wide[ACCURACY_GAP] = wide.lr + wide.width * 0.01
    wide[GAP] = wide[ACCURACY_GAP] + rng.normal(0, 1e-4, len(wide))
    wide["mu"] = wide.lr * 2 - wide.width * 0.01  # follows lr, runs against width
    companion_config = [*companion, "seed"]  # a trial table's order: configuration, epoch, values
    wide = wide.assign(epoch=3, met_threshold=True)[
        [*companion_config, "epoch", "met_threshold", GAP, ACCURACY_GAP, "mu"]
    ]
    tables = page_of.page_tables(main, [*levels, "seed"], companion=(wide, companion_config))
    assert "none: no environment kept" in set(tables[page_of.ROBUST].measure)
    kept = tables[page_of.COMPANION_ENVIRONMENTS].set_index("axis")["kept (ESS ≥ 12)"]
    assert kept.to_dict() == {"lr": 4, "width": 4}  # 2 ordered pairs × 2 settings of the other
    robust = tables[page_of.COMPANION_ROBUST].set_index("measure")
    assert robust.loc["mu", "robust_worst"] == "1"
    assert robust.loc["mu", "robust_worst_at"].startswith("width 8 → 16")
    page = tmp_path / "page.md"
    page.write_text("".join(f"{m}\nold\n{m}\n" for m in tables))
    main.to_csv(tmp_path / "main.csv")
    wide.to_csv(tmp_path / "companion.csv", index_label=TRIAL_ID)
    args = ["--page", str(page), "--robust", str(tmp_path / "companion.csv"),
            "--robust-trials-out", str(tmp_path / "out" / "robust.csv")]  # fmt: skip
    assert page_of.main([str(tmp_path / "main.csv"), *args]) == 0
    assert "| mu | 1 |" in page.read_text().split(page_of.COMPANION_ROBUST)[1]
    assert len(pd.read_csv(tmp_path / "out" / "robust.csv")) == len(wide)
