"""The published answer (docs/generalisation.md) against its committed values."""

from __future__ import annotations

from pathlib import Path

from raycompress.analysis import generalisation_page

DOCS = Path(__file__).resolve().parents[1] / "docs"
TRIALS = DOCS / "generalisation" / "trials.csv"


def test_the_published_tables_are_the_ones_the_committed_values_give() -> None:
    trials, config = generalisation_page.read_trials(TRIALS)
    assert len(trials) == 48 and {"lr", "batch_size", "widths", "train_size", "seed"} <= {*config}
    page = (DOCS / "generalisation.md").read_text()
    assert generalisation_page.with_tables(page, trials, config) == page
