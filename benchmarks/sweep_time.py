"""Where a sweep's time went: each trial's seconds, and the share of them in the epochs that
measured 𝒱-information (those epochs also hold that epoch's training, NC and any baselines,
so the share is an upper bound on 𝒱-information's).

    python benchmarks/sweep_time.py RESULTS [--driver-log LOG ...] [--by AXIS ...] [--out FILE.json]

RESULTS is an experiment folder. Each trial's seconds are Tune's `time_this_iter_s` of its
`record.RESULT_FILE`, one per training iteration (the last report of an iteration that was
run twice, after a restart). `--driver-log`: the sweep driver's console logs, one per start;
the last "Total running time" of each is that start's wall time, summed. `--by`: the median
seconds also per setting of these trial settings (read from each trial's params.json).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

from raycompress import record
from raycompress.results import trial_folders
from raycompress.schema import Quantity

RUNNING = re.compile(r"Total running time: (?:(\d+)hr )?(?:(\d+)min )?(\d+)s")


def _has_vinfo(report: dict) -> bool:
    """Whether an epoch's report holds a 𝒱-information value (the others carry its keys as
    NaN: Tune's columns are the same every epoch)."""
    return any(
        f"/{Quantity.SUFFICIENCY}/" in key and isinstance(value, float) and math.isfinite(value)
        for key, value in report.items()
    )


def trial_seconds(trial: Path) -> tuple[float, float]:
    """(every iteration's seconds, those of the iterations that measured 𝒱-information)."""
    iterations: dict[int, tuple[float, bool]] = {}
    for line in (trial / record.RESULT_FILE).read_text().splitlines():
        if line.strip():
            report = json.loads(line)
            iterations[report["training_iteration"]] = (
                report["time_this_iter_s"], _has_vinfo(report)
            )  # fmt: skip
    total = sum(seconds for seconds, _ in iterations.values())
    return total, sum(seconds for seconds, vinfo in iterations.values() if vinfo)


def driver_seconds(log: Path) -> float:
    """The last "Total running time" a Tune driver printed."""
    found = RUNNING.findall(log.read_text(errors="replace"))
    if not found:
        raise SystemExit(f"{log}: no 'Total running time' line; pass the sweep driver's log")
    hours, minutes, seconds = (int(part or 0) for part in found[-1])
    return 3600 * hours + 60 * minutes + seconds


def by_setting(trials: list[Path], seconds: list[tuple[float, float]], axes: list[str]) -> dict:
    """Per setting of `axes`: its trials and their median seconds, in all and in the epochs
    that measured 𝒱-information."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for trial, pair in zip(trials, seconds, strict=True):
        params = json.loads((trial / "params.json").read_text())
        key = " ".join(f"{axis}={json.dumps(params.get(axis))}" for axis in axes)
        groups.setdefault(key, []).append(pair)
    return {
        key: {
            "trials": len(pairs),
            "median_trial_seconds": round(statistics.median(s for s, _ in pairs), 1),
            "median_vinfo_epoch_seconds": round(statistics.median(v for _, v in pairs), 1),
        }
        for key, pairs in sorted(groups.items())
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--driver-log", type=Path, nargs="*", default=[])
    p.add_argument("--by", nargs="*", default=[], help="trial settings to give medians per value")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    trials = [t for t in trial_folders(args.results) if (t / record.RESULT_FILE).exists()]
    if not trials:
        raise SystemExit(f"{args.results}: no trial with a {record.RESULT_FILE}")
    seconds = [trial_seconds(t) for t in trials]
    total, vinfo = sum(s for s, _ in seconds), sum(v for _, v in seconds)
    figures = {
        "trials": len(trials),
        "trial_seconds": round(total, 1),
        "median_trial_seconds": round(statistics.median(s for s, _ in seconds), 1),
        "vinfo_epoch_seconds": round(vinfo, 1),
        "vinfo_epoch_share": round(vinfo / total, 3),
        "driver_wall_seconds": sum(driver_seconds(log) for log in args.driver_log) or None,
        **({"by": by_setting(trials, seconds, args.by)} if args.by else {}),
    }
    print(json.dumps(figures, indent=1))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
