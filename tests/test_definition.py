"""Sweep definitions: loading a file, grids and search spaces, resources, errors in the file."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from test_sweep import sweep_file

from raycompress import sweeps
from raycompress.definition import Resources, UsageError, axes, expand, load_sweep
from raycompress.trainable import RayVInfo


def test_axes_combine_as_a_grid_and_overrides_apply() -> None:
    sweep = load_sweep("lr", {"epochs": 3})
    configs = expand(sweep.param_space)
    assert len(configs) == 10 and all(c["epochs"] == 3 for c in configs)
    assert {(c["model"], c["lr"]) for c in configs} == {
        (m, lr) for m in ("cifarnet", "mnistnet") for lr in (2e-4, 6e-4, 2e-3, 6e-3, 2e-2)
    }
    assert axes(sweep.param_space) == ["lr", "model"]


def test_sweep_file_without_param_space(tmp_path: Path) -> None:
    path = tmp_path / "empty.py"
    path.write_text("X = 1\n")
    with pytest.raises(UsageError, match="defines no PARAM_SPACE"):
        load_sweep(str(path), {})


def test_a_sweep_file_with_a_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text('"""Broken."""\nPARAM_SPACE = {"lr": 0.1,\n')
    with pytest.raises(UsageError) as err:
        load_sweep(str(path), {})
    assert str(err.value).startswith(f"{path}:2: syntax error: ") and "\n" not in str(err.value)


def test_an_error_raised_by_a_sweep_file_names_its_line(tmp_path: Path) -> None:
    path = sweep_file(tmp_path / "typo.py", "Typo.", "{'lr': tune.grid_search(lrs)}")
    with pytest.raises(UsageError, match=f"^{path}:3: NameError: name 'lrs' is not defined$"):
        load_sweep(str(path), {})


def test_resources_fit_the_cluster() -> None:
    wanted = Resources(
        trial_cpu=1, trial_gpu=0.5, decoder_cpu=1, decoder_gpu=0.25, decoder_bundles=2
    )
    assert wanted.bundles() == [
        {"CPU": 1, "GPU": 0.5},
        {"CPU": 1, "GPU": 0.25},
        {"CPU": 1, "GPU": 0.25},
    ]
    on_gpus, notes = wanted.fit_to({"CPU": 16, "GPU": 1})
    assert on_gpus == wanted and notes == []
    on_cpus, notes = wanted.fit_to({"CPU": 4})
    assert on_cpus.bundles() == [{"CPU": 1}] * 3
    assert "no GPU" in notes[0]
    with pytest.raises(UsageError, match="one trial needs 3 CPUs but the cluster has 2"):
        wanted.fit_to({"CPU": 2})


@pytest.mark.parametrize("name", ["architectures", "imbalance", "lr", "seeds", "thesis"])
def test_the_gpu_sweeps_share_one_resources_definition(name: str) -> None:
    assert importlib.import_module(f"raycompress.sweeps.{name}").RESOURCES is sweeps.GPU_SHARES
    assert load_sweep(name, {}).resources == Resources(**sweeps.GPU_SHARES)


def test_decoder_retries_have_one_default() -> None:
    assert RayVInfo().max_retries == Resources().decoder_retries
