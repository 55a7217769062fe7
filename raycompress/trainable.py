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
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from raycompress import record
from raycompress.data import DataNotFoundError
from raycompress.definition import Resources
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import Builder, LayeredNet, ModelSpec, describe
from raycompress.plan import Layer0, Measurement, WarmStates, gather, measure_layer, plan
from raycompress.sampling import Split
from raycompress.schema import EpochRecord, Placement, VInfoKey, VInfoResult
from raycompress.training import Run
from raycompress.trial import Trial


class UntrustedCheckpointError(Exception):
    """A checkpoint's state file holds more than tensors and plain data: it is not restored."""


# Errors that a retry cannot fix: a trial that meets one ends at once with its message.
PERMANENT = (DataNotFoundError, ValueError, UntrustedCheckpointError)


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
    spec: ModelSpec, state: dict, m: Measurement, split: Split, config: VInfoConfig, warm: Any
) -> VInfoResult:
    if os.environ.get("RAYCOMPRESS_FAIL_VINFO_LAYER") == str(m.layer):  # test hook
        raise RuntimeError(f"injected 𝒱-information failure at layer {m.layer}")
    once = os.environ.get("RAYCOMPRESS_FAIL_VINFO_ONCE")  # test hook: the first task fails
    if once and not Path(once).exists():
        Path(once).write_text(f"{m.layer} {m.split}")
        raise RuntimeError("injected 𝒱-information failure, once")
    device, note = ray_device()
    result = measure_layer(spec, state, m, split, config, device, warm)
    context = ray.get_runtime_context()
    where = Placement(context.get_node_id(), device, note, context.get_placement_group_id() or "")
    return dataclasses.replace(result, placement=where)


@dataclasses.dataclass
class RayVInfo:
    """A `training.VInfoMeasurer` that runs each planned (layer, split) as a Ray task.

    Tasks are launched with the decoder bundle's shape so that Tune places them in the trial's
    placement group; a task that fails is retried, then recorded as missing with its error.
    """

    num_cpus: float = 1
    num_gpus: float = 0
    max_retries: int = Resources.decoder_retries
    _splits: dict[str, ray.ObjectRef] = dataclasses.field(default_factory=dict)

    def __call__(
        self,
        model: LayeredNet,
        splits: dict[str, Split],
        config: VInfoConfig,
        run_seed: int,
        epoch: int,
        layer0: Layer0,
        warm: WarmStates | None = None,
    ) -> dict[VInfoKey, VInfoResult]:
        for name, split in splits.items():  # the splits never change: ship them once
            if name not in self._splits:
                self._splits[name] = ray.put(split.to("cpu"))
        state = ray.put({k: v.detach().cpu() for k, v in model.state_dict().items()})
        task = _vinfo_task.options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus,
            max_retries=self.max_retries, retry_exceptions=True,
        )  # fmt: skip
        planned = plan(model.depth, splits, run_seed, epoch, layer0, config)
        starts = warm or {}
        pending = [
            task.remote(model.spec, state, m, self._splits[m.split], config, starts.get(m.key))
            for m in planned
        ]
        return gather(planned, [self._result(ref) for ref in pending], layer0, warm)

    def _result(self, ref: ray.ObjectRef) -> VInfoResult:
        try:
            return ray.get(ref)
        except Exception as err:  # the measurement is lost, the trial goes on
            message = f"𝒱-information task failed after {self.max_retries} retries: {err}"
            return VInfoResult.failed(message[:2000])


