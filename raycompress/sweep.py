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
import importlib
import importlib.util
import itertools
import json
import pkgutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ray.tune.search.sample import Function

from raycompress import sweeps
from raycompress.trial import Trial

SWEEP_FILE = "raycompress_sweep.json"


class UsageError(ValueError):
    """Bad input from the command line or a sweep file: reported in one line, exit status 2."""


@dataclass(frozen=True)
class Resources:
    """What a trial asks of Ray: one bundle for the training, `decoder_bundles` for its
    𝒱-information tasks (reserved with the trial, so busy trials cannot starve their own
    tasks), GPU fractions mapped to CPUs where the cluster has no GPU."""

    trial_cpu: float = 1
    trial_gpu: float = 0
    decoder_cpu: float = 1
    decoder_gpu: float = 0
    decoder_bundles: int = 1
    decoder_retries: int = 2
    trial_retries: int = 2

    def bundles(self) -> list[dict[str, float]]:
        def bundle(cpu: float, gpu: float) -> dict[str, float]:
            return {"CPU": cpu, **({"GPU": gpu} if gpu else {})}

        return [bundle(self.trial_cpu, self.trial_gpu)] + self.decoder_bundles * [
            bundle(self.decoder_cpu, self.decoder_gpu)
        ]

    def fit_to(self, cluster: dict[str, float]) -> tuple[Resources, list[str]]:
        """These resources on a cluster with `cluster` resources, and notes on what changed."""
        notes = []
        fitted = self
        if cluster.get("GPU", 0) == 0 and (self.trial_gpu or self.decoder_gpu):
            fitted = Resources(**{**asdict(fitted), "trial_gpu": 0, "decoder_gpu": 0})
            notes.append("the cluster has no GPU: GPU requests run on CPUs instead")
        total = sum(b["CPU"] for b in fitted.bundles())
        if total > cluster.get("CPU", 0):
            raise UsageError(
                f"one trial needs {total:g} CPUs but the cluster has {cluster.get('CPU', 0):g}: "
                "lower trial_cpu, decoder_cpu or decoder_bundles"
            )
        return fitted, notes


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    param_space: dict[str, Any]
    resources: Resources


def catalogue() -> dict[str, str]:
    """Shipped sweep names → one-line descriptions."""
    names = [m.name for m in pkgutil.iter_modules(sweeps.__path__)]
    return {name: _describe(importlib.import_module(f"{sweeps.__name__}.{name}")) for name in names}


def _describe(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().split("\n")[0]


def load_sweep(name_or_path: str, overrides: dict[str, Any]) -> Sweep:
    """Import a shipped sweep by name or a sweep file by path, apply overrides, validate."""
    path = Path(name_or_path)
    if name_or_path in catalogue():
        module = importlib.import_module(f"{sweeps.__name__}.{name_or_path}")
    elif path.suffix == ".py" and path.is_file():
        spec = importlib.util.spec_from_file_location(f"user_sweep_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        raise UsageError(
            f"no sweep named {name_or_path!r} and no such .py file: choose one of "
            f"{', '.join(catalogue())} or pass a path (see --list)"
        )
    space = getattr(module, "PARAM_SPACE", None)
    if not isinstance(space, dict):
        raise UsageError(f"sweep {name_or_path!r} defines no PARAM_SPACE dictionary")
    try:
        resources = Resources(**getattr(module, "RESOURCES", {}))
    except TypeError as err:
        raise UsageError(f"sweep {name_or_path!r} has bad RESOURCES: {err}") from None
    sweep = Sweep(path.stem, _describe(module), {**space, **overrides}, resources)
    for config in expand(sweep.param_space):
        try:
            Trial.from_config(_sampled(config))
        except ValueError as err:
            raise UsageError(f"sweep {name_or_path!r}: {err}") from None
    return sweep


def expand(space: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid of a param space: one configuration per combination of grid_search values
    (other search spaces stay as they are; Tune samples them per trial)."""
    grids = {
        k: v["grid_search"] for k, v in space.items() if isinstance(v, dict) and "grid_search" in v
    }
    combos = itertools.product(*grids.values()) if grids else [()]
    return [{**space, **dict(zip(grids, combo, strict=True))} for combo in combos]


def axes(space: dict[str, Any]) -> list[str]:
    """The settings a sweep varies: grids of several values and sampled search spaces
    (not `tune.sample_from` values, which derive from the other settings)."""
    return sorted(
        key
        for key, value in space.items()
        if (hasattr(value, "sample") and not isinstance(value, Function))
        or (isinstance(value, dict) and len(value.get("grid_search", ())) > 1)
    )


def _sampled(config: dict[str, Any]) -> dict[str, Any]:
    """Replace Tune search spaces by one sample, to validate the settings' types and names;
    `tune.sample_from(lambda config: ...)` values are computed from the sampled others."""
    drawn = {
        k: v.sample() if hasattr(v, "sample") and not isinstance(v, Function) else v
        for k, v in config.items()
    }
    return {k: v.sample(config=drawn) if isinstance(v, Function) else v for k, v in drawn.items()}


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
    p.add_argument("--storage-path", default=str(Path.home() / "raycompress_results"))
    p.add_argument("--name", help="experiment folder name (default: the sweep's name)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    p.add_argument("--data-dir", help="folder with (or for) the torchvision files")
    p.add_argument("--epochs", type=int, help="override every trial's epoch cap")
    p.add_argument("--max-concurrent", type=int, default=0, help="0: as many as fit")
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded local Ray")
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
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    return overrides


def dry_run(sweep: Sweep) -> None:
    configs = expand(sweep.param_space)
    print(f"sweep {sweep.name}: {sweep.description}")
    print(f"{len(configs)} trial(s); each reserves bundles {sweep.resources.bundles()}")
    for i, config in enumerate(configs):
        resolved = _sampled(config)  # derived values shown as they will be; sampled as spaces
        shown = {
            k: repr(v) if hasattr(v, "sample") and not isinstance(v, Function) else resolved[k]
            for k, v in config.items()
        }
        print(f"  trial {i}: {json.dumps(shown, default=str)}")


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
        from raycompress.launch import launch

        return launch(sweep, args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
