"""Derived tables against the synthetic frame's known structure and direct formulas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from synthetic import NC_RATIO, nc_value, synthetic_frame

from raycompress.analysis import tables


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame()


def test_trials_pool_seeds_into_one_panel_and_name_other_axes(frame: pd.DataFrame) -> None:
    assert set(tables.trials(frame).panel) == {"fashion-mnist · mnistnet", "fashion-mnist · mlp"}
    wider = frame.copy()
    wider.insert(4, "lr", np.where(wider.model == "mlp", 0.1, 0.01))
    info = tables.trials(wider).set_index("trial_id")
    assert info.loc["mlp0", "panel"] == info.loc["mlp1", "panel"] == "fashion-mnist · mlp · lr=0.1"
    assert list(info.columns) == ["dataset", "model", "seed", "lr", "panel"]


def test_layer_names_follow_the_network(frame: pd.DataFrame) -> None:
    named = tables.with_layer_names(frame)
    pairs = set(zip(named.metric, named.layer.astype("float"), named.layer_name, strict=True))
    assert ("nc_trace", 4.0, "penultimate") in pairs and ("nc_trace", 1.0, "h1") in pairs
    assert ("v_suff", 0.0, "x") in pairs and ("v_suff", 3.0, "h3") in pairs
    assert named[named.metric == "loss"].layer_name.isna().all()
    assert tables.layer_order(named) == ["x", "h1", "h2", "h3", "penultimate"]


def test_gaps_are_test_minus_train(frame: pd.DataFrame) -> None:
    gaps = tables.gaps(frame)
    assert len(gaps) == 4 * 4 * 4  # trials × epochs × NC layers
    row = gaps[(gaps.trial_id == "mlp1") & (gaps.epoch == 3) & (gaps.layer == 2)].iloc[0]
    expected = nc_value(3, 2, "test", 1) - nc_value(3, 2, "train", 1)
    assert row.compression_gap == pytest.approx(expected, rel=1e-12)
    assert row.generalisation_gap == pytest.approx(0.3, rel=1e-12)  # 0.1 · epoch by design


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).sum() / math.sqrt((dx**2).sum() * (dy**2).sum()))


def test_equi_separation_recovers_an_exact_geometric_law(frame: pd.DataFrame) -> None:
    table = tables.equi_separation(frame)
    assert len(table) == 4 * 4 * 2  # trials × epochs × splits
    assert (table.num_layers == 3).all()  # the penultimate layer (off the law) is left out
    np.testing.assert_allclose(table.pearson, -1.0, atol=1e-12)
    np.testing.assert_allclose(table.ratio, NC_RATIO, rtol=1e-10)


def test_equi_separation_matches_the_formulas_on_noisy_values() -> None:
    rng = np.random.default_rng(1)
    nc = rng.uniform(0.1, 5.0, size=4)
    rows = [("t", "d", "m", 1, "train", layer, "nc_trace", v, "") for layer, v in enumerate(nc, 1)]
    rows.append(("t", "d", "m", 1, "train", 5, "nc_trace", 9.0, ""))  # penultimate
    cols = ["trial_id", "dataset", "model", "epoch", "split", "layer", "metric", "value", "note"]
    frame = pd.DataFrame(rows, columns=cols).astype({"layer": "Int64"})
    row = tables.equi_separation(frame).iloc[0]
    layers, logs = np.arange(1.0, 5.0), np.log(nc)
    slope = pearson(layers, logs) * logs.std() / layers.std()
    assert row.pearson == pytest.approx(pearson(layers, logs), rel=1e-12)
    assert row.ratio == pytest.approx(math.exp(slope), rel=1e-10)


def test_equi_separation_onset_is_the_start_of_the_final_run_above_threshold() -> None:
    pearsons = {"a": [-0.5, -0.99, -0.8, -0.97, -0.99], "b": [-0.99, -0.98, -0.5]}
    table = pd.DataFrame(
        [(t, e, "train", 3, p, 0.5) for t, ps in pearsons.items() for e, p in enumerate(ps, 1)],
        columns=["trial_id", "epoch", "split", "num_layers", "pearson", "ratio"],
    )
    onset = tables.equi_separation_onset(table, threshold=0.95).set_index("trial_id")
    assert onset.loc["a", "onset_epoch"] == 4
    assert math.isnan(onset.loc["b", "onset_epoch"])  # the last epoch misses the threshold
    assert onset.loc["b", "final_pearson"] == -0.5


def test_final_metrics_take_the_last_epoch_and_the_last_measured_value(
    frame: pd.DataFrame,
) -> None:
    final = tables.final_metrics(frame).set_index("trial_id")
    assert list(final.index) == ["mlp0", "mlp1", "mni0", "mni1"]
    assert (final.epochs == 4).all() and (final.stop_reason == "max_epochs").all()
    assert final.loc["mni1", "loss/test"] == pytest.approx(1 / 4 + 0.4)
    assert final.loc["mni1", "nc_trace/train/l2"] == pytest.approx(nc_value(4, 2, "train", 1))
    # the epoch-4 measurement failed (NaN): the last measured value is epoch 2's
    assert final.loc["mni1", "v_min/test/l3"] == pytest.approx(2 / 4 + 0.2)
    assert final.loc["mni0", "v_min/test/l3"] == pytest.approx(2 / 4 + 0.4)
    assert (final.vinfo_epoch == 4).all()
    assert final.vinfo_heads_converged.isna().all()  # the synthetic frame has no decoder stops
    running = frame[~((frame.trial_id == "mlp0") & (frame.epoch == 4))]
    running = tables.final_metrics(running).set_index("trial_id")
    assert running.loc["mlp0", "epochs"] == 3
    assert running.loc["mlp0", "stop_reason"].startswith("(not stopped")


def test_final_metrics_count_the_converged_decoders_of_the_last_measurement() -> None:
    def head(epoch: int, layer: int, metric: str, stop: str) -> dict:
        return {"trial_id": "t", "dataset": "d", "model": "m", "epoch": epoch, "split": "train",
                "layer": layer, "metric": metric, "value": 3.0, "note": stop}  # fmt: skip

    rows = [
        {**head(epoch, pd.NA, "train_step_loss", ""), "value": 0.5} for epoch in (1, 2, 3)
    ] + [
        head(1, 1, "v_suff", "in_sample"), head(1, 1, "suff_epochs", "max_epochs"),
        head(2, 1, "v_suff", "in_sample"), head(2, 1, "suff_epochs", "loss_threshold"),
        head(2, 1, "digit0_epochs", "plateau"), head(2, 1, "digit1_epochs", "max_epochs"),
        {**head(2, 1, "num_digits", ""), "value": 2},  # recorded beside the digits' decoders
        head(2, 0, "held_out_epochs", "diverged; error: the held-out decoder diverged"),
    ]  # fmt: skip
    final = tables.final_metrics(pd.DataFrame(rows).astype({"layer": "Int64"}))
    assert final.vinfo_epoch.tolist() == [2]
    assert final.vinfo_heads_converged.tolist() == ["2 of 4"]  # epoch 1's stop is not counted
