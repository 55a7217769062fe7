"""Ray Tune at many trials: a sweep of tiny trials through the sweep CLI, the driver's cost.

    python benchmarks/tune_many_trials.py [--trials 1000] [--variants default]

Each trial trains an MLP on 200 Fashion-MNIST-demo images for one epoch, neural collapse on
both splits, no 𝒱-information, one CPU a trial (two at once on two cores). The sweep runs as a
user runs it (`python -m raycompress.sweep FILE`, embedded Ray), in its own process, while
this script samples the driver's RSS and the experiment state file's writes (its mtime, every
0.2 s). From the trials' own records: the seconds each spent in its trainable (Tune's
`time_total_s`). The driver's overhead per trial is the wall time beyond what the trials
themselves took, spread over the trials: (wall − Σ time_total_s / concurrency) / trials, Ray's
start and shutdown included. Variants are environment settings of Tune's, tried one at a time.
Writes benchmarks/out/tune_many_trials.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SWEEP = """'''{trials} tiny trials: an MLP on 200 images, one epoch, no 𝒱-information.'''
from ray import tune
PARAM_SPACE = {{"model": "mlp", "train_size": 200, "test_size": 200, "epochs": 1,
               "vinfo_schedule": "none", "seed": tune.grid_search(list(range({trials})))}}
RESOURCES = {{"trial_cpu": 1, "decoder_bundles": 0}}
"""
CONCURRENCY = 2  # one CPU a trial on two cores
VARIANTS = {
    "default": {},
    # Tune's experiment state is saved at most every this many seconds (default: "auto", a
    # period that keeps the saves under 5 % of the time)
    "state_every_60s": {"TUNE_GLOBAL_CHECKPOINT_S": "60"},
}


def sample(driver: psutil.Process, experiment: Path, seen: dict, stop: threading.Event) -> None:
    """The driver's peak RSS and the experiment state's distinct writes, until `stop`."""
    while not stop.is_set():
        try:
            seen["peak_rss"] = max(seen.get("peak_rss", 0), driver.memory_info().rss)
        except psutil.NoSuchProcess:
            return
        for state in experiment.glob("experiment_state-*.json"):
            try:
                seen.setdefault("state_writes", set()).add(state.stat().st_mtime_ns)
                seen["state_bytes"] = state.stat().st_size
            except FileNotFoundError:  # replaced while looked at
                pass
        time.sleep(0.2)


def run(trials: int, variant: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        sweep = Path(folder) / "many.py"
        sweep.write_text(SWEEP.format(trials=trials))
        env = {**os.environ, **VARIANTS[variant], "PYTHONPATH": str(ROOT)}
        log = Path(folder) / "driver.log"
        start = time.perf_counter()
        with log.open("w") as out:
            driver = subprocess.Popen(
                [sys.executable, "-m", "raycompress.sweep", str(sweep), "--storage-path",
                 folder, "--num-cpus", str(CONCURRENCY)],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            seen: dict = {}
            stop = threading.Event()
            sampler = threading.Thread(
                target=sample, args=(psutil.Process(driver.pid), Path(folder) / "many", seen, stop)
            )
            sampler.start()
            code = driver.wait()
            stop.set()
            sampler.join()
        wall = time.perf_counter() - start
        took = []
        for result in (Path(folder) / "many").glob("train_trial_*/result.json"):
            lines = result.read_text().splitlines()
            took.append(json.loads(lines[-1])["time_total_s"])
        tail = log.read_text()[-1500:]
    busy = sum(took) / CONCURRENCY
    out = {
        "variant": variant, "settings": VARIANTS[variant], "exit": code, "trials": trials,
        "finished": len(took), "wall_s": wall, "trial_s_mean": sum(took) / max(1, len(took)),
        "overhead_per_trial_s": (wall - busy) / trials,
        "state_writes": len(seen.get("state_writes", ())),
        "state_bytes": seen.get("state_bytes"),
        "driver_peak_rss_mib": seen.get("peak_rss", 0) / 2**20,
        "tail": tail if code else "",
    }  # fmt: skip
    print(
        f"{variant}: {out['finished']}/{trials} trials in {wall:.0f} s, each "
        f"{out['trial_s_mean']:.2f} s in its trainable; overhead "
        f"{out['overhead_per_trial_s']:.2f} s a trial; "
        f"{out['state_writes']} state writes ({out['state_bytes']} B); driver peak "
        f"{out['driver_peak_rss_mib']:.0f} MiB",
        flush=True,
    )  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/tune_many_trials.json")
    args = p.parse_args()
    found = [run(args.trials, variant) for variant in args.variants]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=1) + "\n")


if __name__ == "__main__":
    main()
