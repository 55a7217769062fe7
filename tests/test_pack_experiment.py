"""Packing an experiment folder (scripts/pack_experiment.py): results and resume state kept,
weights only where a resume needs them."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from types import ModuleType

import pytest
from script_modules import load_script

from raycompress import record


@pytest.fixture(scope="module")
def packer() -> ModuleType:
    return load_script("scripts/pack_experiment.py")


def _experiment(root: Path) -> Path:
    """Three trials: one finished, one running, one not started."""
    experiment = root / "sweep"
    experiment.mkdir()
    (experiment / record.SWEEP_FILE).write_text("{}")
    states = {"done": "TERMINATED", "running": "RUNNING", "waiting": "PENDING"}
    entries = [[json.dumps({"relative_logdir": n, "status": s}), "{}"] for n, s in states.items()]
    (experiment / "experiment_state-1.json").write_text(json.dumps({"trial_data": entries}))
    for name in ("done", "running"):
        trial = experiment / name
        for epoch in (1, 2):
            checkpoint = trial / f"checkpoint_00000{epoch}"
            checkpoint.mkdir(parents=True)
            for file in (record.STATE_FILE, record.HISTORY_FILE, record.MODEL_FILE):
                (checkpoint / file).write_text(file)
        for file in (record.PARAMS_FILE, record.RESULT_FILE, "events.out.tfevents.1"):
            (trial / file).write_text(file)
    (experiment / "waiting").mkdir()
    return experiment


def test_the_archive_keeps_results_and_the_weights_a_resume_needs(packer, tmp_path) -> None:
    experiment = _experiment(tmp_path)
    log = tmp_path / "driver.log"
    log.write_text("started")
    names = set(packer.pack(experiment, tmp_path / "out.tar.xz", [log]))
    newest = "checkpoint_000002"
    assert f"sweep/done/{newest}/{record.HISTORY_FILE}" in names
    assert f"sweep/done/{newest}/{record.STATE_FILE}" not in names  # finished: not resumed
    assert f"sweep/running/{newest}/{record.STATE_FILE}" in names  # a resume continues it
    assert not any("checkpoint_000001" in n or "tfevents" in n for n in names)
    assert {f"sweep/{record.SWEEP_FILE}", "sweep/experiment_state-1.json", "driver.log"} <= names
    assert "sweep/waiting" in names and f"sweep/running/{record.PARAMS_FILE}" in names
    with tarfile.open(tmp_path / "out.tar.xz") as archive:
        archive.extractall(tmp_path / "back", filter="data")
    back = tmp_path / "back" / "sweep" / "running" / newest / record.STATE_FILE
    assert back.read_text() == record.STATE_FILE


def test_a_folder_that_is_not_an_experiment_gets_one_line(packer, tmp_path, capsys) -> None:
    assert packer.main([str(tmp_path), str(tmp_path / "out.tar.xz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and record.SWEEP_FILE in err
    assert not (tmp_path / "out.tar.xz").exists()


def test_a_checkpoint_replaced_while_read_is_read_again(packer, tmp_path, monkeypatch) -> None:
    """Tune replaces a running trial's checkpoint between the listing and the reading: the
    archive holds the newer one, never a half of each."""
    experiment = _experiment(tmp_path)
    listed = packer.members
    calls = []

    def replaced_after_listing(folder: Path) -> list[Path]:
        names = listed(folder)
        if not calls:
            running = folder / "running"
            (running / "checkpoint_000002").rename(running / "checkpoint_000003")
        calls.append(names)
        return names

    monkeypatch.setattr(packer, "members", replaced_after_listing)
    names = set(packer.pack(experiment, tmp_path / "out.tar.xz", []))
    assert len(calls) == 2
    assert f"sweep/running/checkpoint_000003/{record.STATE_FILE}" in names
    assert not any("running/checkpoint_000002" in n for n in names)
