"""`python -m raycompress.report`: every figure and table of a results folder, also partial."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd
import pytest

from raycompress import __version__, record
from raycompress.analysis.figures import FIGURES
from raycompress.report import TABLES, main
from raycompress.schema import VInfoResult


def test_report_of_the_demo_sweep_draws_every_figure(
    demo: tuple[int, Path], tmp_path: Path
) -> None:
    _, storage = demo
    assert main([str(storage / "demo"), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text()
    for name in FIGURES:
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000
        assert (tmp_path / f"{name}.svg").stat().st_size > 5_000
        assert f"src='{name}.png'" in page
    for name in TABLES:
        assert f"href='{name}.csv'" in page
    final = pd.read_csv(tmp_path / "final_metrics.csv")
    assert sorted(final.model) == ["mlp", "mnistnet"] and (final.epochs == 2).all()
    assert "not drawn" not in page and "demo" in page  # the sweep's description and settings
    assert f"Code: <code>raycompress {__version__}, commit " in page  # the code that made it
    assert "resources: decoder_cpu" in page and "_resources" not in page
    assert "block1 → block2 → block3 → head" in page and "batch statistics" in page  # the nets
    assert "One column per trial" in page and page.count("<div class='wide'>") == 3
    # two models: a sweep with a swept axis gets the ranking, each gap in it stated
    assert "<h2>Does compression track generalisation?</h2>" in page
    assert (tmp_path / "generalisation.png").stat().st_size > 5_000
    assert page.count("src='generalisation.png'") == 1  # in its section, not among the thesis'
    ranking = pd.read_csv(tmp_path / "generalisation.csv", keep_default_na=False)
    assert {"nc_trace/l1/train", "gm_path_norm", "v_min/l1/test"} <= set(ranking.measure)
    assert ranking.gaps.str.contains("CMI needs ≥ 3 swept axes, the sweep has 1").all()


def partial_copy(storage: Path, destination: Path) -> Path:
    """The demo results as a sweep still running with a failure: one trial without any
    finished epoch, the other at epoch 1 with a failed 𝒱-information task at layer 2."""
    results = shutil.copytree(storage / "demo", destination)
    first, second = sorted(p.parent for p in results.glob("*/params.json"))
    for checkpoint in first.glob("checkpoint_*"):
        shutil.rmtree(checkpoint)
    checkpoints = sorted(second.glob("checkpoint_*"))
    for checkpoint in checkpoints[1:]:
        shutil.rmtree(checkpoint)
    history = record.read_history(checkpoints[0])
    lost = {
        (layer, split): VInfoResult.failed("worker died") if layer == 2 else result
        for (layer, split), result in history[-1].vinfo.items()
    }
    history[-1] = dataclasses.replace(history[-1], vinfo=lost)
    record.write_history(checkpoints[0], history)
    return results


def test_report_of_a_running_partly_failed_sweep(demo: tuple[int, Path], tmp_path: Path) -> None:
    _, storage = demo
    results = partial_copy(storage, tmp_path / "results")
    out = tmp_path / "report"
    assert main([str(results), "--out", str(out)]) == 0
    assert (out / "nc_trace.png").stat().st_size > 5_000
    assert (out / "vinfo.png").stat().st_size > 5_000  # the failed layer is a gap
    frame = pd.read_csv(out / "results.csv")
    assert frame.trial_id.nunique() == 1 and set(frame.epoch) == {1}
    failed = frame[(frame.metric == "v_suff") & (frame.layer == 2)]
    assert failed.value.isna().all() and (failed.note == "error: worker died").all()
    final = pd.read_csv(out / "final_metrics.csv")
    assert final.stop_reason.tolist() == ["(not stopped: running or cut)"]
    page = (out / "index.html").read_text()
    assert "src='nc_trace.png'" in page and "src='vinfo.png'" in page


def test_report_before_any_finished_epoch_lists_every_figure_as_missing(
    demo: tuple[int, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, storage = demo
    results = shutil.copytree(storage / "demo", tmp_path / "results")
    for checkpoint in results.glob("*/checkpoint_*"):
        shutil.rmtree(checkpoint)
    assert main([str(results), "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("no finished epoch yet") == len(FIGURES)
    page = (tmp_path / "report" / "index.html").read_text()
    assert "No finished epoch yet" in page and "<img" not in page


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("missing", "no results folder at"),
        ("storage", "is a storage root, not an experiment folder"),
        ("empty", "holds no trial folders"),
    ],
)
def test_report_usage_errors(
    demo: tuple[int, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    which: str,
    message: str,
) -> None:
    _, storage = demo
    folder = {"missing": tmp_path / "nothing", "storage": storage, "empty": tmp_path}[which]
    assert main([str(folder), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()


def test_report_of_a_six_stage_network(tmp_path: Path) -> None:
    """torchvision's ResNet-18 (stem, layer1..4, head) on a tiny image folder (4×4 grayscale),
    a short in-process run written as a trial folder: every figure drawn, every stage in the
    tables, the adaptation shown."""
    from test_data import write_image_folder
    from test_record import write_trial

    from raycompress.models import describe
    from raycompress.training import Run
    from raycompress.trial import Trial

    settings = {
        "dataset": f"imagefolder:{tmp_path / 'images'}", "model": "torchvision:resnet18",
        "batch_size": 20, "epochs": 2, "vinfo_schedule": [2], "decoder_epochs": 1,
    }  # fmt: skip
    write_image_folder(tmp_path / "images", "L", size=(4, 4))
    trial = Trial.from_config(settings)
    data, model = trial.build()
    run = Run(model, data, trial.train, trial.collapse, trial.vinfo)
    rows = [run.step() for _ in range(2)]
    results = tmp_path / "results"
    write_trial(results, "train_trial_aaaaa", settings, rows, 1)
    record.write_model(next((results / "train_trial_aaaaa").glob("checkpoint_*")), describe(model))
    assert main([str(results), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "not drawn" not in page
    assert "stem → layer1 → layer2 → layer3 → layer4 → head" in page
    assert "for 1×4×4 inputs: stem: 3×3 stride-1 convolution from 1 channel(s)" in page
    final = pd.read_csv(tmp_path / "report" / "final_metrics.csv")
    assert {f"nc_trace/test/l{layer}" for layer in range(1, 7)} <= set(final.columns)
    assert {f"v_suff/train/l{layer}" for layer in range(6)} <= set(final.columns)
