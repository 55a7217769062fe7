"""The Ray Tune trainable: one trial = one training run of `training.Run`.

Each epoch: train, measure neural collapse on both splits, ship that epoch's 𝒱-information
measurements to Ray tasks (one per (layer, split), inside the trial's placement group), gather
them, and report one result with a checkpoint. The checkpoint holds the run's state (model,
optimiser, RNG, epoch, layer-0 values) and the authoritative per-epoch history
(`record.HISTORY_FILE`), which `results.load` reads — Tune's own result.json can lose epochs
when a trial is restarted.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from raycompress import record
from raycompress.data import DataNotFoundError, Split
from raycompress.definition import Resources
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import Builder, LayeredNet, ModelSpec, describe
from raycompress.plan import Measurement, Values, gather, measure_layer, plan
from raycompress.training import Run
from raycompress.trial import Trial

# Where a Ray task ran, recorded beside its measurement's values (strings, not values).
TASK_KEYS = ("node", "device", "device_note", "placement_group")
# Errors that a retry cannot fix: a trial that meets one ends at once with its message.
PERMANENT = (DataNotFoundError, ValueError)


def ray_device() -> tuple[str, str]:
    """The device this Ray worker computes on, and a note when it is not the one asked for:
    a GPU share granted where CUDA is not available (a fake or unusable GPU) runs on the CPU."""
    if not ray.get_gpu_ids():
        return "cpu", ""
    if torch.cuda.is_available():
        return "cuda", ""
    return "cpu", "a GPU share was granted but CUDA is not available here: ran on the CPU"


@ray.remote
def _vinfo_task(
    spec: ModelSpec, state: dict, m: Measurement, split: Split, config: VInfoConfig
) -> Values:
    if os.environ.get("RAYCOMPRESS_FAIL_VINFO_LAYER") == str(m.layer):  # test hook
        raise RuntimeError(f"injected 𝒱-information failure at layer {m.layer}")
    device, note = ray_device()
    values = measure_layer(spec, state, m, split, config, device)
    context = ray.get_runtime_context()
    where = (context.get_node_id(), device, note, context.get_placement_group_id() or "")
    return {**values, **dict(zip(TASK_KEYS, where, strict=True))}


@dataclasses.dataclass
class RayVInfo:
    """A `training.VInfoMeasurer` that runs each planned (layer, split) as a Ray task.

    Tasks are launched with the decoder bundle's shape so that Tune places them in the trial's
    placement group; a task that fails is retried, then recorded as missing with its error.
    """

    num_cpus: float = 1
    num_gpus: float = 0
    max_retries: int = 2
    _splits: dict[str, ray.ObjectRef] = dataclasses.field(default_factory=dict)

    def __call__(
        self,
        model: LayeredNet,
        splits: dict[str, Split],
        config: VInfoConfig,
        run_seed: int,
        epoch: int,
        layer0: dict[str, Values],
    ) -> dict[tuple[int, str], Values]:
        for name, split in splits.items():  # the splits never change: ship them once
            if name not in self._splits:
                self._splits[name] = ray.put(split.to("cpu"))
        state = ray.put({k: v.detach().cpu() for k, v in model.state_dict().items()})
        task = _vinfo_task.options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus,
            max_retries=self.max_retries, retry_exceptions=True,
        )  # fmt: skip
        planned = plan(model.depth, splits, run_seed, epoch, layer0)
        pending = [
            task.remote(model.spec, state, m, self._splits[m.split], config) for m in planned
        ]
        return gather(planned, [self._result(ref) for ref in pending], layer0)

    def _result(self, ref: ray.ObjectRef) -> Values:
        try:
            return ray.get(ref)
        except Exception as err:  # the measurement is lost, the trial goes on
            message = f"𝒱-information task failed after {self.max_retries} retries: {err}"
            return {
                record.SUFFICIENCY.value: math.nan, record.MINIMALITY.value: math.nan,
                record.ERROR: message[:2000],
            }  # fmt: skip


def train_trial(
    config: dict[str, Any],
    resources: Resources | None = None,
    models: dict[str, Builder] | None = None,
) -> None:
    """The Tune function trainable. `config` is a flat trial configuration (`trial.SETTINGS`);
    `resources` and the sweep's own networks `models` are bound by `tune.with_parameters`.

    Resume first: a checkpoint, when there is one, restores the run and its history. An error
    that a retry cannot fix (bad settings, missing data) ends the trial with one report that
    says so, instead of failing it into Tune's retries.
    """
    resources = resources or Resources()
    device, note = ray_device()
    if note:
        print(f"note: {note}", flush=True)
    try:
        trial = Trial.from_config(config, models)
        data, model = trial.build(device)
    except PERMANENT as err:
        tune.report({"stop_reason": record.ERROR, record.ERROR: f"{type(err).__name__}: {err}"})
        return
    measurer = RayVInfo(resources.decoder_cpu, resources.decoder_gpu, resources.decoder_retries)
    run = Run(model, data, trial.train, trial.collapse, trial.vinfo, measure_vinfo=measurer)
    history: list[dict[str, Any]] = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(
                Path(folder) / record.STATE_FILE, map_location=device, weights_only=False
            )
            history = record.read_history(Path(folder))
        run.load_state_dict(state)
        if history and history[-1]["stop_reason"]:
            return
    inject_failure(config, run.epoch)
    while True:
        epoch = run.step()
        history.append(record.epoch_row(epoch))
        with tempfile.TemporaryDirectory() as folder:
            torch.save(run.state_dict(), Path(folder) / record.STATE_FILE)
            record.write_history(Path(folder), history)
            ran = {"device": device, "device_note": note, "compute": run.describe_compute()}
            record.write_model(Path(folder), {**describe(model), **ran})
            tune.report(
                record.summary_metrics(history[-1], model.depth),
                checkpoint=tune.Checkpoint.from_directory(folder),
            )
        if epoch.stop_reason is not None:
            return
        inject_failure(config, run.epoch)


def inject_failure(config: dict[str, Any], epoch: int) -> None:
    """Test hook: with RAYCOMPRESS_FAIL_AT_EPOCH=E and RAYCOMPRESS_FAIL_MARKER=FILE, the first
    trial to finish epoch E raises once (FILE records that it did)."""
    target = os.environ.get("RAYCOMPRESS_FAIL_AT_EPOCH")
    marker = os.environ.get("RAYCOMPRESS_FAIL_MARKER")
    if target and marker and epoch == int(target) and not Path(marker).exists():
        Path(marker).write_text(str(config.get("seed")))
        raise RuntimeError(f"injected failure after epoch {epoch}")
