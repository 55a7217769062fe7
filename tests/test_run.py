"""The in-process run command: a short run prints its epochs; bad input exits 2 with one line."""

from __future__ import annotations

import re

import pytest

from raycompress import protocol, run
from raycompress.run import main
from raycompress.trial import DEFAULTS


def test_short_run_prints_every_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--epochs", "2", "--train-size", "200", "--batch-size", "100", "--vinfo", "none"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.strip()[:1].isdigit()]
    assert [row.split()[0] for row in rows] == ["1", "2"]
    assert len(rows[0].split("/")) == 5  # train/test NC of 4 layers
    assert out[-1] == "stopped: max_epochs"


@pytest.mark.slow
def test_vinfo_is_printed_when_scheduled(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--epochs", "1", "--train-size", "200", "--batch-size", "100", "--vinfo", "every"]
    shortened = ["--vinfo-protocol", "thesis", "--decoder-epochs", "1"]
    assert main([*argv, *shortened, "--model", "mlp"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "𝒱-info" in line]
    assert len(lines) == 8  # layers 0..3 × train, test
    assert "l=0 test" in lines[0] or "l=0 train" in lines[0]


def test_the_thesis_recipe_reaches_the_run(monkeypatch, capsys) -> None:
    seen = []
    fake = lambda model, data, *configs, **options: seen.append(data) or []  # noqa: E731
    monkeypatch.setattr(run, "run_epochs", fake)
    assert main(["--thesis-recipe", "--train-size", "200", "--device", "cpu"]) == 0
    training = next(line for line in capsys.readouterr().out.splitlines() if "training:" in line)
    assert training == (
        "training: bf16-true (bf16 weights and optimiser state), channels_last, compiled, "
        "inputs × 255 on cpu"
    )
    assert seen[0].train.x.max() == 255


def help_of(dest: str) -> str:
    return next(a.help for a in run.parser()._actions if a.dest == dest)


def test_the_vinfo_default_is_the_trial_default(monkeypatch) -> None:
    assert run.parser().parse_args([]).vinfo == DEFAULTS["vinfo_schedule"]
    entry = re.search(r"\n  --vinfo VINFO (.*?)\n  --", run.parser().format_help(), re.S)
    shown = re.search(r"\(default: (\S+)\)", entry.group(1))  # the help shows it
    assert shown and shown.group(1) == DEFAULTS["vinfo_schedule"]
    monkeypatch.setitem(DEFAULTS, "vinfo_schedule", "log:3")
    assert run.parser().parse_args([]).vinfo == "log:3"


@pytest.mark.parametrize("budgets", [protocol.DECODER_BUDGETS, (3, 7, 40, 50, 80)])
def test_the_budget_help_names_the_protocol_budgets(budgets, monkeypatch) -> None:
    monkeypatch.setattr(protocol, "DECODER_BUDGETS", budgets)
    example, default = re.search(
        r"e\.g\. ([\d,]+); None: those of ([\d,]+) ", help_of("decoder_budgets")
    ).groups()
    below_cap = [b for b in budgets if b < DEFAULTS["decoder_epochs"]]
    assert [int(b) for b in example.split(",")] == below_cap
    assert [int(b) for b in default.split(",")] == list(budgets)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "cifar1000"], "unknown dataset 'cifar1000'"),
        (["--model", "vgg"], "unknown model 'vgg'"),
        (["--lr", "0"], "setting 'lr' takes a positive number, got 0.0"),
        (["--epochs", "-1"], "setting 'epochs' takes a positive integer, got -1"),
        (["--vinfo", "often"], "unknown 𝒱-information schedule 'often'"),
        (["--imbalance", "step:1.5"], "imbalance ratio must be in (0, 1]"),
        (["--imbalance", "step"], "imbalance must look like PROFILE:RATIO"),
        (["--input-scale", "-1"], "setting 'input_scale' takes a positive number, got -1.0"),
        (["--dataset", "mnist", "--data-dir", "/nonexistent", "--no-download"], "mnist not found"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_vinfo_line_gives_each_value_with_its_verdict() -> None:
    from raycompress.run import format_vinfo
    from raycompress.schema import Head, HeadFit, Quantity, Term, VInfoResult
    from raycompress.stopping import Stop

    def term(q: Quantity, bits: float, certified: bool | None) -> Term:
        head = Head("h", HeadFit(50, Stop.MAX_EPOCHS, 0.1, certified), 3.3, bits)
        return Term(q, bits, bits, "p", (head,), {})

    judged = VInfoResult({Quantity.SUFFICIENCY: term(Quantity.SUFFICIENCY, 3.2, True),
                          Quantity.MINIMALITY: term(Quantity.MINIMALITY, 2.45, False)})  # fmt: skip
    assert format_vinfo(judged) == (
        "sufficiency 3.200 bits (certified), minimality 2.450 bits (NOT certified)"
    )
    thesis = VInfoResult({Quantity.SUFFICIENCY: term(Quantity.SUFFICIENCY, 3.2, None)})
    assert format_vinfo(thesis) == "sufficiency 3.200 bits, minimality nan bits"
    assert format_vinfo(VInfoResult.failed("boom")).endswith("nan bits  (boom)")
