"""The sweep command line without starting Ray: catalogue, dry runs, validation, usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from raycompress.definition import UsageError, axes, load_sweep
from raycompress.sweep import check_trials, main

EXPECTED_TRIALS = {
    "thesis": 4, "imbalance": 5, "lr": 10, "seeds": 20, "demo": 2, "thesis_fmnist": 2,
    "thesis_fmnist_converged": 2, "architectures": 4, "thesis_recipe": 6, "generalisation": 72,
    "generalisation_robust": 20,
}  # fmt: skip


def test_list_names_every_shipped_sweep(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(EXPECTED_TRIALS)
    assert all(len(line.split()) > 3 for line in lines)  # each with its description


@pytest.mark.parametrize("name", EXPECTED_TRIALS)
def test_dry_run_of_every_shipped_sweep(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{EXPECTED_TRIALS[name]} trial(s)" in out
    assert out.count("  trial ") == EXPECTED_TRIALS[name]
    assert "'CPU'" in out


def sweep_file(path: Path, description: str, space: str) -> Path:
    """A user's sweep file: a docstring and a PARAM_SPACE written as Python source."""
    path.write_text(f'"""{description}"""\nfrom ray import tune\nPARAM_SPACE = {space}\n')
    return path


def test_user_sweep_file_with_search_spaces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sweep_file(
        tmp_path / "mine.py",
        "Mine: a log-uniform learning rate.",
        "{'lr': tune.loguniform(1e-4, 1e-2), 'seed': tune.grid_search([0, 1])}",
    )
    assert main([str(path), "--dry-run", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 trial(s)" in out and "Float" in out and '"epochs": 2' in out
    assert axes(load_sweep(str(path), {}).param_space) == ["lr", "seed"]


def test_derived_settings_resolve_per_trial_and_are_no_axis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sweep_file(
        tmp_path / "derived.py",
        "Derived: a schedule that depends on the model.",
        "{'model': tune.grid_search(['mlp', 'mnistnet']), 'vinfo_schedule': tune.sample_from("
        "lambda config: 'none' if config['model'] == 'mlp' else 'log:2')}",
    )
    assert main([str(path), "--dry-run"]) == 0
    trials = [line for line in capsys.readouterr().out.splitlines() if "  trial " in line]
    assert '"mlp"' in trials[0] and '"vinfo_schedule": "none"' in trials[0]
    assert '"mnistnet"' in trials[1] and '"vinfo_schedule": "log:2"' in trials[1]
    assert axes(load_sweep(str(path), {}).param_space) == ["model"]
    path.write_text(path.read_text().replace("'log:2'", "'often'"))
    assert main([str(path), "--dry-run"]) == 2  # a derived value is validated too
    assert "unknown 𝒱-information schedule" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nosuch"], "no sweep named 'nosuch'"),
        ([], "name a sweep"),
        (["demo", "--set", "lrr=1"], "unknown trial setting 'lrr'"),
        (["demo", "--set", "lr"], "--set takes KEY=VALUE"),
        (["demo", "--set", "lr=-1"], "setting 'lr' takes a positive number, got -1"),
        (["demo", "--set", "model=vgg"], "unknown model 'vgg'"),
        (["demo", "--set", 'imbalance="step:3"'], "imbalance ratio must be in (0, 1]"),
        (["demo", "--set", 'vinfo_schedule="often"'], "unknown 𝒱-information schedule"),
        (["demo", "--set", "lr=abc"], "setting 'lr' takes a positive number, got 'abc'"),
        (["demo", "--set", "epochs=2.5"], "setting 'epochs' takes a positive integer, got 2.5"),
        (["demo", "--epochs", "-1"], "setting 'epochs' takes a positive integer, got -1"),
        (["demo", "--set", "held_out=1"], "setting 'held_out' takes true or false, got 1"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_architectures_sweep_lists_its_networks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["architectures", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for model in ("mnistnet", "cifarnet", "mlp", "torchvision:resnet18"):
        assert f'"model": "{model}"' in out
    assert "each reserves bundles [{'CPU': 1, 'GPU': 0.125}, {'CPU': 1, 'GPU': 0.125}]" in out


def test_a_missing_dataset_is_reported_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    argv = ["demo", "--set", 'dataset="mnist"', "--set", "download=false"]
    assert main([*argv, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"mnist not found in {tmp_path}: expected" in err
    assert not ray.is_initialized()
    # On a cluster the data may live on the other nodes: a folder missing here is not checked.
    assert main([*argv, "--data-dir", str(tmp_path / "elsewhere"), "--address", "a:1"]) == 2
    assert "no Ray cluster answers at a:1" in capsys.readouterr().err
    folder = ["demo", "--set", f'dataset="imagefolder:{tmp_path / "images"}"']
    assert main(folder) == 2  # an image folder: its own root is what must be here
    assert "lay it out as ROOT/train/<class>" in capsys.readouterr().err
    assert main([*folder, "--address", "a:1"]) == 2  # not on this machine: not checked here
    assert "no Ray cluster answers at a:1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num-gpus", "1", "--address", "a:1"], "--num-gpus sizes the embedded local Ray"),
        (["--num-cpus", "2", "--address", "a:1"], "--num-cpus sizes the embedded local Ray"),
        (["--num-gpus", "-1"], "--num-gpus must be 0 or more, got -1"),
    ],
)
def test_sizing_the_embedded_ray_wrongly_is_one_line_before_ray_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not ray.is_initialized()


def test_a_storage_path_at_a_file_is_one_line_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    results = tmp_path / "results.txt"
    results.write_text("finished results, not to be touched")
    for where, said in ((results, "is a file"), (results / "demo", "lies under a file")):
        assert main(["demo", "--storage-path", str(where)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"the storage path {where} {said} ({results})" in err
    assert not ray.is_initialized()
    assert results.read_text() == "finished results, not to be touched"


def test_bf16_on_a_cpu_without_it_is_reported_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray
    import torch

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert main(["demo", "--set", "precision=bf16", "--storage-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "precision 'bf16' cannot run here: this CPU has no" in err
    assert not ray.is_initialized() and not any(tmp_path.iterdir())
    demo = load_sweep("demo", {"precision": "bf16"})
    check_trials(demo, remote=True)  # a cluster's trials check their own devices
    with pytest.raises(UsageError, match="cannot run here"):
        check_trials(demo, remote=False)
