"""Neural-collapse measures: pure functions of class statistics (no passes, no models).

Notation (thesis §1.2 and §2.1, DESIGN.md): N samples, C classes, n_c samples of class c,
D = dim h (flattened).

    μ_c = s_c / n_c                     class means                      (C, D)
    μ̄   = Σ_c s_c / N                   global mean                      (D,)
    Σ_B = (1/N) Σ_c n_c (μ_c − μ̄)(μ_c − μ̄)ᵀ = A Aᵀ,  A = [√(n_c/N) (μ_c − μ̄)]_c   (D, C)
    Σ_W = (1/N) Σ_n (h_n − μ_{y_n})(h_n − μ_{y_n})ᵀ                     (D, D)

The pseudo-inverse goes through the thin SVD A = U S Vᵀ (equivalent to the eigendecomposition
AᵀA = V S² Vᵀ of DESIGN.md, without squaring the condition number):

    Σ_B⁺ = U_r S_r⁻² U_rᵀ,   so   tr(Σ_W Σ_B⁺) = tr(Wᵀ Σ_W W) = (1/N) Σ_n ‖(h_n − μ_{y_n}) W‖²

with the whitener W = U_r S_r⁻¹ (D, r), r = rank Σ_B ≤ C − 1. Nothing of size D × D is formed.
Every quantity here is float64.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from raycompress.schema import CollapseStats


class DegenerateBetweenClassWarning(UserWarning):
    """Σ_B has rank 0 (all class means coincide): tr(Σ_W Σ_B⁺) is 0 by the pseudo-inverse."""


@dataclass(frozen=True)
class ClassMeans:
    """First-pass statistics: counts n_c (C,) int64 and class means μ_c (C, D) float64."""

    counts: Tensor
    means: Tensor

    @property
    def num_samples(self) -> int:
        return int(self.counts.sum())

    @property
    def global_mean(self) -> Tensor:
        """μ̄ = Σ_c n_c μ_c / N  (D,)."""
        return (self.counts.to(self.means) @ self.means) / self.num_samples

    @property
    def centred(self) -> Tensor:
        """M̃ = [μ_c − μ̄]_c  (C, D)."""
        return self.means - self.global_mean


@dataclass(frozen=True)
class BetweenClass:
    """Σ_B through the SVD of A: the whitener W = U_r S_r⁻¹ and the rank decision behind it.

    eigenvalues: the eigenvalues of Σ_B (S², descending, min(D, C) of them); rank: how many
    exceed eig_tol, the absolute tolerance used (= (rtol · scale)², see `between_class`).
    """

    whitener: Tensor  # (D, r)
    eigenvalues: Tensor  # (min(D, C),)
    rank: int
    eig_tol: float

    @property
    def trace(self) -> float:
        """tr(Σ_B) = ‖A‖_F²."""
        return float(self.eigenvalues.sum())


def between_class(stats: ClassMeans, rtol: float | None = None) -> BetweenClass:
    """Decompose Σ_B = A Aᵀ; keep singular values of A above rtol · scale.

    scale = max(σ_max(A), ‖[√(n_c/N) μ_c]_c‖_F): the second term is the size of the uncentred
    means, whose rounding error is the noise floor of A — without it, class means that are equal
    up to rounding would give a "rank" of pure noise. rtol defaults to max(D, C) · eps(float64),
    NumPy's matrix_rank convention.
    """
    counts = stats.counts.to(stats.means)
    num_classes, dim = stats.means.shape
    weights = (counts / counts.sum()).sqrt()[:, None]  # (C, 1)
    a = (weights * stats.centred).T  # (D, C)
    u, s, _ = torch.linalg.svd(a, full_matrices=False)  # u (D, k), s (k,), k = min(D, C)
    if rtol is None:
        rtol = max(dim, num_classes) * torch.finfo(torch.float64).eps
    scale = max(float(s[0]), float(torch.linalg.norm(weights * stats.means)))
    tol = rtol * scale
    rank = int((s > tol).sum())
    if rank == 0:
        warnings.warn(
            "all class means coincide (rank Σ_B = 0): tr(Σ_W Σ_B⁺) is reported as 0 by the "
            "pseudo-inverse convention, which here does not mean collapse",
            DegenerateBetweenClassWarning,
            stacklevel=2,
        )
    return BetweenClass(
        whitener=u[:, :rank] / s[:rank], eigenvalues=s**2, rank=rank, eig_tol=tol**2
    )


def nc_trace_from_covariance(within_cov: Tensor, between: BetweenClass) -> float:
    """tr(Σ_W Σ_B⁺) = tr(Wᵀ Σ_W W) from a dense Σ_W (D, D) — the single-pass scatter path."""
    w = between.whitener
    return float(torch.einsum("dr,de,er->", w, within_cov, w))


def cdnv(stats: ClassMeans, class_variances: Tensor) -> float:
    """Class-distance normalised variance (Galanti et al. 2022), averaged over class pairs.

    CDNV(c, c') = (σ²_c + σ²_c') / (2 ‖μ_c − μ_c'‖²),  σ²_c = (1/n_c) Σ_{y_n=c} ‖h_n − μ_c‖².
    """
    c = stats.means.shape[0]
    i, j = torch.triu_indices(c, c, offset=1)
    dist2 = (stats.means[i] - stats.means[j]).pow(2).sum(1)
    return float(((class_variances[i] + class_variances[j]) / (2 * dist2)).mean())


def equinorm(stats: ClassMeans) -> float:
    """NC2 equinorm: std_c ‖μ_c − μ̄‖ / mean_c ‖μ_c − μ̄‖ (population std; 0 = equal norms)."""
    norms = stats.centred.norm(dim=1)
    return float(norms.std(correction=0) / norms.mean())


def equiangularity(stats: ClassMeans) -> float:
    """NC2 equiangularity: mean over class pairs of |cos(μ̃_c, μ̃_c') + 1/(C−1)| (0 = simplex ETF)."""
    centred = stats.centred
    c = centred.shape[0]
    unit = centred / centred.norm(dim=1, keepdim=True)
    i, j = torch.triu_indices(c, c, offset=1)
    cos = (unit[i] * unit[j]).sum(1)
    return float((cos + 1 / (c - 1)).abs().mean())


def self_duality(stats: ClassMeans, classifier_weight: Tensor) -> float:
    """NC3 (Papyan et al. 2020): ‖W/‖W‖_F − M̃/‖M̃‖_F‖²_F, W the classifier weights (C, D)."""
    w = classifier_weight.to(torch.float64)
    m = stats.centred
    return float((w / w.norm() - m / m.norm()).pow(2).sum())


def collapse_stats(
    stats: ClassMeans,
    between: BetweenClass,
    nc_trace: float,
    class_sq_dist: Tensor,
    *,
    path: str,
    ncc_agreement: float = math.nan,
    classifier_weight: Tensor | None = None,
) -> CollapseStats:
    """Assemble the statistics; class_sq_dist[c] = Σ_{y_n=c} ‖h_n − μ_c‖² (C,).

    The class-pair statistics (CDNV, NC2, NC3) use the classes present in the split.
    """
    n = stats.num_samples
    present = stats.counts > 0
    seen = ClassMeans(stats.counts[present], stats.means[present])
    pairs = int(present.sum()) >= 2
    weight = None if classifier_weight is None else classifier_weight[present]
    return CollapseStats(
        nc_trace=nc_trace,
        nc_rank=between.rank,
        nc_eig_tol=between.eig_tol,
        nc_within_trace=float(class_sq_dist.sum()) / n,
        nc_between_trace=between.trace,
        nc_cdnv=cdnv(seen, class_sq_dist[present] / seen.counts) if pairs else math.nan,
        nc_equinorm=equinorm(seen) if pairs else math.nan,
        nc_equiangularity=equiangularity(seen) if pairs else math.nan,
        nc_self_duality=math.nan if weight is None or not pairs else self_duality(seen, weight),
        nc_ncc_agreement=ncc_agreement,
        num_samples=n,
        dim=stats.means.shape[1],
        path=path,
    )
