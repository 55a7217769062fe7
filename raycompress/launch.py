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
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.search.sample import Function

from raycompress import record, results, storage
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

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial that failed and that Tune runs again (FailureConfig.max_failures): why, and
        where it goes on from. Tune has written the failure into the trial's error file."""
        text = Path(trial.error_file).read_text() if trial.error_file else ""
        why = failure_reason(failures(text)[-1][1]) if failures(text) else "an unknown error"
        saved = trial.latest_checkpoint_result
        epoch = saved.metrics.get(record.EPOCH) if saved is not None else None
        start = f"from its checkpoint of epoch {epoch}" if epoch else "from epoch 1 (no checkpoint)"
        print(
            f"[{trial.trial_id}] lost: {why}; retrying {start} "
            f"(failure {trial.run_metadata.num_failures} of at most {trial.max_failures})",
            flush=True,
        )


TUNE_ERROR_FILE = "error.txt"  # Tune's, in each trial folder: every failure of the trial
FAILURE_HEADER = "Failure # "  # Tune's: "Failure # N (occurred at DATE)", then the error


def failures(text: str) -> list[tuple[float, str]]:
    """The failures recorded in a trial's error file (Tune's `TUNE_ERROR_FILE`), oldest first:
    (when, as a POSIX time; 0 where unreadable) and the error."""
    out = []
    for entry in text.split(FAILURE_HEADER):
        header, _, error = entry.partition("\n")
        if not error.strip():
            continue
        stamp = header.partition("occurred at ")[2].rstrip(")")
        try:  # Tune writes the driver's local time
            when = datetime.strptime(stamp, "%Y-%m-%d_%H-%M-%S").timestamp()
        except ValueError:
            when = 0.0
        out.append((when, error.strip()))
    return out


def failure_reason(error: str, lost_nodes: set[str] = frozenset()) -> str:
    """One line for one failure of a trial. Losing the process of a trial's actor is what a
    lost node looks like at first (Ray marks the node dead only once its heartbeats have been
    missing a while): given `lost_nodes`, the dead nodes the trial ran on, it says so."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    said = next((line for line in lines if "node has died" in line), lines[0] if lines else "")
    actor = _lost_process(error)
    if actor and lost_nodes:
        where = ", ".join(f"{node[:12]}…" for node in sorted(lost_nodes))
        return f"its node was lost (node {where}, where it ran, is dead; Ray: {said})"
    if "node has died" in error:
        return f"its node was lost (Ray: {said})"
    if actor:
        return f"its worker process was lost (Ray: {said})"
    return lines[-1] if lines else "an unknown error"


# Ray marks a node dead once it has missed health checks for a while (about 15 s by default):
# how long after a trial lost its process the summary waits for Ray to say whether its node died.
NODE_DEATH_S = 40


def _lost_nodes(ran_on: set[str], failed_at: float) -> set[str]:
    """Those of `ran_on` that Ray has marked dead ({} without Ray), waiting until NODE_DEATH_S
    after the failure for Ray to decide (no wait when the sweep went on longer than that)."""
    if not ran_on or not ray.is_initialized():
        return set()
    while True:
        dead = {node["NodeID"] for node in ray.nodes() if not node["Alive"]} & ran_on
        if dead or time.time() > failed_at + NODE_DEATH_S:
            return dead
        time.sleep(1)


def _lost_process(error: str) -> bool:
    """Whether a trial's error says that its actor's process was lost (not an exception)."""
    return "The actor" in error and ("unavailable" in error or "died" in error)


def _nodes_ran_on(result: tune.Result) -> set[str]:
    """The nodes a trial's 𝒱-information tasks ran on, from its newest checkpoint's history."""
    if result.checkpoint is None:
        return set()
    history = record.read_history(_folder(result.checkpoint))
    return {r.placement.node for e in history for r in e.vinfo.values() if r.placement}


def _error_file(result: tune.Result) -> str:
    """The trial's `TUNE_ERROR_FILE`, wherever the storage is; "" when it has none."""
    error = _folder(result) / TUNE_ERROR_FILE
    return error.read_text() if error.is_file() else ""


def _folder(of: tune.Result | tune.Checkpoint) -> storage.Remote:
    """A trial's folder or checkpoint on the filesystem Tune wrote it with (local or not)."""
    return storage.Remote(of.filesystem, of.path.rstrip("/"), of.path)


