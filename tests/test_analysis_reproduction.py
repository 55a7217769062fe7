"""The reproduction checks on one synthetic f₋ trial, whose structure decides each verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from synthetic import BUDGETS, synthetic_frame

from raycompress.analysis import reproduction


def one_trial() -> pd.DataFrame:
    frame = synthetic_frame()
    return frame[frame.trial_id == "mni0"]


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
    frame = one_trial().assign(model="cifarnet")
    table = reproduction.claims(frame).set_index("claim")
    row = table.loc["sufficiency of l = 0–2 saturates"]
    # test sufficiency is 3.32 − 0.2 l bits: l = 1, 2 fall short of saturation
    assert row.verdict == "not reproduced" and "l=1: 3.32/3.12" in row.ours
    suff = frame.metric == "v_suff"
    frame = frame.assign(value=frame.value.where(~suff, 3.3))
    row = reproduction.claims(frame).set_index("claim").loc["sufficiency of l = 0–2 saturates"]
    assert row.verdict == "reproduced"


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
