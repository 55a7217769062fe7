"""A sweep definition: a Python file with a docstring, a PARAM_SPACE, and optional RESOURCES
and MODELS (networks of one's own: name → builder(input_shape, num_classes) → blocks).

    load_sweep(name_or_path, overrides)  the catalogue's sweep or a file, validated → Sweep
    expand(space)                        one configuration per combination of grid values
    axes(space)                          the settings the sweep varies

PARAM_SPACE maps trial settings (`trial.SETTINGS`) to constants or Ray Tune search spaces
(grids combine as a product; sampled spaces are drawn per trial; `tune.sample_from` values
derive from the other settings). Every trial's settings are validated here, before Ray starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import pkgutil
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ray.tune.search.sample import Function

from raycompress import sweeps, torchvision_models
from raycompress.models import THESIS_MODELS, Builder
from raycompress.trial import Trial


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
    models: dict[str, Builder] = field(default_factory=dict)  # its own networks (MODELS)


def catalogue() -> dict[str, str]:
    """Shipped sweep names → one-line descriptions."""
    names = [m.name for m in pkgutil.iter_modules(sweeps.__path__)]
    return {name: _describe(importlib.import_module(f"{sweeps.__name__}.{name}")) for name in names}


def _describe(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().split("\n")[0]


def _import_file(path: Path) -> ModuleType:
    """Import a sweep file; any error in it becomes one line naming the file and the line."""
    spec = importlib.util.spec_from_file_location(f"user_sweep_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise UsageError(f"{path}:{err.lineno}: syntax error: {err.msg}") from None
    except Exception as err:
        lines = [
            f.lineno for f in traceback.extract_tb(err.__traceback__) if f.filename == str(path)
        ]
        where = f"{path}:{lines[-1]}" if lines else str(path)
        raise UsageError(f"{where}: {type(err).__name__}: {err}") from None
    return module


def load_sweep(name_or_path: str, overrides: dict[str, Any]) -> Sweep:
    """Import a shipped sweep by name or a sweep file by path, apply overrides, validate."""
    path = Path(name_or_path)
    if name_or_path in catalogue():
        module = importlib.import_module(f"{sweeps.__name__}.{name_or_path}")
    elif path.suffix == ".py" and path.is_file():
        module = _import_file(path)
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
    models = getattr(module, "MODELS", {})
    _check_models(name_or_path, models)
    sweep = Sweep(path.stem, _describe(module), {**space, **overrides}, resources, dict(models))
    for config in trial_configs(sweep):
        try:
            Trial.from_config(config, sweep.models)
        except ValueError as err:
            raise UsageError(f"sweep {name_or_path!r}: {err}") from None
    return sweep


def _check_models(name: str, models: Any) -> None:
    """MODELS maps new model names to builders (see `models.Builder`)."""
    if not isinstance(models, dict) or not all(callable(b) for b in models.values()):
        raise UsageError(f"sweep {name!r}: MODELS must map model names to builder functions")
    taken = [m for m in models if m in THESIS_MODELS or m.startswith(torchvision_models.PREFIX)]
    if taken:
        raise UsageError(f"sweep {name!r}: MODELS may not redefine the built-in model {taken[0]!r}")


def is_sampled(value: Any) -> bool:
    """A search space Tune draws a value from per trial (not a grid, not `tune.sample_from`,
    whose value derives from the other settings)."""
    return hasattr(value, "sample") and not isinstance(value, Function)


def expand(space: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid of a param space: one configuration per combination of grid_search values
    (other search spaces stay as they are; Tune samples them per trial)."""
    grids = {
        k: v["grid_search"] for k, v in space.items() if isinstance(v, dict) and "grid_search" in v
    }
    combos = itertools.product(*grids.values()) if grids else [()]
    return [{**space, **dict(zip(grids, combo, strict=True))} for combo in combos]


def axes(space: dict[str, Any]) -> list[str]:
    """The settings a sweep varies: grids of several values and sampled search spaces."""
    return sorted(
        key
        for key, value in space.items()
        if is_sampled(value) or (isinstance(value, dict) and len(value.get("grid_search", ())) > 1)
    )


def sampled(config: dict[str, Any]) -> dict[str, Any]:
    """One configuration with its search spaces drawn once and its `tune.sample_from` values
    computed from the others: what a trial could get, to validate and to show."""
    drawn = {k: v.sample() if is_sampled(v) else v for k, v in config.items()}
    return {k: v.sample(config=drawn) if isinstance(v, Function) else v for k, v in drawn.items()}


def trial_configs(sweep: Sweep) -> list[dict[str, Any]]:
    """A sample of every grid point's settings, as a trial would get them."""
    return [sampled(config) for config in expand(sweep.param_space)]
