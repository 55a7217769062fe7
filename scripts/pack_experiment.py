"""An experiment folder packed small: what reading its results and resuming it need.

    python scripts/pack_experiment.py EXPERIMENT OUT.tar.xz [--also FILE ...]
    tar -xJf OUT.tar.xz -C STORAGE_PATH        (back: then `--resume` as before)

Kept: the folder's own files (Tune's experiment state, the sweep's description, the
consolidated rows); in each trial folder Tune's `params.json`/`params.pkl`, `result.json`,
`progress.csv` and error file, and its newest checkpoint — with the run's weights
(`record.STATE_FILE`) only for a trial Tune has not finished, which a resume continues from.
Left out: older checkpoints and TensorBoard event files; a trial folder not started is kept
empty. `--also`: files beside the folder
(the sweep driver's logs, whose start and stop times `benchmarks/sweep_time.py` reads), stored
under their names at the archive's top.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raycompress import record  # noqa: E402
from raycompress.launch import TUNE_ERROR_FILE  # noqa: E402

TRIAL_FILES = (
    record.PARAMS_FILE, "params.pkl", record.RESULT_FILE, "progress.csv", TUNE_ERROR_FILE,
)  # fmt: skip
FINISHED = "TERMINATED"  # Tune's status of a trial that ended by itself
TRIES = 5  # readings of a running experiment before giving up


def finished_trials(experiment: Path) -> set[str]:
    """The folder names of the trials the newest experiment state marks finished."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    if not states:
        return set()
    trials = (json.loads(entry[0]) for entry in json.loads(states[-1].read_text())["trial_data"])
    return {t["relative_logdir"] for t in trials if t["status"] == FINISHED}


def members(experiment: Path) -> list[Path]:
    """The files and trial folders of `experiment` the archive keeps, relative to it."""
    finished = finished_trials(experiment)
    # every trial folder, even one not started: Tune looks for each one's results on resume
    kept = [p.relative_to(experiment) for p in experiment.iterdir()]
    for trial in sorted(p for p in experiment.iterdir() if (p / record.PARAMS_FILE).exists()):
        kept += [(trial / n).relative_to(experiment) for n in TRIAL_FILES if (trial / n).exists()]
        checkpoints = sorted(trial.glob("checkpoint_*"))
        if not checkpoints:
            continue
        for file in sorted(checkpoints[-1].iterdir()):
            if file.name != record.STATE_FILE or trial.name not in finished:
                kept.append(file.relative_to(experiment))
    return sorted(kept)


def snapshot(experiment: Path, tries: int = TRIES) -> dict[Path, bytes | None]:
    """`members` and their bytes (None: a folder) as one listing found them. A running sweep
    replaces checkpoints (Tune keeps the newest few): a file gone before it was read means
    that listing is stale, so the whole experiment is listed and read again."""
    for _ in range(tries):
        try:
            return {m: None if (experiment / m).is_dir() else (experiment / m).read_bytes()
                    for m in members(experiment)}  # fmt: skip
        except FileNotFoundError:
            continue
    raise RuntimeError(f"{experiment} changed under each of {tries} readings: pause the sweep")


def pack(experiment: Path, out: Path, also: list[Path]) -> list[str]:
    """Write the archive: `snapshot` under the folder's name, `also` at the top. Its names."""
    files = {f"{experiment.name}/{m}": data for m, data in snapshot(experiment).items()}
    files |= {file.name: file.read_bytes() for file in also}
    now = time.time()
    with tarfile.open(out, "w:xz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = now, 0o755 if data is None else 0o644
            if data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return list(files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("experiment", type=Path, help="the experiment folder (STORAGE_PATH/NAME)")
    p.add_argument("out", type=Path, help="the archive to write (.tar.xz)")
    p.add_argument("--also", type=Path, nargs="*", default=[], help="files to add at the top")
    args = p.parse_args(argv)
    for path in (args.experiment / record.SWEEP_FILE, *args.also):
        if not path.is_file():
            print(f"error: {path} is not a file: give an experiment folder and files that exist",
                  file=sys.stderr)  # fmt: skip
            return 2
    names = pack(args.experiment, args.out, args.also)
    print(f"{args.out}: {len(names)} files, {args.out.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
