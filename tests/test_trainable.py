"""The trainable resumes first: it asks for its checkpoint before any data or model is built,
and a trial whose history already ended builds nothing at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ray import tune
from test_record import history

from raycompress import record, trainable


class Built(Exception):
    """Raised where the trainable starts to build its trial."""


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    order: list[str] = []

    def build(*_: object, **__: object) -> None:
        order.append("build")
        raise Built

    monkeypatch.setattr(trainable.Trial, "from_config", build)
    monkeypatch.setattr(trainable, "ray_device", lambda: ("cpu", ""))  # no Ray worker here
    monkeypatch.setattr(tune, "report", lambda *_, **__: order.append("report"))
    return order


def checkpoint(folder: Path, epochs: int) -> tune.Checkpoint:
    folder.mkdir()
    rows = history(epochs)  # a run of `epochs` epochs
    record.write_history(folder, rows if epochs == 1 else rows[:1])
    torch.save({}, folder / record.STATE_FILE)
    return tune.Checkpoint.from_directory(folder)


def test_a_finished_trial_builds_nothing(tmp_path: Path, calls, monkeypatch) -> None:
    finished = checkpoint(tmp_path / "done", epochs=1)  # its one epoch stopped the run
    monkeypatch.setattr(tune, "get_checkpoint", lambda: calls.append("checkpoint") or finished)
    trainable.train_trial({})
    assert calls == ["checkpoint"]


def test_an_unfinished_trial_reads_its_checkpoint_before_building(
    tmp_path: Path, calls, monkeypatch
) -> None:
    unfinished = checkpoint(tmp_path / "half", epochs=2)  # one of two epochs done
    monkeypatch.setattr(tune, "get_checkpoint", lambda: calls.append("checkpoint") or unfinished)
    state, rows = trainable.resumed(unfinished)
    assert state is not None and [r.epoch for r in rows] == [1] and rows[0].stop_reason is None
    with pytest.raises(Built):
        trainable.train_trial({})
    assert calls == ["checkpoint", "build"]
    assert trainable.resumed(None) == (None, [])  # a fresh trial
