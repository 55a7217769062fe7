"""The typed results: each writes itself to JSON and back, and yields its tidy rows with the
notes a reader needs (protocol, decoder epochs and stops, carried budget points, errors)."""

from __future__ import annotations

import json
import math
from dataclasses import fields

from raycompress.schema import (
    NC,
    CollapseReport,
    CollapseStats,
    Head,
    HeadFit,
    Placement,
    Quantity,
    Term,
    VInfoResult,
)
from raycompress.stopping import Stop


def head(name: str, epochs: int, stop: Stop, bits: float = 0.5) -> Head:
    return Head(name, HeadFit(epochs, stop, 0.01), entropy=1.0, bits=bits)


def measured(error: str = "") -> VInfoResult:
    suff = Term(Quantity.SUFFICIENCY, 1.5, 1.5, "in_sample: A", (head("suff", 12, Stop.PLATEAU),),
                {10: 1.4, 20: 1.5})  # fmt: skip
    digits = (head("digit0", 50, Stop.MAX_EPOCHS), head("digit1", 3, Stop.DIVERGED, math.nan))
    minimality = Term(Quantity.MINIMALITY, math.nan, math.nan, "in_sample: B", digits,
                      {10: 0.3, 20: math.nan}, monte_carlo=(0.4, 0.1))  # fmt: skip
    held_out = Term(Quantity.HELD_OUT, 0.0, -0.2, "held_out: C",
                    (head("held_out", 7, Stop.LOSS_THRESHOLD),), {20: -0.2})  # fmt: skip
    terms = {t.quantity: t for t in (suff, minimality, held_out)}
    placement = Placement("node", "cpu", "", "pg")
    return VInfoResult(terms, 2, True, None, error, placement)


def notes(result: VInfoResult) -> dict[tuple[str, int | None], tuple[float, str]]:
    return {(row[3], row[4]): (row[5], row[6]) for row in result.rows(3, "train", 1)}


def test_a_result_reads_back_from_its_json() -> None:
    result = measured("minimality decoder 2 diverged")
    text = json.dumps(result.to_json())
    again = VInfoResult.from_json(json.loads(text))
    assert json.dumps(again.to_json()) == text
    assert again.terms[Quantity.SUFFICIENCY].heads[0].fit.stop is Stop.PLATEAU
    assert again.terms[Quantity.SUFFICIENCY].curve == {10: 1.4, 20: 1.5}  # budgets as ints
    assert again.placement == result.placement


def test_notes_carry_protocol_epochs_stops_and_the_error() -> None:
    rows = notes(measured("minimality decoder 2 diverged"))
    error = "error: minimality decoder 2 diverged"
    assert rows["v_suff", None] == (
        1.5,
        f"in_sample: A; decoder epochs (stop): 12 (plateau); {error}",
    )
    both = "50 (max_epochs), 3 (diverged)"
    assert rows["v_min_digit0_raw", None] == (
        0.5,
        f"in_sample: B; decoder epochs (stop): {both}; {error}",
    )
    assert rows["v_suff_held_out_raw", None][1].startswith("held_out: C; decoder epochs (stop): 7")
    assert rows["v_suff_held_out", None][0] == 0.0 and rows["clipped", None] == (1.0, error)
    assert rows["digit1_epochs", None] == (3.0, f"diverged; {error}")
    assert rows["h_y_bits", None] == (1.0, error) and rows["num_digits", None] == (2.0, error)
    assert rows["v_min_mc_std", None][0] == 0.1
    # the convergence indicator: bits gained between the last two budgets
    assert rows["v_suff_last_gain", None][0] == 1.5 - 1.4
    assert ("v_suff_held_out_last_gain", None) not in rows  # one budget: no indicator


def test_budget_points_after_a_decoder_stopped_say_so() -> None:
    rows = notes(measured())
    assert rows["v_suff_at_budget", 10] == (1.4, "")
    assert rows["v_suff_at_budget", 20] == (1.5, "carried from before the budget: suff at 12")
    assert rows["v_min_at_budget", 10][1] == "carried from before the budget: digit1 at 3"


def test_a_lost_measurement_is_a_nan_row_per_headline_quantity() -> None:
    rows = VInfoResult.failed("worker died").rows(3, "test", 2)
    assert [(r[3], math.isnan(r[5]), r[6]) for r in rows] == [
        ("v_suff", True, "error: worker died"), ("v_min", True, "error: worker died"),
    ]  # fmt: skip


def test_each_statistic_has_one_spelling() -> None:
    stored = {f.name for f in fields(CollapseStats)} - {"num_samples", "dim", "path"}
    assert stored | {NC.TRACE_RATIO} == set(NC)
    stats = CollapseStats(2.0, 3, 1e-12, 4.0, 2.0, 0.1, 0.0, 0.0, math.nan, 1.0, 100, 8, "features")
    rows = CollapseReport(0.3, 0.9, {1: stats}).rows(1, "test")
    assert {r[3]: r[5] for r in rows if r[2] == 1}[NC.TRACE_RATIO] == 2.0
    assert {r[3] for r in rows if r[2] == 1} == set(NC)
    # a history from before the one spelling: unprefixed keys, the derived ratio stored
    old = {k.removeprefix("nc_") if k != "nc_trace" else k: v for k, v in stats.to_json().items()}
    assert CollapseStats.from_json({**old, "trace_ratio": 2.0}) == stats
