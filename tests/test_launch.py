"""Sweeps on Ray Tune end to end (launch and trainable): the demo on an embedded local Ray,
its results, resume, injected failures, errors that are not retried
(two-node clusters: tests/test_cluster.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from demo_sweep import FAST, run_sweep

from raycompress import launch, record
from raycompress.definition import Resources, load_sweep
from raycompress.results import load
from raycompress.sweep import main, parser

ALWAYS_FINITE = [
    "loss", "accuracy", "nc_trace", "nc_rank", "nc_within_trace", "nc_between_trace", "nc_cdnv",
    "nc_equinorm", "nc_equiangularity", "nc_ncc_agreement", "v_suff", "v_min", "v_suff_held_out",
]  # fmt: skip


def test_demo_sweep_reports_every_metric_for_every_epoch_layer_and_split(demo) -> None:
    code, storage = demo
    assert code == 0
    frame = load(storage / "demo")
    assert set(frame.model) == {"mnistnet", "mlp"} and frame.trial_id.nunique() == 2
    for model, rows in frame.groupby("model"):
        assert set(rows.epoch) == {1, 2}
        for metric in ALWAYS_FINITE:
            values = rows[rows.metric == metric]
            layers = {"loss": {None}, "accuracy": {None}}.get(metric)
            expected = 2 * 2 * (1 if layers else 4)  # epochs × splits × layers
            assert len(values) == expected, (model, metric, len(values))
            assert values.value.map(math.isfinite).all(), (model, metric)
        nc_layers = set(rows[rows.metric == "nc_trace"].layer)
        assert nc_layers == {1, 2, 3, 4}
        assert set(rows[rows.metric == "v_suff"].layer) == {0, 1, 2, 3}
        vinfo = rows[rows.metric.str.startswith("v_")]
        assert not vinfo.note.str.contains("error:").any()
        assert vinfo[vinfo.metric == "v_suff"].note.str.startswith("in_sample: fit on").all()


def test_resuming_a_finished_sweep_reruns_nothing(demo, capsys: pytest.CaptureFixture[str]) -> None:
    _, storage = demo
    before = load(storage / "demo")
    assert run_sweep(storage, "--resume") == 0
    after = load(storage / "demo")
    assert after.equals(before)
    assert run_sweep(storage) == 2
    assert "exists: pass --resume" in capsys.readouterr().err


def test_settings_carry_no_resources_and_resume_keeps_the_started_ones(
    demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, storage = demo
    for params in (storage / "demo").glob("*/params.json"):  # what Tune shows as columns
        assert "_resources" not in json.loads(params.read_text())
    started = Resources(**json.loads((storage / "demo" / "raycompress_sweep.json").read_text())[
        "resources"
    ])  # fmt: skip
    assert started == load_sweep("demo", {}).resources
    seen: list[Resources] = []
    bind = launch._trainable
    monkeypatch.setattr(launch, "_trainable", lambda r, m, a: seen.append(r) or bind(r, m, a))
    edited = tmp_path / "demo.py"  # the sweep file changed since: other resources
    edited.write_text(
        '"""Demo, edited."""\nPARAM_SPACE = {"model": "mlp"}\nRESOURCES = {"decoder_cpu": 1}\n'
    )
    argv = [str(edited), "--name", "demo", "--storage-path", str(storage), *FAST, "--resume"]
    assert main(argv) == 0
    assert seen == [started]


@pytest.mark.slow
def test_an_error_a_retry_cannot_fix_is_not_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The data are missing where the trial runs, past the check before Ray (as on a cluster).
    settings = {"dataset": "mnist", "download": False, "data_dir": str(tmp_path / "none")}
    sweep = load_sweep("demo", settings)
    args = parser().parse_args(["demo", "--storage-path", str(tmp_path), *FAST])
    assert launch.launch(sweep, args) == 1
    out = capsys.readouterr().out
    assert out.count("failed, not retried (a retry cannot fix it): DataNotFoundError: mnist") == 2
    trials = list((tmp_path / "demo").glob("train_trial_*"))
    assert len(trials) == 2 and not any((t / "error.txt").exists() for t in trials)


@pytest.mark.slow
def test_a_failed_trial_continues_from_its_checkpoint_and_a_failed_task_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One sweep, two failures: the trial raises once after epoch 1 (Tune retries it from
    that checkpoint) and every layer-2 decoder task raises (recorded as missing, the trial
    goes on)."""
    marker = tmp_path / "failed-once"
    monkeypatch.setenv("RAYCOMPRESS_FAIL_AT_EPOCH", "1")
    monkeypatch.setenv("RAYCOMPRESS_FAIL_MARKER", str(marker))
    monkeypatch.setenv("RAYCOMPRESS_FAIL_VINFO_LAYER", "2")
    assert run_sweep(tmp_path, "--set", 'model="mlp"') == 0
    assert marker.exists()  # it did fail once
    frame = load(tmp_path / "demo")
    counts = frame[frame.metric == "loss"].groupby(["trial_id", "epoch"]).size()
    assert counts.tolist() == [2, 2]  # epochs 1 and 2, each once per split: no gap, no duplicate
    lost = frame[(frame.metric == "v_suff") & (frame.layer == 2)]
    kept = frame[(frame.metric == "v_suff") & (frame.layer == 1)]
    assert len(lost) == 4 and lost.value.isna().all()
    assert lost.note.str.contains("injected 𝒱-information failure at layer 2").all()
    assert kept.value.map(math.isfinite).all()


