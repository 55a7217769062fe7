"""`python -m raycompress.report`: every figure and table of a results folder, also partial."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_record import history
from test_results import damage, experiment

from raycompress import __version__, record
from raycompress.analysis.figures import FIGURES
from raycompress.report import ENVIRONMENTS, GENERALISATION, TABLES, default_out, main
from raycompress.results import identical_layers, load
from raycompress.schema import VInfoResult


def test_report_of_the_demo_sweep_draws_every_figure(
    demo: tuple[int, Path], tmp_path: Path
) -> None:
    _, storage = demo
    assert main([str(storage / "demo"), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "index.html").read_text()
    # one decoder budget (the shortened demo trains its decoders 1 epoch): no budget curves
    drawn = [name for name in FIGURES if name != "budget_curves"]
    for name in drawn:
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000
        assert (tmp_path / f"{name}.svg").stat().st_size > 5_000
        assert f"src='{name}.png'" in page
    for name in TABLES:
        # the demo's two runs are too few to rank: no ranking, no environments
        assert (f"href='{name}.csv'" in page) == (name not in (GENERALISATION, ENVIRONMENTS))
    final = pd.read_csv(tmp_path / "final_metrics.csv")
    assert sorted(final.model) == ["mlp", "mnistnet"] and (final.epochs == 2).all()
    assert not (tmp_path / "budget_curves.png").exists()
    assert page.count("not drawn") == 1 and (  # the demo's linear family: in-sample optima
        "<b>budget_curves</b>: not drawn (no values of v_suff_at_budget, v_min_at_budget" in page
    )
    assert "demo" in page  # the sweep's description and settings
    assert f"Code: <code>raycompress {__version__}, commit " in page  # the code that made it
    assert "resources: decoder_cpu" in page and "_resources" not in page
    assert "block1 → block2 → block3 → head" in page and "batch statistics" in page  # the nets
    assert "One column per trial" in page and page.count("<div class='wide'>") == 2
    # two models: too few configurations for τ to mean anything, said in one line, no table
    assert (
        "<p><b>Does compression track generalisation?</b> Not ranked: the sweep has 2 "
        "configurations; Kendall's τ over fewer than 5" in page
    )
    assert not (tmp_path / "generalisation.png").exists()
    assert not (tmp_path / "generalisation.csv").exists()


def test_the_record_says_which_layers_are_the_same(demo: tuple[int, Path]) -> None:
    """f₋'s and the MLP's penultimate features are h³ flattened: each trial's record says so,
    for the report to draw that layer once."""
    _, storage = demo
    identical = identical_layers(storage / "demo")
    frame = load(storage / "demo")
    assert set(identical.trial_id) == set(frame.trial_id) and len(identical) == 2
    assert (identical.layer == 4).all() and (identical.same_as == 3).all()


def test_identical_layers_come_from_the_network() -> None:
    """Blocks that only reshape make a layer the same as the one before; any other block, a
    pooling included, does not."""
    from torch import nn

    from raycompress.models import build_model, describe, identical_layers, make_spec

    def flattened(shape: tuple[int, ...], classes: int) -> list[nn.Module]:
        return [
            nn.Sequential(nn.Conv2d(shape[0], 4, 3), nn.ReLU()),
            nn.Flatten(),  # h² is h¹ flattened, and so are the penultimate features
            nn.Sequential(nn.Identity(), nn.Linear(4 * 26 * 26, classes)),
        ]

    expected = {
        "mnistnet": {4: 3}, "mlp": {4: 3}, "cifarnet": {}, "torchvision:resnet18": {},
        "flattened": {2: 1, 3: 1},
    }  # fmt: skip
    for name, same in expected.items():
        spec = make_spec(name, (1, 28, 28), 10, builders={"flattened": flattened})
        model = build_model(spec)
        assert identical_layers(model) == same, name
        recorded = describe(model).get("same_as", {})
        assert recorded == {str(layer): earlier for layer, earlier in same.items()}, name


def test_the_report_goes_into_the_experiment_folder_by_default(
    demo: tuple[int, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, storage = demo
    results = shutil.copytree(storage / "demo", tmp_path / "results" / "demo")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main([str(results)]) == 0
    assert (results / "report" / "index.html").is_file()
    assert f"report: {results / 'report' / 'index.html'}" in capsys.readouterr().out
    assert list(elsewhere.iterdir()) == []  # nothing in the current directory
    assert load(results).trial_id.nunique() == 2  # the report's folder is no trial
    assert main([str(results)]) == 0  # and a second report reads the folder as before


def test_the_default_report_folder_of_an_experiment_in_object_storage(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    reports = tmp_path / "raycompress_reports"
    assert default_out("s3://bucket/runs/demo") == reports / "s3" / "bucket" / "runs" / "demo"
    assert default_out("gs://bucket/demo/?x=1") == reports / "gs" / "bucket" / "demo"
    assert default_out("~/raycompress_results/demo") == tmp_path / "raycompress_results/demo/report"
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = " ".join(capsys.readouterr().out.split())
    assert "default: EXPERIMENT_DIR/report" in usage
    assert "s3://BUCKET/runs/demo → ~/raycompress_reports/s3/BUCKET/runs/demo" in usage


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
        key: VInfoResult.failed("worker died") if key[0] == 2 else result
        for key, result in history[-1].vinfo.items()
    }
    history[-1] = dataclasses.replace(history[-1], vinfo=lost)
    record.write_history(checkpoints[0], history)
    written = record.read_table(checkpoints[0] / record.ROWS_FILE).schema.metadata
    identity = {k: v if k == record.TRIAL_ID else json.loads(v)
                for k, v in json.loads(written[record.IDENTITY]).items()}  # fmt: skip
    record.write_rows(checkpoints[0], history, identity)  # its rows, as the trainable writes
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


@pytest.mark.slow
def test_report_of_a_six_stage_network(tmp_path: Path) -> None:
    """torchvision's ResNet-18 (stem, layer1..4, head) on a tiny image folder (4×4 grayscale),
    a short in-process run written as a trial folder: every figure drawn (but the budget
    curves: one decoder budget), every stage in the tables, the adaptation shown."""
    from test_data import write_image_folder
    from test_record import write_trial

    from raycompress.models import describe
    from raycompress.training import Run
    from raycompress.trial import Trial

    settings = {
        "dataset": f"imagefolder:{tmp_path / 'images'}", "model": "torchvision:resnet18",
        "batch_size": 20, "epochs": 2, "vinfo_schedule": [2], "decoder_epochs": 1,
        "vinfo_protocol": "thesis",
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
    # one decoder budget, so no budget curves; every other figure
    assert page.count("not drawn") == 1 and "<b>budget_curves</b>: not drawn" in page
    assert "stem → layer1 → layer2 → layer3 → layer4 → head" in page
    assert identical_layers(results).empty  # global pooling before the classifier
    assert "for 1×4×4 inputs: stem: 3×3 stride-1 convolution from 1 channel(s)" in page
    final = pd.read_csv(tmp_path / "report" / "final_metrics.csv")
    assert {f"nc_trace/test/l{layer}" for layer in range(1, 7)} <= set(final.columns)
    assert {f"v_suff/train/l{layer}" for layer in range(6)} <= set(final.columns)


@pytest.mark.slow
def test_a_damaged_trial_is_named_in_the_report_and_the_others_drawn(tmp_path: Path) -> None:
    """One trial's every checkpoint and settings damaged, the sweep's description too: the
    report still renders the other trials, and says which trial is incomplete and why."""
    root = experiment(tmp_path / "sweep", history(2))
    trial = root / "train_trial_ccccc"
    for file in [*trial.glob(f"*/{record.ROWS_FILE}"), trial / record.PARAMS_FILE]:
        damage(file)
    damage(root / record.SWEEP_FILE)
    assert main([str(root), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<b>Incomplete: train_trial_ccccc</b>" in page and "trial skipped" in page
    assert f"{root / record.SWEEP_FILE} is damaged" in page
    assert f"{trial / record.PARAMS_FILE} is damaged" in page  # its row of the trials table
    assert "3 trial(s) with results" in page


def test_a_sweep_with_enough_configurations_gets_the_ranking_and_one_too_small_a_line() -> None:
    from raycompress.report import _generalisation_section, derived_tables, generalisation_ranking
    from tests.synthetic import tidy_from_wide

    def frame_of(lrs: list[float]) -> pd.DataFrame:
        wide = pd.DataFrame({"lr": lrs, "seed": 0, "gap": lrs, "accuracy_gap": lrs})
        wide["nc_trace/l2/train"] = wide.gap * 3
        return tidy_from_wide(wide, ["lr"])

    big = frame_of([0.1, 0.2, 0.3, 0.4, 0.5])
    ranked, unranked = generalisation_ranking(big)
    derived = derived_tables(big, ranked)
    assert unranked == "" and {GENERALISATION, ENVIRONMENTS} <= set(derived)
    ranking = ranked[GENERALISATION].set_index("measure")
    assert ranking.loc["nc_trace/l2/train", "tau"] == pytest.approx(1.0)
    # every ordered pair of the 5 learning rates, one seed pair each
    assert ranked[ENVIRONMENTS].set_index("axis").loc["lr"].tolist()[:2] == [5 * 4, 1]
    section = "".join(_generalisation_section(derived, {}, unranked))
    assert "<h2>Does compression track generalisation?</h2>" in section
    assert "by Jiang et al.'s definition" in section and f"{ENVIRONMENTS}.csv" in section
    small = frame_of([0.1, 0.2, 0.3, 0.4])
    none, why = generalisation_ranking(small)
    assert none == {} and GENERALISATION not in derived_tables(small, none)
    (line,) = _generalisation_section({}, {}, why)
    assert "Not ranked: the sweep has 4 configurations" in line
    assert generalisation_ranking(frame_of([0.1])) == ({}, "")  # nothing swept
    assert _generalisation_section({}, {}, "") == []
