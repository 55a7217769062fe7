"""Start a sweep on Ray Tune: the embedded local Ray or a cluster, storage, resume, progress.

The sweep's definition (`definition`) is loaded and validated before anything here runs; this
module is where Ray starts. A trial's resources reach the trainable through
`tune.with_parameters`, never inside its settings, and a resumed sweep keeps the resources it
was started with (recorded in its description).
"""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.search.sample import Function

from raycompress import record
from raycompress.definition import Resources, Sweep, UsageError, axes
from raycompress.record import PARAMS_FILE
from raycompress.schema import NC
from raycompress.stopping import Stop
from raycompress.trainable import train_trial

OBJECT_STORE_BYTES = 256 << 20  # Ray's default (30 % of RAM in /dev/shm) is far more than needed
TOKEN_HINT = (
    "it uses token authentication (on by default since Ray 2.59): set RAY_AUTH_MODE=token and "
    "copy the head's ~/.ray/auth_token to this machine (or point RAY_AUTH_TOKEN_PATH at it)"
)


class EpochLines(tune.Callback):
    """One line per finished epoch of each trial, under Tune's own status table."""

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        reason = result[record.STOP_REASON]
        if reason == Stop.ERROR:
            print(f"[{trial.trial_id}] failed: {result[record.ERROR]}", flush=True)
            return
        nc = record.summary_key("test", NC.TRACE, 1)
        print(
            f"[{trial.trial_id}] epoch {result[record.EPOCH]}: "
            f"train loss {result[record.summary_key('train', 'loss')]:.4f}, "
            f"test accuracy {result[record.summary_key('test', 'accuracy')]:.4f}, "
            f"test tr(Σ_W Σ_B⁺) l1 {result[nc]:.4g}" + (f" — stopped: {reason}" if reason else ""),
            flush=True,
        )


def _storage(path: str) -> tuple[str, Path | None]:
    """Tune's storage_path, and the local experiment root when it is a local folder."""
    if "://" in path:
        return path, None
    local = Path(path).expanduser().resolve()
    return str(local), local


def check_reachable(address: str) -> None:
    """A one-line UsageError, at once, when nothing listens at a HOST:PORT address (instead of
    Ray's half-minute of retries and a traceback)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray://…: Ray resolves these itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UsageError(
            f"no Ray cluster answers at {address} ({err.strerror or err}): start its head with "
            f"`ray start --head --port={port}` or pass the head's HOST:PORT"
        ) from None


# Ray retries a cluster that does not let it in once a second, 20 times by default; a few
# tries tell a refused token from a slow head. The variable is Ray's, spelled as Ray spells it.
GCS_TRIES = "RAY_gcs_server_port_wait_time_s"
CONNECT_TRIES = "5"


def connect(address: str) -> None:
    """Join an existing cluster; a refused connection or a missing token is one line."""
    check_reachable(address)
    users = os.environ.get(GCS_TRIES)
    os.environ[GCS_TRIES] = users or CONNECT_TRIES
    try:
        ray.init(address=address, include_dashboard=False)
    except (ConnectionError, RuntimeError) as err:
        cause = f"{err} {err.__cause__}"
        if "InvalidAuthToken" in cause or "Unauthenticated" in cause:
            raise UsageError(
                f"the Ray cluster at {address} refused this driver: {TOKEN_HINT}"
            ) from None
        raise UsageError(f"could not join the Ray cluster at {address}: {err}") from None
    finally:
        if users is None:
            del os.environ[GCS_TRIES]


def launch(sweep: Sweep, args: argparse.Namespace) -> int:
    started = not ray.is_initialized()
    if started:
        if args.address:
            connect(args.address)
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


def _trainable(resources: Resources, models: dict[str, Any]) -> Any:
    """The trainable with what is not a setting bound to it: the resources and the sweep's own
    networks (their builders travel to every node by value)."""
    bound = tune.with_parameters(train_trial, resources=resources, models=models)
    return tune.with_resources(bound, tune.PlacementGroupFactory(resources.bundles()))


def _fit(sweep: Sweep, args: argparse.Namespace) -> int:
    storage, local_root = _storage(args.storage_path)
    name = args.name or sweep.name
    experiment = f"{storage.rstrip('/')}/{name}"
    if args.resume:
        if not tune.Tuner.can_restore(experiment):
            raise UsageError(f"nothing to resume at {experiment}: run the sweep without --resume")
        started_with = record.read_description(local_root / name) if local_root else {}
        resources = Resources(**started_with.get("resources", asdict(sweep.resources)))
        tuner = tune.Tuner.restore(
            experiment,
            _trainable(resources, sweep.models),
            resume_errored=True,
            resume_unfinished=True,
        )
        return summarise(tuner.fit())
    if local_root is not None and (local_root / name).exists():
        raise UsageError(
            f"{local_root / name} exists: pass --resume to continue it, or --name for a new one"
        )
    resources, notes = sweep.resources.fit_to(ray.cluster_resources())
    for note in notes:
        print(f"note: {note}")
    tuner = tune.Tuner(
        _trainable(resources, sweep.models),
        param_space=sweep.param_space,
        # trials share one resource shape, so a finished trial's worker process (torch
        # imported, decoder task workers warm) runs the next one
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
        record.write_description(
            local_root / name,
            {
                "sweep": sweep.name,
                "description": sweep.description,
                "axes": axes(sweep.param_space),
                "param_space": {k: _shown(v) for k, v in sweep.param_space.items()},
                "resources": asdict(resources),
            },
        )
    return summarise(tuner.fit())


def _shown(value: Any) -> str:
    if isinstance(value, Function):  # a lambda's repr says nothing; params.json has the values
        return f"tune.sample_from: set per trial from the other settings (see its {PARAMS_FILE})"
    return repr(value)


def summarise(grid: tune.ResultGrid) -> int:
    """0 when every trial finished; else print which did not and why, and return 1."""
    problems = []
    for result in grid:
        trial = Path(result.path).name
        metrics = result.metrics or {}
        reason = metrics.get(record.STOP_REASON)
        if result.error is not None:
            problems.append(f"{trial}: failed: {str(result.error).strip().splitlines()[-1]}")
        elif reason == Stop.ERROR:
            problems.append(
                f"{trial}: failed, not retried (a retry cannot fix it): {metrics[record.ERROR]}"
            )
        elif not reason:
            problems.append(f"{trial}: unfinished (interrupted); continue it with --resume")
        elif reason == Stop.DIVERGED:
            print(f"note: {trial} diverged (non-finite training loss) and stopped")
    if problems:
        print(f"{len(problems)} of {len(grid)} trial(s) did not finish:")
        for line in problems:
            print(f"  {line}")
        return 1
    print(f"all {len(grid)} trial(s) finished; results in {grid.experiment_path}")
    return 0
