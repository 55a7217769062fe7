"""The README's examples, run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from demo_sweep import FAST

from raycompress import record
from raycompress.results import load
from raycompress.sweep import main

README = Path(__file__).resolve().parents[1] / "README.md"


def example(section: str) -> str:
    """The first python block of a README section."""
    text = README.read_text().split(f"### {section}", 1)[1]
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


@pytest.mark.slow
def test_your_own_network_runs_on_the_demo_data(tmp_path: Path) -> None:
    path = tmp_path / "my_sweep.py"
    path.write_text(example("Your own network"))
    assert main([str(path), "--dry-run"]) == 0
    assert main([str(path), "--storage-path", str(tmp_path / "results"), *FAST]) == 0
    frame = load(tmp_path / "results" / "my_sweep")
    mine = frame[frame.model == "small_cnn"]
    assert set(mine[mine.metric == "nc_trace"].layer) == {1, 2, 3}
    assert set(mine[mine.metric == "v_suff"].layer) == {0, 1, 2}
    assert mine[mine.metric == "v_suff"].value.notna().all()
    trial = next(p for p in (tmp_path / "results" / "my_sweep").glob("*small_cnn*"))
    assert record.newest_model(trial) == {
        "model": "small_cnn", "stages": ["block1", "block2", "head"], "batch_norm": "none",
        "adaptation": "", "device": "cpu", "device_note": "", "compute": "fp32, channels_last",
    }  # fmt: skip