def train_trial(
    config: dict[str, Any],
    resources: Resources | None = None,
    models: dict[str, Builder] | None = None,
    identity: tuple[str, ...] = record.IDENTITY_SETTINGS,
) -> None:
    """The Tune function trainable. `config` is a flat trial configuration (`trial.SETTINGS`);
    `resources`, the sweep's own networks `models` and the settings that identify a trial's
    rows (`identity`: dataset, model and the swept axes) are bound by `tune.with_parameters`.

    Resume first: the checkpoint, when there is one, is read (its state as data only, see
    `load_state`) before anything is built, and a finished run ends there; otherwise it restores
    the run and its history. An error that a retry cannot fix (bad settings, missing data, a
    checkpoint that holds code) ends the trial with one report that says so, instead of failing
    it into Tune's retries.
    """
    try:
        state, history = resumed(tune.get_checkpoint())
    except PERMANENT as err:  # every retry would restore the same checkpoint
        tune.report(record.failed_summary(f"{type(err).__name__}: {err}"))
        return
    if history and history[-1].stop_reason:
        return
    resources = resources or Resources()
    device, note = ray_device()
    if note:
        print(f"note: {note}", flush=True)
    try:
        trial = Trial.from_config(config, models)
        data, model = trial.build(device)
    except PERMANENT as err:
        tune.report(record.failed_summary(f"{type(err).__name__}: {err}"))
        return
    measurer = RayVInfo(resources.decoder_cpu, resources.decoder_gpu, resources.decoder_retries)
    run = Run(model, data, trial.train, trial.collapse, trial.vinfo, measurer, trial.baselines)
    if state is not None:
        run.load_state_dict(state)  # copies the CPU tensors onto the run's device
    inject_failure(config, run.epoch)
    ran = {"device": device, "device_note": note}
    ids = {record.TRIAL_ID: tune.get_context().get_trial_id()}
    ids |= {key: trial.config.get(key) for key in identity}
    while True:
        epoch = run.step()
        history.append(epoch)
        described = {**describe(model), **ran, "compute": run.describe_compute()}
        report(run, history, described, ids)
        if epoch.stop_reason is not None:
            return
        inject_failure(config, run.epoch)


def resumed(checkpoint: tune.Checkpoint | None) -> tuple[dict | None, list[EpochRecord]]:
    """The run's saved state (`load_state`: data only, tensors on the CPU) and its history;
    (None, []) for a trial that starts afresh."""
    if checkpoint is None:
        return None, []
    with checkpoint.as_directory() as folder:
        scheme = checkpoint.filesystem.type_name  # "local", "s3", "gcs", …
        stored = checkpoint.path if scheme == "local" else f"{scheme}://{checkpoint.path}"
        state = load_state(Path(folder) / record.STATE_FILE, f"{stored}/{record.STATE_FILE}")
        return state, record.read_history(Path(folder))


def load_state(path: Path, shown: str | None = None) -> dict:
    """A state file (`Run.state_dict`) loaded as data: tensors (on the CPU) and plain
    containers, numbers and strings. Checkpoints may come from a shared
    bucket, so nothing else is unpickled: a file that holds anything else (an object that would
    run code as it is rebuilt) is refused, in one line naming it (`shown`: where it is stored),
    before any of it runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))  # the class or function it names
        what = f" ({found.group(1)})" if found else ""
        raise UntrustedCheckpointError(
            f"refused to restore {shown or path}: it holds more than tensors and plain data"
            f"{what}, and loading it could run code; restore only checkpoints you wrote or "
            "trust, and to train this trial afresh run its sweep again under a new --name"
        ) from None


def report(
    run: Run, history: list[EpochRecord], model: dict[str, Any], identity: dict[str, Any]
) -> None:
    """The epoch's summary and a checkpoint (state, history, its rows with the trial's
    `identity`, model description) as one report."""
    with tempfile.TemporaryDirectory() as folder:
        torch.save(run.state_dict(), Path(folder) / record.STATE_FILE)
        record.write_history(Path(folder), history)
        record.write_rows(Path(folder), history, identity)
        record.write_model(Path(folder), model)
        tune.report(
            record.summary_metrics(history[-1], run.model.depth, run.families),
            checkpoint=tune.Checkpoint.from_directory(folder),
        )


def inject_failure(config: dict[str, Any], epoch: int) -> None:
    """Test hook: with RAYCOMPRESS_FAIL_AT_EPOCH=E and RAYCOMPRESS_FAIL_MARKER=FILE, the first
    trial to finish epoch E raises once (FILE records that it did)."""
    target = os.environ.get("RAYCOMPRESS_FAIL_AT_EPOCH")
    marker = os.environ.get("RAYCOMPRESS_FAIL_MARKER")
    if target and marker and epoch == int(target) and not Path(marker).exists():
        Path(marker).write_text(str(config.get("seed")))
        raise RuntimeError(f"injected failure after epoch {epoch}")
