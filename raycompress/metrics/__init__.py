"""Compression metrics: neural collapse (geometric). See `nc` for the formulas."""

from raycompress.metrics.accumulate import ClassSums, WithinClassPass, WithinScatter
from raycompress.metrics.collapse import (
    CollapseConfig,
    CollapseReport,
    measure_collapse,
    nc_stats,
    nc_trace,
)
from raycompress.metrics.nc import (
    BetweenClass,
    ClassMeans,
    CollapseStats,
    DegenerateBetweenClassWarning,
    between_class,
)

__all__ = [
    "BetweenClass",
    "ClassMeans",
    "ClassSums",
    "CollapseConfig",
    "CollapseReport",
    "CollapseStats",
    "DegenerateBetweenClassWarning",
    "WithinClassPass",
    "WithinScatter",
    "between_class",
    "measure_collapse",
    "nc_stats",
    "nc_trace",
]
