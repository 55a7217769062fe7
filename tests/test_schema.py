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
    return {(r[4], r[5]): (r[6], r[8]) for r in result.rows((3, "train", 1, "network"))}


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
    rows = VInfoResult.failed("worker died").rows((3, "test", 2, "linear"))
    assert {r[3] for r in rows} == {"linear"}  # the family is the value's identity
    assert [(r[4], math.isnan(r[6]), r[8]) for r in rows] == [
        ("v_suff", True, "error: worker died"), ("v_min", True, "error: worker died"),
    ]  # fmt: skip


def test_each_statistic_has_one_spelling() -> None:
    stored = {f.name for f in fields(CollapseStats)} - {"num_samples", "dim", "path"}
    assert stored | {NC.TRACE_RATIO} == set(NC)
    stats = CollapseStats(2.0, 3, 1e-12, 4.0, 2.0, 0.1, 0.0, 0.0, math.nan, 1.0, 100, 8, "features")
    rows = CollapseReport(0.3, 0.9, {1: stats}).rows(1, "test")
    assert {r[4]: r[6] for r in rows if r[2] == 1}[NC.TRACE_RATIO] == 2.0
    assert {r[4] for r in rows if r[2] == 1} == set(NC)
    assert {(r[3], r[7]) for r in rows} == {(None, None)}  # no family, nothing saturated
    # a history from before the one spelling: unprefixed keys, the derived ratio stored
    old = {k.removeprefix("nc_") if k != "nc_trace" else k: v for k, v in stats.to_json().items()}
    assert CollapseStats.from_json({**old, "trace_ratio": 2.0}) == stats


def test_only_the_value_and_its_raw_rows_carry_the_saturated_mark() -> None:
    certified = Head("suff", HeadFit(40, Stop.CERTIFIED, 0.01, True, 0.0), 3.32, 3.31)
    term = Term(Quantity.SUFFICIENCY, 3.31, 3.31, "in_sample", (certified,), {}, saturated=True)
    rows = VInfoResult({Quantity.SUFFICIENCY: term}).rows((5, "train", 2, "mlp-64"))
    marked = {r[4]: r[7] for r in rows}
    assert marked["v_suff"] is True and marked["v_suff_raw"] is True
    assert marked["h_y_bits"] is None and marked["v_suff_certified"] is None
    assert Term.from_json(Quantity.SUFFICIENCY, term.to_json()).saturated is True


def test_an_epoch_keeps_each_familys_measurement_apart_through_its_json() -> None:
    from raycompress.schema import EpochRecord

    network, linear = measured(), VInfoResult.failed("not run")
    epoch = EpochRecord(2, 0.5, None, None, None, {(1, "train", "network"): network,
                                                   (1, "train", "linear"): linear})  # fmt: skip
    again = EpochRecord.from_json(json.loads(json.dumps(epoch.to_json())))
    assert set(again.vinfo) == {(1, "train", "network"), (1, "train", "linear")}
    assert again.vinfo[1, "train", "linear"].error == "not run"
    families = {r[3] for r in again.rows() if r[4] == "v_suff"}
    assert families == {"network", "linear"}
    # a history written before families: its measurements are the network family's
    old = {**epoch.to_json(), "vinfo": {"train": {"1": network.to_json()}}}
    del old["vinfo_families"]
    assert set(EpochRecord.from_json(old).vinfo) == {(1, "train", "network")}