def _storage(path: str) -> str:
    """Tune's storage_path: a URI as given, a local folder made absolute."""
    return path if storage.is_uri(path) else str(Path(path).expanduser().resolve())


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
                address="local", num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
            )  # fmt: skip
    try:
        return _fit(sweep, args)
    finally:
        if started:
            ray.shutdown()


def _trainable(resources: Resources, models: dict[str, Any], swept: list[str]) -> Any:
    """The trainable with what is not a setting bound to it: the resources, the sweep's own
    networks (their builders travel to every node by value) and the settings that identify
    each row of a trial (dataset, model, the `swept` axes)."""
    identity = tuple(record.identity_settings(swept))
    bound = tune.with_parameters(train_trial, resources=resources, models=models, identity=identity)
    return tune.with_resources(bound, tune.PlacementGroupFactory(resources.bundles()))


def _fit(sweep: Sweep, args: argparse.Namespace) -> int:
    root = _storage(args.storage_path)
    name = args.name or sweep.name
    experiment = f"{root.rstrip('/')}/{name}"
    folder = storage.folder(experiment)
    if args.resume:
        if not tune.Tuner.can_restore(experiment):
            raise UsageError(f"nothing to resume at {experiment}: run the sweep without --resume")
        started_with = record.read_description(folder)
        resources = Resources(**started_with.get("resources", asdict(sweep.resources)))
        tuner = tune.Tuner.restore(
            experiment,
            _trainable(resources, sweep.models, started_with.get("axes", [])),
            resume_errored=True,
            resume_unfinished=True,
        )
        return finish(tuner.fit(), experiment)
    if folder.exists():
        raise UsageError(
            f"{experiment} exists: pass --resume to continue it, or --name for a new one"
        )
    resources, notes = sweep.resources.fit_to(ray.cluster_resources())
    for note in notes:
        print(f"note: {note}")
    tuner = tune.Tuner(
        _trainable(resources, sweep.models, axes(sweep.param_space)),
        param_space=sweep.param_space,
        # trials share one resource shape, so a finished trial's worker process (torch
        # imported, decoder task workers warm) runs the next one
        tune_config=tune.TuneConfig(
            max_concurrent_trials=args.max_concurrent or None, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=root,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=resources.trial_retries),
            callbacks=[EpochLines()],
        ),
    )
    folder.mkdir(parents=True, exist_ok=True)
    record.write_description(
        folder,
        {
            "sweep": sweep.name,
            "description": sweep.description,
            "axes": axes(sweep.param_space),
            "param_space": {k: _shown(v) for k, v in sweep.param_space.items()},
            "resources": asdict(resources),
        },
    )
    return finish(tuner.fit(), experiment)


def finish(grid: tune.ResultGrid, experiment: str) -> int:
    """The sweep's summary (`summarise`), after its trials' rows are consolidated into one
    file for `results.load`; a consolidation that fails costs nothing but its speed."""
    try:
        results.consolidate(experiment)
    except (OSError, ValueError) as err:
        print(f"note: the rows were not consolidated ({err}); results.load reads each trial")
    return summarise(grid)


def _shown(value: Any) -> str:
    if isinstance(value, Function):  # a lambda's repr says nothing; params.json has the values
        return f"tune.sample_from: set per trial from the other settings (see its {PARAMS_FILE})"
    return repr(value)


def summarise(grid: tune.ResultGrid) -> int:
    """0 when every trial finished; else print which did not and why, and return 1. A trial
    that failed and was retried (a lost node, a killed worker) is named with why, from the
    error file Tune keeps in its folder."""
    problems: list[str] = []
    for result in grid:
        trial = Path(result.path).name
        metrics = result.metrics or {}
        reason = metrics.get(record.STOP_REASON)
        failed = failures(_error_file(result))
        if failed and result.error is None:
            ran_on = _nodes_ran_on(result)
            reasons = [
                failure_reason(error, _lost_nodes(ran_on, when) if _lost_process(error) else set())
                for when, error in failed
            ]
            times = "" if len(failed) == 1 else f"{len(failed)} failures: "
            print(f"note: {trial} was retried after {times}{'; then '.join(reasons)}")
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
