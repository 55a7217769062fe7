"""The measures of compression, pure functions over tensors (no Ray, no files).

They return the typed results of `raycompress.schema` (`CollapseStats`, `CollapseReport`,
`VInfoResult`); turning those into files and rows is the record's and the results' business.

Geometric — neural collapse:
    nc          the statistics as formulas of class means and scatters (tr(Σ_W Σ_B⁺), …)
    accumulate  streaming accumulators for the passes over a network, kept apart from `nc`
    collapse    the passes over a network, the choice of path, in-memory `nc_trace`/`nc_stats`

Information-theoretic — 𝒱-information:
    vinfo       sufficiency and minimality of one layer on one split, in bits
    decoders    K fresh decoders trained at once on cached features, each stopping on its own,
                scored at every budget along the way
    affine      the affine decoder's optimum (the last hidden layer): a convex problem

Against them — the generalisation-measure literature's baselines:
    baselines   weight norms, distance from initialisation, spectral product, path norm,
                margin and PAC-Bayes flatness of a trained network
"""

from raycompress.metrics.accumulate import ClassSums, WithinClassPass, WithinScatter
from raycompress.metrics.collapse import (
    CollapseConfig,
    measure_collapse,
    nc_stats,
    nc_trace,
)
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.nc import (
    BetweenClass,
    ClassMeans,
    DegenerateBetweenClassWarning,
    between_class,
)
from raycompress.metrics.vinfo import VInfoConfig, measure_vinfo
from raycompress.schema import CollapseReport, CollapseStats, VInfoResult

__all__ = [
    "BetweenClass",
    "ClassMeans",
    "ClassSums",
    "CollapseConfig",
    "CollapseReport",
    "CollapseStats",
    "DecoderConfig",
    "DegenerateBetweenClassWarning",
    "VInfoConfig",
    "VInfoResult",
    "WithinClassPass",
    "WithinScatter",
    "between_class",
    "measure_collapse",
    "measure_vinfo",
    "nc_stats",
    "nc_trace",
]