@pytest.mark.slow
def test_a_diverged_trial_stops_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_sweep(tmp_path, "--set", 'model="mlp"', "--set", "lr=1e30") == 0
    assert "diverged (non-finite training loss) and stopped" in capsys.readouterr().out
    frame = load(tmp_path / "demo")
    steps = frame[frame.metric == "train_step_loss"]
    assert steps.epoch.tolist() == [1] and not math.isfinite(steps.value.iloc[0])


FAKE_GPU_SWEEP = '''"""Five seeds of an MLP on the catalogue's GPU shares, on a fake GPU."""
from ray import tune
from raycompress.sweeps import GPU_SHARES
PARAM_SPACE = {"model": "mlp", "seed": tune.grid_search([0, 1, 2, 3, 4]), "train_size": 200,
               "test_size": 200, "batch_size": 100, "epochs": 2, "decoder_epochs": 1,
               "vinfo_protocol": "thesis", "vinfo_layers": [-1]}
RESOURCES = {**GPU_SHARES, "trial_cpu": 0.5, "decoder_cpu": 0.5}  # the GPU shares, as shipped
'''


@pytest.mark.slow
def test_the_catalogues_gpu_shares_pack_four_trials_on_one_gpu(tmp_path: Path) -> None:
    """Ray with one fake GPU (and CPUs for six trials) on the CPU: the GPU sweeps' shares
    (`sweeps.GPU_SHARES`) reserve a quarter of a GPU a trial, so four trials run at once and
    the fifth waits for a share; every task runs in its own trial's placement group; CUDA being
    absent, everything runs on the CPU and says so."""
    import ray

    path = tmp_path / "fake_gpus.py"
    path.write_text(FAKE_GPU_SWEEP)
    ray.init(
        address="local", num_cpus=6, num_gpus=1, include_dashboard=False,
        object_store_memory=150 << 20,
    )  # fmt: skip
    try:
        assert main([str(path), "--storage-path", str(tmp_path)]) == 0
    finally:
        ray.shutdown()
    trials = []  # (start, end, the placement group of its decoder tasks)
    for trial in sorted((tmp_path / "fake_gpus").glob("train_trial_*")):
        results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        model = record.newest_model(trial)
        assert model["device"] == "cpu" and "CUDA is not available" in model["device_note"]
        tasks = [
            r.placement for epoch in record.newest_history(trial) for r in epoch.vinfo.values()
        ]
        assert all(p is not None and p.device == "cpu" and p.device_note for p in tasks)
        (group,) = {p.placement_group for p in tasks}  # one group for all of a trial's tasks
        start = results[0]["timestamp"] - results[0]["time_total_s"]
        trials.append((start, results[-1]["timestamp"], group))
    # result.json's timestamps are whole seconds: hence the margins
    trials.sort()
    first_end = min(end for _, end, _ in trials[:4])
    assert trials[3][0] < first_end - 2  # four at once, each in its own bundles
    assert len({group for *_, group in trials[:4]} - {""}) == 4
    assert trials[4][0] >= first_end - 1  # the fifth waited for a free GPU share
