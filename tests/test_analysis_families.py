"""The claims under other decoder families: benchmark outputs read back as the tidy frame's
rows, judged by the reproduction's own checks per (model, family, run), and the figure."""

from __future__ import annotations

import json
from pathlib import Path

from raycompress.analysis import families
from raycompress.schema import Head, HeadFit, Quantity, Term, VInfoResult
from raycompress.stopping import Stop


def result(suff: float, minimality: float, saturated: bool) -> dict:
    fit = HeadFit(0, Stop.CERTIFIED, 0.1, True, 0.0)

    def term(q: Quantity, bits: float, name: str) -> Term:
        return Term(q, bits, bits, "in_sample", (Head(name, fit, 3.32, bits),), {}, None,
                    saturated)  # fmt: skip

    terms = {Quantity.SUFFICIENCY: term(Quantity.SUFFICIENCY, suff, "suff"),
             Quantity.MINIMALITY: term(Quantity.MINIMALITY, minimality, "digit0")}  # fmt: skip
    return VInfoResult(terms, num_digits=1).to_json()


def whole_run(tmp_path: Path) -> Path:
    """Two epochs of layers 0–1, linear: minimality of l=1 falls 0.5 bit (a compression),
    sufficiency of l=0 at its ceiling (saturated)."""
    epochs = [
        {"epoch": e, "results": {
            f"{layer}/{split}/linear": result(3.32 if layer == 0 else 3.0, bits, layer == 0)
            for layer, bits in ((0, 0.6), (1, 1.0 if e == 1 else 0.5))
            for split in ("train", "test")
        }}
        for e in (1, 2)
    ]  # fmt: skip
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"epochs": epochs}))
    return path


def test_a_whole_run_is_judged_per_family_with_its_certified_and_saturated_counts(
    tmp_path: Path,
) -> None:
    frame = families.whole_run(whole_run(tmp_path), "mnistnet")
    assert set(frame.family) == {"linear"} and set(frame.epoch) == {1, 2}
    table = families.family_claims(frame).set_index("claim")
    phase = table.loc["no compression phase (information plane)"]
    assert phase.verdict == "not reproduced" and "0.50 bits (l=1" in phase["values"]
    drops = table.loc["minimality drops with depth"]
    assert drops.verdict == "reproduced" and drops.family == "linear" and drops.model == "f₋"
    assert drops.certified.startswith("8 of 8 at epoch 2") and drops.saturated == "4 of 8"


def test_stopping_epochs_are_another_run_and_the_figure_draws_the_whole_one(
    tmp_path: Path,
) -> None:
    stops = tmp_path / "stops.json"
    stops.write_text(json.dumps({
        "cifarnet/epoch12/l1/train/converged/mlp-64": {"result": result(3.3, 3.3, True)},
        "cifarnet/epoch12/l1/test/converged/mlp-64": {"result": result(3.3, 3.2, False)},
    }))  # fmt: skip
    frame = families.stopping_epochs(stops)
    assert set(frame.family) == {"mlp-64"} and set(frame.epoch) == {12}
    table = families.family_claims(frame)
    assert set(table.model) == {"f₊"} and set(table.measured) == {families.STOPPING_EPOCH}
    phase = table.set_index("claim").loc["no compression phase (information plane)"]
    assert phase.verdict == "not measured"  # one epoch: no path to fall along
    both = families.whole_run(whole_run(tmp_path), "mnistnet")
    figure = families.minimality_figure(both, tmp_path / "minimality.png")
    assert figure.stat().st_size > 0
