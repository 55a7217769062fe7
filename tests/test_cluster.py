"""The README's cluster recipe, run as written: real `ray start` processes for a head and a
second node on this machine, token authentication on, the sweep CLI joining with --address;
then what the README says of faults: the second node lost mid-sweep, then the head (the sweep
resumed on a new cluster). The tests share one cluster while its nodes live (the recipe test
first, the ones that kill a node or the head last): 4 Ray starts in all, not 8.

Only the processes this test starts are stopped (by their session ids); HOME points at a
temporary folder so that the token the recipe generates never touches the user's ~/.ray.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import pytest
from demo_sweep import FAST

from raycompress import record

pytestmark = pytest.mark.slow  # real Ray nodes

README = Path(__file__).resolve().parents[1] / "README.md"
RAY = str(Path(sys.executable).parent / "ray")
# What the test adds to the recipe's commands: one CPU per node, no dashboard, and `--block`,
# so that each node is one process session this test can stop.
NODE_FLAGS = ["--num-cpus=1", "--disable-usage-stats", "--block"]
HEAD_FLAGS = ["--include-dashboard=false"]


def recipe() -> list[str]:
    """The shell lines of the README's cluster section, in order."""
    section = README.read_text().split("## On a cluster", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_sessions(sessions: list[int]) -> None:
    """SIGKILL every process of the given sessions: the nodes this test started, nothing else."""
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) in sessions:
                process.send_signal(signal.SIGKILL)
        except (ProcessLookupError, psutil.Error):
            continue


