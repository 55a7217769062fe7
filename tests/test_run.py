"""The in-process run command: a short run prints its epochs; bad input exits 2 with one line."""

from __future__ import annotations

import pytest

from raycompress.run import main


def test_short_run_prints_every_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--epochs", "2", "--train-size", "200", "--batch-size", "100"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.strip()[:1].isdigit()]
    assert [row.split()[0] for row in rows] == ["1", "2"]
    assert len(rows[0].split("/")) == 5  # train/test NC of 4 layers
    assert out[-1] == "stopped: max_epochs"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "cifar100"], "unknown dataset 'cifar100'"),
        (["--model", "vgg"], "unknown model 'vgg'"),
        (["--lr", "0"], "lr must be positive"),
        (["--dataset", "mnist", "--data-dir", "/nonexistent", "--no-download"], "mnist not found"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_imbalance_is_an_argument_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--imbalance", "step:1.5"])
    assert exit_info.value.code == 2
    assert "imbalance ratio must be in (0, 1]" in capsys.readouterr().err
