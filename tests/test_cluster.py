"""The README's cluster recipe, run as written: real `ray start` processes for a head and a
second node on this machine, token authentication on, the sweep CLI joining with --address.

Only the processes this test starts are stopped (by their session ids); HOME points at a
temporary folder so that the token the recipe generates never touches the user's ~/.ray.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from demo_sweep import FAST

from raycompress import record

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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], list[str]]]:
    """The recipe's head and second node; yields (HEAD:PORT, the shell's environment, the
    recipe's sweep lines), the environment holding what the recipe exported."""
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path / "home")}
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
                log = tmp_path / f"node{len(nodes)}.log"
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
        assert len(nodes) == 2 and (tmp_path / "home" / ".ray" / "auth_token").is_file()
        yield f"127.0.0.1:{port}", env, sweeps
    finally:
        stop_sessions([node.pid for node in nodes])
        for node in nodes:
            node.wait(timeout=30)


def sweep_command(line: str, storage: Path) -> list[str]:
    words = shlex.split(line.replace("/shared/raycompress_results", str(storage)))
    assert words[:3] == ["python", "-m", "raycompress.sweep"]
    return [sys.executable, *words[1:], *FAST[:-2]]  # FAST without --num-cpus (no local Ray)


def test_the_readme_cluster_recipe_runs_tasks_on_both_nodes(cluster, tmp_path: Path) -> None:
    address, env, sweeps = cluster
    assert len(sweeps) == 1
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
