"""Run a sweep as Ray Tune trials: `python -m raycompress.sweep NAME|PATH`.

    python -m raycompress.sweep --list                  the catalogue
    python -m raycompress.sweep demo --dry-run          each trial's settings and resources
    python -m raycompress.sweep thesis                  run on an embedded local Ray
    python -m raycompress.sweep thesis --address auto   run on the Ray cluster of this node
    python -m raycompress.sweep thesis --resume         continue an interrupted sweep

Exit status: 0 when every trial finished, 2 for a usage error (one line on stderr), 1 when a
trial failed (with a summary of which and why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from raycompress import compute, storage
from raycompress.definition import (
    Sweep,
    UsageError,
    catalogue,
    expand,
    is_sampled,
    load_sweep,
    sampled,
    trial_configs,
)
from raycompress.launch import launch
from raycompress.trial import Trial


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m raycompress.sweep", description=__doc__.split("\n")[0]
    )
    p.add_argument("sweep", nargs="?", help="a catalogue name (see --list) or a path to a .py file")
    p.add_argument("--list", action="store_true", help="list the shipped sweeps and exit")
    p.add_argument("--dry-run", action="store_true", help="print the trials; start nothing")
    p.add_argument("--address", help="join this Ray cluster (default: an embedded local Ray)")
    p.add_argument(
        "--storage-path", default=str(Path.home() / "raycompress_results"),
        help="a local folder, or object storage: s3://BUCKET/PREFIX, gs://BUCKET/PREFIX",
    )  # fmt: skip
    p.add_argument("--name", help="experiment folder name (default: the sweep's name)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    p.add_argument("--data-dir", help="folder with (or for) the torchvision files")
    p.add_argument("--epochs", type=int, help="override every trial's epoch cap")
    p.add_argument("--max-concurrent", type=int, default=0, help="0: as many as fit")
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded local Ray")
    p.add_argument(
        "--num-gpus", type=int,
        help="GPUs of the embedded local Ray (default: those it finds; more are logical only)",
    )  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a trial setting (JSON values), e.g. --set lr=0.001")  # fmt: skip
    return p


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = parse_value(value)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.data_dir is not None:  # absolute: trials run in folders of their own
        overrides["data_dir"] = str(Path(args.data_dir).expanduser().resolve())
    return overrides


def dry_run(sweep: Sweep) -> None:
    configs = expand(sweep.param_space)
    print(f"sweep {sweep.name}: {sweep.description}")
    print(f"{len(configs)} trial(s); each reserves bundles {sweep.resources.bundles()}")
    for i, config in enumerate(configs):
        resolved = sampled(config)  # derived values shown as they will be; sampled as spaces
        shown = {k: repr(v) if is_sampled(v) else resolved[k] for k, v in config.items()}
        print(f"  trial {i}: {json.dumps(shown, default=str)}")


def check_trials(sweep: Sweep, remote: bool) -> None:
    """Fail now, before Ray starts, when a trial cannot run here: its dataset is missing and
    may not be downloaded, or its precision is not supported by this machine's device.

    On a cluster (`remote`) the data and the devices are the other nodes': only folders that
    exist on this machine are checked there, and the precision is checked by each trial."""
    gpu = sweep.resources.trial_gpu > 0 and torch.cuda.is_available()
    for config in trial_configs(sweep):
        trial = Trial.from_config(config, sweep.models)
        try:
            if not remote:
                compute.check(trial.train.compute, "cuda" if gpu else "cpu")
            if not remote or trial.data_dir().is_dir():
                trial.check_data()
        except (FileNotFoundError, ValueError) as err:
            raise UsageError(str(err)) from None


def check_local_ray(args: argparse.Namespace) -> None:
    """--num-cpus and --num-gpus size the embedded Ray: non-negative, and not for a cluster."""
    for flag, value in (("--num-cpus", args.num_cpus), ("--num-gpus", args.num_gpus)):
        if value is not None and args.address:
            raise UsageError(f"{flag} sizes the embedded local Ray; drop it with --address")
        if value is not None and value < 0:
            raise UsageError(f"{flag} must be 0 or more, got {value}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.list:
            for name, description in catalogue().items():
                print(f"{name:14s} {description}")
            return 0
        if not args.sweep:
            raise UsageError("name a sweep (see --list) or pass a path to a sweep file")
        sweep = load_sweep(args.sweep, overrides_from(args))
        if args.dry_run:
            dry_run(sweep)
            return 0
        check_local_ray(args)
        storage.check(args.storage_path)
        check_trials(sweep, remote=bool(args.address))
        return launch(sweep, args)
    except (UsageError, storage.StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
