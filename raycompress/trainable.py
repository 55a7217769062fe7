"""The Ray Tune trainable: one trial = one training run of `training.Run`.

Each epoch: train, measure neural collapse on both splits, ship that epoch's 𝒱-information
measurements to Ray tasks (one per (layer, split), inside the trial's placement group), gather
them, and report one result with a checkpoint. The checkpoint holds the run's state (model,
optimiser, RNG, epoch, layer-0 values) and the authoritative per-epoch history
(`history.json`), which `results.load` reads — Tune's own result.json can lose epochs when a
trial is restarted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from raycompress.data import Split
from raycompress.models import LayeredNet, ModelSpec
from raycompress.training import EpochRecord, Run
from raycompress.trial import Trial
from raycompress.vinfo import VInfoConfig, measure_layer, vinfo_seed

STATE = "run.pt"
HISTORY = "history.json"
NC_SUMMARY = ("nc_trace", "within_trace", "between_trace", "cdnv", "rank")


def record_to_dict(record: EpochRecord) -> dict[str, Any]:
    """One epoch as plain JSON data: every statistic of every layer, split and measurement."""
    splits: dict[str, Any] = {}
    for name, report in (("train", record.train), ("test", record.test)):
        if report is None:
            continue
        layers = {
            str(layer): {**dataclasses.asdict(stats), "trace_ratio": stats.trace_ratio}
            for layer, stats in report.layers.items()
        }
        splits[name] = {"loss": report.loss, "accuracy": report.accuracy, "layers": layers}
    vinfo: dict[str, dict[str, Any]] = {}
    for (layer, name), values in record.vinfo.items():
        vinfo.setdefault(name, {})[str(layer)] = values
    return {
        "epoch": record.epoch,
        "train_step_loss": record.train_step_loss,
        "stop_reason": record.stop_reason,
        "splits": splits,
        "vinfo": vinfo,
    }


def summary_metrics(row: dict[str, Any], depth: int) -> dict[str, float | int | str]:
    """What Tune shows and stores per epoch: the same keys every epoch, NaN where unmeasured."""
    out: dict[str, float | int | str] = {
        "epoch": row["epoch"],
        "train_step_loss": row["train_step_loss"],
        "stop_reason": row["stop_reason"] or "",
    }
    for split in ("train", "test"):
        report = row["splits"].get(split, {})
        out[f"{split}/loss"] = report.get("loss", math.nan)
        out[f"{split}/accuracy"] = report.get("accuracy", math.nan)
        for layer in range(1, depth + 1):
            stats = report.get("layers", {}).get(str(layer), {})
            for key in NC_SUMMARY:
                out[f"{split}/{key}/l{layer}"] = stats.get(key, math.nan)
        for layer in range(depth):
            values = row["vinfo"].get(split, {}).get(str(layer), {})
            for key in ("v_suff", "v_min"):
                out[f"{split}/{key}/l{layer}"] = values.get(key, math.nan)
    return out


@ray.remote
def _vinfo_task(
    spec: ModelSpec, state: dict, layer: int, split: Split, config: VInfoConfig, seed: int
) -> dict:
    if os.environ.get("RAYCOMPRESS_FAIL_VINFO_LAYER") == str(layer):  # test hook
        raise RuntimeError(f"injected 𝒱-information failure at layer {layer}")
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    values = measure_layer(spec, state, layer, split, config, seed, device)
    return {**values, "node": ray.get_runtime_context().get_node_id()}


@dataclasses.dataclass
class RayVInfo:
    """A `training.VInfoMeasurer` that runs each (layer, split) as a Ray task.

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
        seed: int,
        layer0: dict[str, dict],
    ) -> dict[tuple[int, str], dict]:
        for name, split in splits.items():  # the splits never change: ship them once
            if name not in self._splits:
                self._splits[name] = ray.put(split.to("cpu"))
        state = ray.put({k: v.detach().cpu() for k, v in model.state_dict().items()})
        task = _vinfo_task.options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus,
            max_retries=self.max_retries, retry_exceptions=True,
        )  # fmt: skip
        pending = {
            (layer, name): task.remote(
                model.spec, state, layer, self._splits[name], config, vinfo_seed(seed, layer, i)
            )
            for layer in range(model.depth)
            for i, name in enumerate(splits)
            if not (layer == 0 and name in layer0)
        }
        results = {(0, name): values for name, values in layer0.items()}
        for key, ref in pending.items():
            try:
                results[key] = ray.get(ref)
            except Exception as err:  # the measurement is lost, the trial goes on
                message = f"𝒱-information task failed after {self.max_retries} retries: {err}"
                results[key] = {"v_suff": math.nan, "v_min": math.nan, "error": message[:2000]}
            if key[0] == 0 and not results[key].get("error"):
                layer0[key[1]] = results[key]
        return results


def train_trial(config: dict[str, Any]) -> None:
    """The Tune function trainable; `config` is a flat trial configuration (`trial.DEFAULTS`)."""
    settings = dict(config)
    resources = settings.pop("_resources", {})
    trial = Trial.from_config(settings)
    device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
    data, model = trial.build(device)
    measurer = RayVInfo(
        num_cpus=resources.get("decoder_cpu", 1), num_gpus=resources.get("decoder_gpu", 0),
        max_retries=resources.get("decoder_retries", 2),
    )  # fmt: skip
    run = Run(model, data, trial.train, trial.collapse, trial.vinfo, measure_vinfo=measurer)
    history: list[dict[str, Any]] = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE, map_location=device, weights_only=False)
            history = json.loads((Path(folder) / HISTORY).read_text())
        run.load_state_dict(state)
        if history and history[-1]["stop_reason"]:
            return
    inject_failure(config, run.epoch)
    while True:
        record = run.step()
        history.append(record_to_dict(record))
        with tempfile.TemporaryDirectory() as folder:
            torch.save(run.state_dict(), Path(folder) / STATE)
            (Path(folder) / HISTORY).write_text(json.dumps(history, allow_nan=True))
            tune.report(
                summary_metrics(history[-1], model.depth),
                checkpoint=tune.Checkpoint.from_directory(folder),
            )
        if record.stop_reason is not None:
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
