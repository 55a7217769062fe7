"""Start a sweep on Ray Tune: the embedded local Ray or a cluster, storage, resume, progress.

Kept apart from `sweep` (parsing, validation, dry runs) so that those never start Ray.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.search.sample import Function

from raycompress.sweep import SWEEP_FILE, Sweep, UsageError, axes
from raycompress.trainable import train_trial

OBJECT_STORE_BYTES = 256 << 20  # Ray's default (30 % of RAM in /dev/shm) is far more than needed


class EpochLines(tune.Callback):
    """One line per finished epoch of each trial, under Tune's own status table."""

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        print(
            f"[{trial.trial_id}] epoch {result['epoch']}: train loss {result['train/loss']:.4f}, "
            f"test accuracy {result['test/accuracy']:.4f}, "
            f"test tr(Σ_W Σ_B⁺) l1 {result['test/nc_trace/l1']:.4g}"
            + (f" — stopped: {result['stop_reason']}" if result["stop_reason"] else ""),
            flush=True,
        )


def _storage(path: str) -> tuple[str, Path | None]:
    """Tune's storage_path, and the local experiment root when it is a local folder."""
    if "://" in path:
        return path, None
    local = Path(path).expanduser().resolve()
    return str(local), local


def launch(sweep: Sweep, args: argparse.Namespace) -> int:
    started = not ray.is_initialized()
    if started:
        if args.address:
            ray.init(address=args.address, include_dashboard=False)
        else:
            ray.init(
                address="local", num_cpus=args.num_cpus, include_dashboard=False,
                object_store_memory=OBJECT_STORE_BYTES,
            )  # fmt: skip
    try:
        return _fit(sweep, args)
    finally:
        if started:
            ray.shutdown()


def _fit(sweep: Sweep, args: argparse.Namespace) -> int:
    resources, notes = sweep.resources.fit_to(ray.cluster_resources())
    for note in notes:
        print(f"note: {note}")
    trainable = tune.with_resources(train_trial, tune.PlacementGroupFactory(resources.bundles()))
    param_space = {**sweep.param_space, "_resources": asdict(resources)}
    storage, local_root = _storage(args.storage_path)
    name = args.name or sweep.name
    experiment = f"{storage.rstrip('/')}/{name}"
    if args.resume:
        if not tune.Tuner.can_restore(experiment):
            raise UsageError(f"nothing to resume at {experiment}: run the sweep without --resume")
        tuner = tune.Tuner.restore(
            experiment, trainable, resume_errored=True, resume_unfinished=True
        )
    else:
        if local_root is not None and (local_root / name).exists():
            raise UsageError(
                f"{local_root / name} exists: pass --resume to continue it, or --name for a new one"
            )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            # trials share one resource shape, so a finished trial's worker process (torch
            # imported, decoder task workers warm) runs the next one: ~10 s less per trial
            tune_config=tune.TuneConfig(
                max_concurrent_trials=args.max_concurrent or None, reuse_actors=True
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                failure_config=tune.FailureConfig(max_failures=resources.trial_retries),
                callbacks=[EpochLines()],
            ),
        )
        if local_root is not None:
            (local_root / name).mkdir(parents=True, exist_ok=True)
            meta = {
                "sweep": sweep.name,
                "description": sweep.description,
                "axes": axes(sweep.param_space),
                "param_space": {k: _shown(v) for k, v in param_space.items()},
            }
            (local_root / name / SWEEP_FILE).write_text(json.dumps(meta, indent=1))
    grid = tuner.fit()
    return summarise(grid)


def _shown(value: Any) -> str:
    if isinstance(value, Function):  # a lambda's repr says nothing; params.json has the values
        return "tune.sample_from: set per trial from the other settings (see its params.json)"
    return repr(value)


def summarise(grid: tune.ResultGrid) -> int:
    """0 when every trial finished; else print which did not and why, and return 1."""
    problems = []
    for result in grid:
        trial = Path(result.path).name
        reason = (result.metrics or {}).get("stop_reason")
        if result.error is not None:
            problems.append(f"{trial}: failed: {str(result.error).strip().splitlines()[-1]}")
        elif not reason:
            problems.append(f"{trial}: unfinished (interrupted); continue it with --resume")
        elif reason == "diverged":
            print(f"note: {trial} diverged (non-finite training loss) and stopped")
    if problems:
        print(f"{len(problems)} of {len(grid)} trial(s) did not finish:")
        for line in problems:
            print(f"  {line}")
        return 1
    print(f"all {len(grid)} trial(s) finished; results in {grid.experiment_path}")
    return 0
