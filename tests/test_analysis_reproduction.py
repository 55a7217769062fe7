"""The reproduction checks on synthetic trials whose structure decides each verdict: one f₋
trial of `synthetic_frame`, and f₊ trials of any depth and number of classes built here."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from synthetic import BUDGETS, synthetic_frame

from raycompress.analysis import reproduction

SUFFICIENCY = "sufficiency of l = 0–2 saturates"  # the thesis' name, whatever the layers


def one_trial() -> pd.DataFrame:
    frame = synthetic_frame()
    return frame[frame.trial_id == "mni0"]


def with_label_entropy(frame: pd.DataFrame, bits: dict[str, float]) -> pd.DataFrame:
    """The frame with H(y) (`bits` per split) recorded beside every reported sufficiency, as
    the 𝒱-information measurement records it."""
    suff = frame[(frame.metric == "v_suff") & frame.budget.isna()]
    entropy = suff.assign(metric=reproduction.H_Y, value=suff.split.map(bits))
    return pd.concat([frame, entropy], ignore_index=True)


def staged_trial(stages: int, classes: int, suff: float) -> pd.DataFrame:
    """One f₊ trial of a network of `stages` stages on `classes` balanced classes: NC at
    l = 1..stages (`stages`: the penultimate features), halving from one hidden layer to the
    next; 𝒱-information at l = 0..stages−1 on epochs 2 and 4, sufficiency `suff` bits below
    the deepest layer and 1 bit at it, minimality 2/(l + 1) + 0.1·epoch bits."""
    h_y = math.log2(classes)
    rows = []
    for epoch, split in itertools.product([1, 2, 3, 4], ["train", "test"]):
        base = ("cif0", "toy", "cifarnet", epoch, split)
        gap = 0.1 * epoch if split == "test" else 0.0
        rows += [
            (*base, pd.NA, "loss", 1.0 / epoch + gap),
            (*base, pd.NA, "accuracy", 1.0 - 0.5 / epoch - gap / 2),
        ]
        scale = (1.5 if split == "test" else 1.0) / epoch
        rows += [(*base, layer, "nc_trace", scale * 0.5**layer) for layer in range(1, stages)]
        rows.append((*base, stages, "nc_trace", 7.0 * scale))
        if epoch in (2, 4):
            for layer in range(stages):
                rows += [
                    (*base, layer, "v_suff", suff if layer < stages - 1 else 1.0),
                    (*base, layer, "v_min", 2.0 / (layer + 1) + 0.1 * epoch),
                    (*base, layer, reproduction.H_Y, h_y),
                ]
        if split == "train":
            rows.append((*base, pd.NA, "train_step_loss", 1.2 / epoch))
    columns = ["trial_id", "dataset", "model", "epoch", "split", "layer", "metric", "value"]
    frame = pd.DataFrame(rows, columns=columns)
    stopped = (frame.metric == "train_step_loss") & (frame.epoch == 4)
    return frame.assign(
        layer=frame.layer.astype("Int64"),
        budget=pd.Series(pd.NA, index=frame.index, dtype="Int64"),
        note=np.where(stopped, "max_epochs", ""),
    )


def claims_of(frame: pd.DataFrame) -> pd.DataFrame:
    return reproduction.claims(frame).set_index("claim")


@pytest.fixture(scope="module")
def verdicts() -> dict[str, tuple[str, str]]:
    table = reproduction.claims(one_trial())
    assert table.model.tolist() == ["f₋"] * len(reproduction.CHECKS)
    return {row.claim: (row.ours, row.verdict) for row in table.itertuples()}


def test_verdicts_follow_the_synthetic_structure(verdicts: dict[str, tuple[str, str]]) -> None:
    assert verdicts["test accuracy (± 1 point)"][1] == "not reproduced"  # 67.5 % by design
    assert verdicts["test accuracy (± 1 point)"][0] == "67.5% (loss 0.650, epoch 4)"
    assert verdicts["reaches the 0.02 training-loss threshold"] == (
        "max_epochs at epoch 4 (step loss 0.3000)",
        "not reproduced",
    )
    assert verdicts["train NC below test NC"] == (
        "100% of (epoch, layer) pairs; all layers at the end: True",
        "reproduced",
    )
    # test loss 1/epoch + 0.1·epoch: lowest at epoch 3, barely rising after
    assert verdicts["test loss rises late in training (overfitting)"] == (
        "lowest 0.633 at epoch 3, 0.650 at the end",
        "not reproduced",
    )
    # compression gap ∝ 1/epoch while the generalisation gap is 0.1·epoch: strongly anti-
    # correlated at every hidden layer
    epochs = np.arange(1.0, 5.0)
    r = np.corrcoef(0.1 * epochs, 1 / epochs)[0, 1]
    ours, verdict = verdicts["compression gap vs generalisation gap"]
    assert verdict == "not reproduced" and f"h1 {r:+.2f}, h2 {r:+.2f}, h3 {r:+.2f}" in ours
    assert verdicts["NC decreases with depth"][1] == "reproduced"
    assert "from epoch 1" in verdicts["NC decreases with depth"][0]
    assert verdicts["log NC linear in l (equi-separation)"][1] == "reproduced"
    assert "r = -1.000, ratio 0.50" in verdicts["log NC linear in l (equi-separation)"][0]
    assert verdicts["sufficiency of l = 0–2 saturates"][1] == "context"  # an f₊ claim
    assert verdicts["minimality drops with depth"][1] == "reproduced"
    # minimality only grows over the epochs: no fall from a peak
    ours, verdict = verdicts["no compression phase (information plane)"]
    assert verdict == "reproduced" and "0.00 bits" in ours


def test_saturation_of_sufficiency_is_judged_for_f_plus() -> None:
    ten_classes = math.log2(10)
    frame = with_label_entropy(one_trial(), {"train": ten_classes, "test": ten_classes})
    frame = frame.assign(model="cifarnet")
    table = reproduction.claims(frame).set_index("claim")
    row = table.loc["sufficiency of l = 0–2 saturates"]
    # test sufficiency is 3.32 − 0.2 l bits: l = 1, 2 fall short of saturation
    assert row.verdict == "not reproduced" and "l=1: 3.32/3.12" in row.ours
    suff = frame.metric == "v_suff"
    frame = frame.assign(value=frame.value.where(~suff, 3.3))
    row = reproduction.claims(frame).set_index("claim").loc["sufficiency of l = 0–2 saturates"]
    assert row.verdict == "reproduced" and row.thesis == "layers 0–2 ≈ log2 10 ≈ 3.32 bits"


def test_a_six_stage_network_is_judged_on_its_own_layers() -> None:
    table = claims_of(staged_trial(stages=6, classes=10, suff=3.30))
    ours, verdict = table.loc["NC decreases with depth", ["ours", "verdict"]]
    assert (ours, verdict) == ("h1 > h2 > h3 > h4 > h5 on both splits from epoch 1", "reproduced")
    ours = table.loc["compression gap vs generalisation gap", "ours"]
    assert ours.startswith("Pearson r per layer: h1 ") and ", h5 " in ours
    assert ours.split(", ")[-1].startswith("penultimate ")
    equi = table.loc["log NC linear in l (equi-separation)"]
    assert equi.verdict == "reproduced" and "train: r = -1.000, ratio 0.50" in equi.ours
    row = table.loc["minimality drops with depth"]
    assert row.verdict == "reproduced"
    assert row.ours == (
        "bits, l = 0..5: train: 2.40, 1.40, 1.07, 0.90, 0.80, 0.73; "
        "test: 2.40, 1.40, 1.07, 0.90, 0.80, 0.73"
    )
    # saturation is looked for at l = 0..4: the deepest layer's 1 bit does not count
    row = table.loc[SUFFICIENCY]
    assert row.thesis == "layers 0–4 ≈ log2 10 ≈ 3.32 bits" and row.verdict == "reproduced"
    assert row.ours.endswith("l=4: 3.30/3.30") and "l=5" not in row.ours


def test_a_short_fall_at_any_layer_but_the_deepest_is_not_saturation() -> None:
    frame = staged_trial(stages=6, classes=10, suff=3.30)
    short = ((frame.metric == "v_suff") & (frame.layer == 4)).fillna(False)
    frame.loc[short, "value"] = 3.0  # below log2 10 − 0.1 bits at l = 4 only
    row = claims_of(frame).loc[SUFFICIENCY]
    assert row.verdict == "not reproduced" and "l=4: 3.00/3.00" in row.ours


@pytest.mark.parametrize(("suff", "verdict"), [(1.55, "reproduced"), (1.3, "not reproduced")])
def test_three_classes_saturate_at_log2_3(suff: float, verdict: str) -> None:
    row = claims_of(staged_trial(stages=4, classes=3, suff=suff)).loc[SUFFICIENCY]
    assert row.thesis == "layers 0–2 ≈ log2 3 ≈ 1.58 bits"
    assert row.verdict == verdict


def test_the_ceiling_is_the_measured_label_entropy() -> None:
    frame = staged_trial(stages=4, classes=3, suff=1.35)
    # imbalanced training labels: H(y) = 1.40 bits < log2 3 on train; balanced test labels
    train = ((frame.metric == reproduction.H_Y) & (frame.split == "train")).fillna(False)
    frame.loc[train, "value"] = 1.40
    row = claims_of(frame).loc[SUFFICIENCY]
    assert row.thesis == "layers 0–2 ≈ H(y) ≈ 1.40 bits (train), log2 3 ≈ 1.58 bits (test)"
    assert row.verdict == "not reproduced"  # 1.35 bits fall short of the test split's 1.58
    suff = ((frame.metric == "v_suff") & (frame.split == "train")).fillna(False)
    frame.loc[suff, "value"] = 1.35
    test = ((frame.metric == "v_suff") & (frame.split == "test")).fillna(False)
    frame.loc[test & (frame.layer < 3), "value"] = 1.55
    assert claims_of(frame).loc[SUFFICIENCY, "verdict"] == "reproduced"


def test_a_compression_phase_is_detected() -> None:
    frame = one_trial().copy()
    late = (frame.metric == "v_min") & (frame.epoch == 4) & (frame.layer == 1)
    frame.loc[late, "value"] -= 1.0  # minimality of h1 falls by 0.8 bits after epoch 2
    table = reproduction.claims(frame).set_index("claim")
    row = table.loc["no compression phase (information plane)"]
    assert row.verdict == "not reproduced" and "0.80 bits (l=1" in row.ours


def test_unmeasured_vinfo_is_said_so() -> None:
    frame = one_trial()
    table = reproduction.claims(frame[~frame.metric.str.startswith("v_")]).set_index("claim")
    assert table.loc["sufficiency of l = 0–2 saturates", "verdict"] == "not measured"
    assert table.loc["minimality drops with depth", "verdict"] == "not measured"
    # sufficiency without the labels' entropy: no ceiling to judge saturation against
    frame = staged_trial(stages=4, classes=10, suff=3.30)
    row = claims_of(frame[frame.metric != reproduction.H_Y]).loc[SUFFICIENCY]
    assert row.verdict == "not measured" and row.ours.endswith("; H(y) not recorded")


def test_page_table_is_replaced_between_markers_and_pipes_escaped() -> None:
    table = pd.DataFrame(
        [("a", "f₋", "|r| ≈ 1", "0.99", "reproduced")],
        columns=["claim", "model", "thesis", "ours", "verdict"],
    )
    marker = reproduction.MARKER
    page = f"intro\n{marker}\nold table\n{marker}\noutro\n"
    new = reproduction.with_table(page, table)
    assert new.startswith("intro\n") and new.endswith("\noutro\n") and "old table" not in new
    assert "| a | f₋ | \\|r\\| ≈ 1 | 0.99 | reproduced |" in new
    assert reproduction.with_table(new, table) == new
    with pytest.raises(ValueError, match="needs two"):
        reproduction.with_table("no markers", table)
    with pytest.raises(ValueError, match="budget verdicts"):
        reproduction.with_tables(page, synthetic_frame())


def test_vinfo_claims_are_judged_again_at_every_budget() -> None:
    frame = one_trial()
    by_budget = reproduction.budget_claims(frame)
    assert by_budget.claim.unique().tolist() == list(reproduction.BUDGET_CLAIMS)
    assert by_budget.budget.tolist() == BUDGETS * len(reproduction.BUDGET_CLAIMS)
    depth = by_budget[by_budget.claim == "minimality drops with depth"].set_index("budget")
    # every curve ends at the reported value: the last budget gives the main table's numbers
    main = reproduction.claims(frame).set_index("claim").loc["minimality drops with depth"]
    assert depth.loc[BUDGETS[-1], "ours"] == main.ours
    # after 5 epochs every value is 1/5 − 1/50 bits lower: at epoch 4, h⁰'s 2.4 bits → 2.22
    assert depth.loc[5, "ours"].startswith("bits, l = 0..3: train: 2.22, ")
    verdicts = reproduction.budget_verdicts(by_budget).set_index("claim")
    assert (verdicts["depends on the budget"] == "no").all()
    assert verdicts.loc["minimality drops with depth", "5 epochs"] == "reproduced"


def test_a_verdict_that_depends_on_the_budget_is_said_so() -> None:
    frame = one_trial().copy()
    # h¹'s minimality curve starts above h⁰'s: the ordering fails for budgets 5 and 10 only
    early = (
        (frame.metric == "v_min_at_budget") & (frame.layer == 1) & (frame.budget <= 10)
    ).fillna(False)
    frame.loc[early, "value"] += 2.0
    row = reproduction.budget_verdicts(reproduction.budget_claims(frame)).set_index("claim")
    row = row.loc["minimality drops with depth"]
    assert [row[f"{b} epochs"] for b in BUDGETS] == ["not reproduced"] * 2 + ["reproduced"] * 2
    assert row["depends on the budget"] == "yes"


def test_at_budget_swaps_in_the_curve_points_only() -> None:
    frame = one_trial()
    swapped = reproduction.at_budget(frame, 10)
    suff = swapped[(swapped.metric == "v_suff") & (swapped.epoch == 4) & (swapped.layer == 3)]
    reported = frame[(frame.metric == "v_suff") & (frame.epoch == 4) & (frame.layer == 3)]
    assert np.allclose(suff.value.to_numpy(), reported.value.to_numpy() - 1 / 10 + 1 / 50)
    assert not swapped.metric.str.endswith("_at_budget").any()
    assert len(swapped[swapped.metric == "nc_trace"]) == len(frame[frame.metric == "nc_trace"])


def test_without_curves_the_budget_tables_are_empty() -> None:
    frame = one_trial()
    plain = frame[frame.budget.isna()]
    assert reproduction.budget_claims(plain).empty
    page = "".join(f"{m}\nSTALE\n{m}\n" for m in reproduction.page_tables(plain))
    assert "STALE" not in reproduction.with_tables(page, plain)


def test_minimality_ties_within_the_stopping_loss_are_not_an_increase() -> None:
    frame = one_trial().copy()
    last = (frame.metric == "v_min") & (frame.epoch == 4)
    for rise, verdict in ((0.02, "reproduced"), (0.05, "not reproduced")):
        # every layer saturated at 3.30 bits, h¹ `rise` above h⁰
        saturated = frame.assign(value=frame.value.where(~last, 3.30))
        h1 = (last & (saturated.layer == 1)).fillna(False)
        saturated.loc[h1, "value"] += rise
        row = reproduction.claims(saturated).set_index("claim").loc["minimality drops with depth"]
        assert row.verdict == verdict, rise


def test_both_protocols_side_by_side_flag_a_changed_verdict() -> None:
    thesis = one_trial()
    converged = thesis.copy()
    minimality = converged.metric == reproduction.V_MIN
    # minimality now rises with depth at the last measurement: that claim's verdict flips
    converged.loc[minimality, "value"] = converged.loc[minimality, "layer"].astype(float)
    certified = converged[minimality].assign(metric=reproduction.V_MIN.certified, value=1.0)
    converged = pd.concat([converged, certified], ignore_index=True)
    table = reproduction.protocol_claims(thesis, converged).set_index(["claim", "model"])
    drop = table.loc[("minimality drops with depth", "f₋")]
    assert (drop["verdict (thesis)"], drop["verdict (converged)"]) == (
        "reproduced",
        "not reproduced",
    )
    assert drop.verdict == "**changes**"
    assert table.loc[("sufficiency of l = 0–2 saturates", "f₋"), "verdict"] == ""
    assert drop["certified (converged)"].startswith(f"{int(certified.epoch.eq(4).sum())} of ")
    plus = table.loc[("minimality drops with depth", "f₊")]  # no f₊ trial in either frame
    assert plus["verdict (converged)"] == "not measured" and plus.verdict == ""
