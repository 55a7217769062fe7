"""The published Fashion-MNIST reproduction (docs/reproduction.md) against its committed data,
and, opt-in (--opt-in), a shortened re-run of its sweep on the real Fashion-MNIST release.

The rules behind each verdict are tested on synthetic frames in test_analysis_reproduction.py;
this file checks the published page and the sweep that feeds it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from raycompress.analysis import reproduction
from raycompress.results import load
from raycompress.sweep import main

DOCS = Path(__file__).resolve().parents[1] / "docs"
RESULTS = DOCS / "reproduction" / "results.csv"
CONVERGED = DOCS / "reproduction" / "converged_results.csv"  # the same sweep, converged decoders


def test_the_published_tables_are_the_ones_the_committed_results_give() -> None:
    frame = reproduction.read(RESULTS)
    assert set(frame.model) == {"cifarnet", "mnistnet"}
    converged = reproduction.read(CONVERGED)
    assert set(converged.model) == {"mnistnet"}
    page = (DOCS / "reproduction.md").read_text()
    assert reproduction.with_tables(page, frame, converged) == page


@pytest.mark.opt_in
def test_a_shortened_thesis_fmnist_sweep_on_the_real_data(
    fashion_mnist_dir: Path, tmp_path: Path
) -> None:
    argv = [
        "thesis_fmnist", "--storage-path", str(tmp_path), "--data-dir", str(fashion_mnist_dir),
        "--epochs", "2", "--set", "train_size=2000", "--set", "decoder_epochs=2",
        "--num-cpus", "2",
    ]  # fmt: skip
    assert main(argv) == 0
    frame = load(tmp_path / "thesis_fmnist")
    accuracy = frame[(frame.metric == "accuracy") & (frame.split == "test") & (frame.epoch == 2)]
    assert (accuracy.value > 0.7).all() and len(accuracy) == 2
    vinfo = frame[frame.metric.isin(["v_suff", "v_min"])]
    assert set(vinfo.model) == {"cifarnet", "mnistnet"}
    assert set(vinfo.epoch) == {1, 2} and set(vinfo.layer) == {0, 1, 2, 3}
    assert vinfo.value.map(math.isfinite).all()
    table = reproduction.claims(frame)
    assert len(table) == 2 * len(reproduction.CHECKS)
