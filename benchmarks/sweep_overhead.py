"""Ray's overhead on the demo sweep: the same trials through Tune and one after another in-process.

    python benchmarks/sweep_overhead.py [--repeats N] [--epochs E] [--out FILE.json]

Three ways to run the demo sweep's trials (f₋ and an MLP on the bundled Fashion-MNIST subset,
NC every epoch, 𝒱-information every epoch):

    in_process   each trial in this process, one after another (`training.Run` with the
                 in-process 𝒱-information), torch on 1 thread: the no-Ray baseline
    ray_1        `python -m raycompress.sweep demo` machinery, one trial at a time, each
                 trial reserving 1 CPU for training and 1 for its decoder tasks (which run
                 single-threaded, as Ray sets OMP_NUM_THREADS from the request)
    ray_2        the demo's own resources (0.5 + 0.5 CPU a trial): both trials at once
    ray_fixed    Ray's fixed cost alone: the embedded Ray started as the sweep starts it, and
                 Tune running two trials with ray_1's bundles that import what the trainable
                 imports (torch, raycompress) and report once — no training

`--epochs` sets the demo's epoch count in every case: the overhead that grows with the work
is the difference between two epoch counts; the fixed part does not grow.

Goal: Ray overhead ≤ 10 % with one worker (ray_1 / in_process ≤ 1.1); the speed-up
of two workers on two cores is reported (in_process / ray_2). Each case runs in a fresh
subprocess; wall times include Ray's start-up and shut-down.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "sweep_overhead.json"
CASES = ("in_process", "ray_1", "ray_2", "ray_fixed")


def in_process(epochs: int) -> None:
    import torch

    from raycompress.definition import expand, load_sweep
    from raycompress.training import Run
    from raycompress.trial import Trial

    torch.set_num_threads(1)
    for config in expand(load_sweep("demo", {"epochs": epochs}).param_space):
        trial = Trial.from_config(config)
        data, model = trial.build()
        run = Run(model, data, trial.train, trial.collapse, trial.vinfo)
        while run.step().stop_reason is None:
            pass


def with_ray(one_worker: bool, epochs: int) -> None:
    from raycompress.definition import Resources, load_sweep
    from raycompress.launch import launch
    from raycompress.sweep import parser

    sweep = load_sweep("demo", {"epochs": epochs})
    extra = ["--max-concurrent", "1"] if one_worker else []
    if one_worker:
        sweep = replace(sweep, resources=Resources(trial_cpu=1, decoder_cpu=1))
    with tempfile.TemporaryDirectory() as storage:
        args = parser().parse_args(["demo", "--storage-path", storage, "--num-cpus", "2", *extra])
        assert launch(sweep, args) == 0


def _imports_and_reports(config: dict) -> None:
    from ray import tune

    import raycompress.trainable  # noqa: F401  (torch and the library, as a real trial)

    tune.report({"epoch": 1})


def ray_fixed() -> None:
    import ray
    from ray import tune

    from raycompress.launch import OBJECT_STORE_BYTES

    ray.init(
        address="local", num_cpus=2, include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
    )  # fmt: skip
    bundles = tune.PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}])
    with tempfile.TemporaryDirectory() as storage:
        tune.Tuner(
            tune.with_resources(_imports_and_reports, bundles),
            param_space={"trial": tune.grid_search([0, 1])},
            tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=storage, name="fixed"),
        ).fit()
    ray.shutdown()


def run_case(case: str, epochs: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--case", case, "--epochs", str(epochs)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--case", choices=CASES, help="internal: run one case in this process")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cases", nargs="+", choices=CASES, default=CASES, help="which cases to run")
    p.add_argument("--epochs", type=int, default=3, help="the demo's epochs (default 3)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if args.case:
        if args.case == "in_process":
            in_process(args.epochs)
        elif args.case == "ray_fixed":
            ray_fixed()
        else:
            with_ray(one_worker=args.case == "ray_1", epochs=args.epochs)
        return
    times: dict[str, list[float]] = {case: [] for case in args.cases}
    for round_ in range(args.repeats):
        for case in args.cases:
            times[case].append(run_case(case, args.epochs))
            print(f"round {round_ + 1}: {case:10s} {times[case][-1]:7.1f} s", flush=True)
    median = {case: statistics.median(t) for case, t in times.items()}
    summary: dict = {"epochs": args.epochs, "seconds": times, "median_s": median}
    if {"in_process", "ray_1"} <= median.keys():
        summary["ray_1_over_in_process"] = median["ray_1"] / median["in_process"]
        summary["overhead_s"] = median["ray_1"] - median["in_process"]
    if {"in_process", "ray_2"} <= median.keys():
        summary["speedup_ray_2_vs_in_process"] = median["in_process"] / median["ray_2"]
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