def wait_for(log: Path, text: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, f"no {text!r} in {log}"
        time.sleep(0.5)


class Cluster(NamedTuple):
    address: str  # HEAD:PORT
    env: dict[str, str]  # the shell's environment, with what the recipe exported
    sweeps: list[str]  # the recipe's sweep lines
    nodes: list[subprocess.Popen]  # the head, then the second node (each its own session)

    def alive(self) -> bool:
        return all(node.poll() is None for node in self.nodes)


@contextmanager
def start_cluster(home: Path, logs: Path) -> Iterator[Cluster]:
    """The recipe's head and second node (HOME at `home`: the token the recipe generates, or
    finds there from a cluster before, never touches the user's ~/.ray)."""
    port = free_port()
    env = {**os.environ, "HOME": str(home)}
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        env.pop(name, None)
    nodes: list[subprocess.Popen] = []
    sweeps: list[str] = []
    try:
        for line in recipe():
            line = line.replace("HEAD:6379", f"127.0.0.1:{port}").replace("6379", str(port))
            words = shlex.split(line)
            if words[0] == "export":
                key, _, value = words[1].partition("=")
                env[key] = value
            elif words[:2] == ["ray", "start"]:
                log = logs / f"node{port}-{len(nodes)}.log"
                extra = NODE_FLAGS + (HEAD_FLAGS if "--head" in words else [])
                with log.open("w") as out:
                    node = subprocess.Popen(
                        [RAY, *words[1:], *extra], env=env, stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )  # fmt: skip
                nodes.append(node)
                wait_for(log, "Ray runtime started", node)
            elif words[0] == "ray":
                subprocess.run([RAY, *words[1:]], env=env, check=True, capture_output=True)
            else:
                sweeps.append(line)
        assert len(nodes) == 2 and (home / ".ray" / "auth_token").is_file()
        yield Cluster(f"127.0.0.1:{port}", env, sweeps, nodes)
    finally:
        stop_sessions([node.pid for node in nodes])
        for node in nodes:
            node.wait(timeout=30)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The module's tests share one recipe cluster while all its nodes live."""
    with ExitStack() as stack:
        yield {"stack": stack, "home": tmp_path_factory.mktemp("cluster") / "home"}


def _cluster(clusters: dict[str, Any], whole: bool) -> Cluster:
    current = clusters.get("current")
    if current is None or not (current.alive() if whole else current.nodes[0].poll() is None):
        if current is not None:
            stop_sessions([node.pid for node in current.nodes])
        clusters["current"] = clusters["stack"].enter_context(
            start_cluster(clusters["home"], clusters["home"].parent)
        )
    return clusters["current"]


@pytest.fixture
def cluster(clusters: dict[str, Any]) -> Cluster:
    """The recipe's cluster: the one a test before used while all its nodes live, else a
    fresh one (the tests that kill a node or the head come last)."""
    return _cluster(clusters, whole=True)


@pytest.fixture
def head(clusters: dict[str, Any]) -> Cluster:
    """The recipe's cluster, or what is left of it while its head lives."""
    return _cluster(clusters, whole=False)


def sweep_command(line: str, storage: Path) -> list[str]:
    words = shlex.split(line.replace("/shared/raycompress_results", str(storage)))
    assert words[:3] == ["python", "-m", "raycompress.sweep"]
    return [sys.executable, *words[1:], *FAST[:-2]]  # FAST without --num-cpus (no local Ray)


def test_the_readme_cluster_recipe_runs_tasks_on_both_nodes(cluster, tmp_path: Path) -> None:
    address, env, sweeps, _ = cluster
    assert len(sweeps) == 2 and "--resume" in sweeps[1]  # the sweep, then its resume
    done = subprocess.run(
        sweep_command(sweeps[0], tmp_path / "results"), env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    nodes = set()
    for trial in (tmp_path / "results" / "demo").glob("train_trial_*"):
        for epoch in record.newest_history(trial):
            nodes |= {result.placement.node for result in epoch.vinfo.values()}
    assert len(nodes) == 2  # 𝒱-information tasks ran on the head and on the second node

    # The same command without the token: one line that says what to set, no traceback.
    without = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    refused = subprocess.run(
        sweep_command(sweeps[0], tmp_path / "refused"), env=without, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: the Ray cluster at {address} refused this driver")
    assert "RAY_AUTH_MODE=token" in last and "auth_token" in last


def test_a_refused_connection_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from raycompress.sweep import main

    port = free_port()  # closed again: nothing listens there
    assert main(["demo", "--address", f"127.0.0.1:{port}", "--dry-run"]) == 0  # no Ray needed
    assert main(["demo", "--address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no Ray cluster answers at 127.0.0.1:{port}" in err
    assert f"ray start --head --port={port}" in err


def in_session(session: int) -> Iterator[psutil.Process]:
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session:
                yield process
        except (ProcessLookupError, psutil.Error):
            continue


def raylet_node_id(node: subprocess.Popen) -> str:
    """The Ray node id of a node this test started (its raylet runs with --node_id=HEX)."""
    for process in in_session(node.pid):
        try:
            for arg in process.cmdline():
                if arg.startswith("--node_id="):
                    return arg.partition("=")[2]
        except psutil.Error:
            continue
    raise AssertionError(f"no raylet in the session of node {node.pid}")


def trial_training_on(node: subprocess.Popen) -> str | None:
    """The folder name of the trial whose training runs on a node, if one does: Tune runs a
    trial's actor (`ray::ImplicitFunc`) in a working folder named as the trial's folder."""
    for process in in_session(node.pid):
        try:
            if "ImplicitFunc" in " ".join(process.cmdline()):
                return Path(process.cwd()).name
        except psutil.Error:
            continue
    return None


def trial_id_of(folder: str) -> str:
    """The trial id in a trial folder's name (train_trial_<id>_<index>_<params>_<date>)."""
    return re.match(r"train_trial_([0-9a-f]+_\d+)_", folder).group(1)


def epochs_saved(trial: Path) -> int:
    """How many epochs a trial's newest checkpoint holds (0 while none is complete)."""
    try:
        return len(record.newest_history(trial))
    except (ValueError, OSError):  # a checkpoint being copied into storage right now
        return 0


def lines_of(out: str, trial_id: str, what: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"[{trial_id}] {what}")]


def unique_rows(frame) -> bool:
    keys = ["trial_id", "epoch", "split", "layer", "metric", "budget"]
    return not frame.duplicated(keys).any()


def test_losing_the_second_node_retries_its_trial_from_its_checkpoint(
    cluster: Cluster, tmp_path: Path
) -> None:
    """SIGKILL every process of the second node while a trial trains there (after its first
    checkpoint): Tune retries the trial on what is left, from that checkpoint, and the
    summary says so."""
    from raycompress.results import load

    second = cluster.nodes[1]
    lost_node = raylet_node_id(second)
    storage = tmp_path / "results"
    out, err = tmp_path / "sweep.out", tmp_path / "sweep.err"
    with out.open("w") as o, err.open("w") as e:
        driver = subprocess.Popen(
            sweep_command(cluster.sweeps[0], storage), env=cluster.env, stdout=o, stderr=e,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            assert driver.poll() is None, out.read_text()[-3000:] + err.read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial trained on the second node"
            there = trial_training_on(second)
            saved = there is not None and epochs_saved(storage / "demo" / there) >= 1
            if saved and lines_of(out.read_text(), trial_id_of(there), "epoch 1:"):
                break
            time.sleep(0.5)
        # The driver printed epoch 1 (EpochLines.on_trial_result) before it asks the trial's
        # actor for the checkpoint (Tune's "save" task) and registers it: a node lost in
        # between leaves Tune with no checkpoint, whatever storage holds. The task takes
        # milliseconds; the trial's next epoch, tens of seconds.
        time.sleep(2)
        killed_at = time.monotonic()
        stop_sessions([second.pid])  # the whole node: raylet, object store, workers
        second.wait(timeout=30)
        code = driver.wait(timeout=600)
    finally:
        stop_sessions([driver.pid])
    printed = out.read_text()
    print(printed[-6000:], f"\nfinished {time.monotonic() - killed_at:.0f} s after the kill")
    assert code == 0, printed[-3000:] + err.read_text()[-3000:]

    trials = sorted((storage / "demo").glob("train_trial_*"))
    (lost,) = [t for t in trials if t.name == there]
    lost_id = json.loads((lost / "result.json").read_text().splitlines()[0])["trial_id"]
    # What raycompress says: at once, under Tune's table, and in the summary at the end.
    # At once Ray knows only that the trial's process is gone (the node is marked dead when
    # its heartbeats have been missing a while); by the summary it knows the node is.
    (retry,) = lines_of(printed, lost_id, "lost:")
    assert retry.startswith(f"[{lost_id}] lost: its worker process was lost (Ray: The actor ")
    assert retry.endswith("; retrying from its checkpoint of epoch 1 (failure 1 of at most 2)")
    lost_note = f"note: {there} was retried after its node was lost (node {lost_node[:12]}…, "
    assert lost_note + "where it ran, is dead; Ray: The actor " in printed
    assert printed.count("was retried after") == 1  # the other trial was not
    # From its checkpoint: epoch 1 was not run again, and it was measured on the lost node.
    assert [len(lines_of(printed, lost_id, f"epoch {e}:")) for e in (1, 2)] == [1, 1]
    history = record.newest_history(lost)
    assert {r.placement.node for r in history[0].vinfo.values()} == {lost_node}
    measured = {r.placement.node for (layer, *_), r in history[1].vinfo.items() if layer > 0}
    assert lost_node not in measured  # (layer 0's values are epoch 1's, carried: plan.py)

    frame = load(storage / "demo")
    assert unique_rows(frame) and frame.trial_id.nunique() == 2
    for trial_id, rows in frame.groupby("trial_id"):
        assert sorted(set(rows.epoch)) == [1, 2], trial_id
        vinfo = rows[rows.metric.isin(["v_suff", "v_min"])]
        assert len(vinfo) == 2 * 2 * 4 * 2 and vinfo.value.map(math.isfinite).all()
        assert not rows.note.fillna("").str.contains("error:").any()


def experiment_state_after(experiment: Path, moment: float, seconds: float = 30) -> None:
    """Wait until Tune has saved the experiment's state (its experiment_state file) after
    `moment` (a file time), as it does every few seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        states = list(experiment.glob("experiment_state-*.json"))
        if states and max(p.stat().st_mtime for p in states) > moment:
            return
        time.sleep(0.5)


def test_losing_the_head_ends_the_sweep_and_a_new_cluster_resumes_it(
    head: Cluster, clusters: dict[str, Any], tmp_path: Path
) -> None:
    """The head (its GCS) is lost: without GCS fault tolerance the cluster ends, the driver and
    every trial with it. What is left is the storage: on a new head, the README's --resume
    line finishes the sweep, each epoch of each trial once, the finished trial not re-run."""
    from raycompress.results import load

    storage = tmp_path / "results"
    experiment = storage / "demo"
    out = tmp_path / "sweep.out"
    # more epochs than the demo's 2: the running trial must still be short of its last when
    # Tune has saved the experiment's state, which on a busy machine can take tens of seconds
    epochs = 4
    command = [
        *sweep_command(head.sweeps[0], storage), "--max-concurrent", "1", "--epochs", str(epochs)
    ]  # fmt: skip
    with out.open("w") as o:
        driver = subprocess.Popen(
            command, env=head.env, stdout=o, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 300
        while True:  # one trial finished, the other past its first epoch
            assert driver.poll() is None, out.read_text()[-3000:]
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            saved = {t: epochs_saved(t) for t in experiment.glob("train_trial_*")}
            done = [t for t, count in saved.items() if count == epochs]
            going = [t for t, count in saved.items() if count == 1]
            if done and going:
                break
            time.sleep(0.5)
        (finished,), (unfinished,) = done, going
        checkpoint = max(p.stat().st_mtime for p in unfinished.glob("checkpoint_*"))
        experiment_state_after(experiment, checkpoint)
        stop_sessions([head.nodes[0].pid])  # the head: GCS, raylet, its workers
    finally:
        # The driver would end by itself, status 1, a minute later ("Failed to connect to GCS
        # within 60 seconds"), and so would a second node's Ray: the cluster has ended.
        stop_sessions([driver.pid, *(node.pid for node in head.nodes)])
    assert len(record.newest_history(unfinished)) < epochs  # it was still running
    before = {p.relative_to(finished): p.read_bytes() for p in finished.rglob("*") if p.is_file()}

    with start_cluster(clusters["home"], tmp_path) as fresh:  # a new head, a new port
        resume = [line for line in fresh.sweeps if "--resume" in line]
        done = subprocess.run(  # the trials keep the epochs they were started with
            sweep_command(resume[0], storage), env=fresh.env, capture_output=True, text=True
        )
    print(done.stdout[-4000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = {p.relative_to(finished): p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    assert after == before  # the finished trial was not run again
    frame = load(experiment)
    assert unique_rows(frame) and frame.trial_id.nunique() == 2
    for trial_id, rows in frame.groupby("trial_id"):
        assert sorted(set(rows.epoch)) == list(range(1, epochs + 1)), trial_id
        vinfo = rows[rows.metric.isin(["v_suff", "v_min"])]
        assert len(vinfo) == 2 * 2 * 4 * epochs and vinfo.value.map(math.isfinite).all()
    ids = {json.loads((t / "result.json").read_text().splitlines()[0])["trial_id"]: t
           for t in (finished, unfinished)}  # fmt: skip
    for trial_id, trial in ids.items():
        ran = [e for e in range(1, epochs + 1) if lines_of(done.stdout, trial_id, f"epoch {e}:")]
        print(trial.name, "ran epochs", ran, "after the resume")


def test_a_retried_trial_is_named_with_why() -> None:
    """Tune's error file, as it reads after a lost node (no Ray needed)."""
    from raycompress.launch import failure_reason, failures

    unavailable = (
        "The actor bd3d73 is unavailable: The actor is temporarily unavailable: RpcError: RPC "
        "error: recvmsg:Connection reset by peer rpc_code: 14. The task may or may not have "
        "been executed on the actor."
    )
    died = (
        "The actor died unexpectedly before finishing this task.\n\tclass_name: ImplicitFunc\n"
        "\tactor_id: bd3d73\nThe actor is dead because its node has died. Node Id: 7432756c"
    )
    text = (
        f"Failure # 1 (occurred at 2026-12-01_23-41-05)\n{unavailable}\n"
        f"Failure # 2 (occurred at 2026-12-01_23-42-05)\n{died}\n"
    )
    assert [error for _, error in failures(text)] == [unavailable, died] and failures("") == []
    assert failures(text)[1][0] - failures(text)[0][0] == 60  # when: Tune's time stamps
    assert failure_reason(unavailable) == f"its worker process was lost (Ray: {unavailable})"
    assert failure_reason(unavailable, {"7432756c98bd4119daeb"}) == (
        f"its node was lost (node 7432756c98bd…, where it ran, is dead; Ray: {unavailable})"
    )
    assert failure_reason(died) == (
        "its node was lost (Ray: The actor is dead because its node has died. Node Id: 7432756c)"
    )
    assert failure_reason("Traceback …\nRuntimeError: boom") == "RuntimeError: boom"
