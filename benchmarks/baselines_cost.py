"""What the generalisation baselines cost a run, in epochs: `baselines` on against off.

    python benchmarks/baselines_cost.py [--models mnistnet cifarnet] [--repeats 3]

Real Fashion-MNIST (10 000 training images, the whole test split), the thesis' protocol
capped at 2 epochs so that training stops at epoch 2, neural collapse every epoch, no
𝒱-information. Each repeat trains the same seed twice, baselines off and on, alternating;
the baselines' cost is the stop epoch's seconds with them less its seconds without, divided by
the median epoch without. Off (the default outside the `generalisation` sweep) a run pays
nothing for them by construction: the measure is not called. Writes
benchmarks/out/baselines_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raycompress.training import Run  # noqa: E402
from raycompress.trial import Trial  # noqa: E402


def epoch_seconds(trial: Trial, baselines: bool) -> tuple[list[float], int]:
    """Seconds of each epoch of one run, and how many baselines it recorded."""
    data, model = trial.build()
    run = Run(model, data, trial.train, trial.collapse, baselines=baselines)
    seconds = []
    while True:
        start = time.perf_counter()
        record = run.step()
        seconds.append(time.perf_counter() - start)
        if record.stop_reason:
            return seconds, len(record.baselines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["mnistnet"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared/data"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/baselines_cost.json")
    args = p.parse_args()
    result = {}
    for name in args.models:
        settings = {"dataset": "fashion-mnist", "model": name, "data_dir": args.data_dir,
                    "download": False, "train_size": 10_000, "epochs": 2,
                    "vinfo_schedule": "none"}  # fmt: skip
        trial = Trial.from_config(settings)
        runs: dict[str, list[list[float]]] = {"off": [], "on": []}
        for _ in range(args.repeats):
            for state in ("off", "on"):
                seconds, recorded = epoch_seconds(trial, state == "on")
                assert (recorded > 0) == (state == "on"), f"baselines {state}: {recorded} recorded"
                runs[state].append(seconds)
                print(
                    f"{name} baselines {state}: epochs {', '.join(f'{s:.1f}' for s in seconds)} s"
                )
        epoch = statistics.median(s for run in runs["off"] for s in run)
        extra = statistics.median(
            on[-1] - off[-1] for on, off in zip(runs["on"], runs["off"], strict=True)
        )
        result[name] = {
            "epoch_s": runs, "median_epoch_s": epoch, "baselines_s": extra,
            "baselines_epochs": extra / epoch,
        }  # fmt: skip
        print(f"{name}: baselines {extra:.1f} s = {extra / epoch:.2f} epoch (epoch {epoch:.1f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
