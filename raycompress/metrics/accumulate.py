"""Streaming accumulators for the neural-collapse passes: state kept apart from the measures.

Each accumulator takes batches of representations h (B, D) (any float dtype, any shape that
flattens to D per sample) with labels y (B,) and keeps float64 state:

    ClassSums       pass 1 of the exact two-pass algorithm: n_c, s_c            O(CD)
    WithinClassPass pass 2: Σ‖(h − μ_y) W‖², Σ_{y=c}‖h − μ_c‖², NC4 agreement   O(CD)
    WithinScatter   one pass for small D: n_c, μ_c and the within-class scatter
                    S_W = Σ_c Σ_{y_n=c} (h_n − μ_c)(h_n − μ_c)ᵀ, by Chan et al.'s pairwise
                    merge — raw second moments Σ h hᵀ cancel catastrophically exactly when the
                    representations collapse, the case this tool exists to measure.  O(D² + CD)
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from raycompress.metrics.nc import BetweenClass, ClassMeans


def _flat64(h: Tensor) -> Tensor:
    return h.reshape(h.shape[0], -1).to(torch.float64)


def _fingerprint(means: Tensor) -> str:
    return hashlib.sha1(means.detach().cpu().numpy().tobytes()).hexdigest()[:12]


class ClassSums:
    """Pass 1: per-class counts n_c (C,) and sums s_c (C, D), float64."""

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu") -> None:
        self.counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)

    def update(self, h: Tensor, y: Tensor) -> None:
        self.counts += torch.bincount(y, minlength=self.counts.numel())
        self.sums.index_add_(0, y, _flat64(h))

    def result(self) -> ClassMeans:
        present = self.counts.clamp(min=1)[:, None]
        return ClassMeans(counts=self.counts.clone(), means=self.sums / present)


class WithinClassPass:
    """Pass 2 over the same representations as pass 1, given its means and Σ_B's whitener.

    Accumulates Σ_n ‖(h_n − μ_{y_n}) W‖² (N · tr(Σ_W Σ_B⁺)), the per-class squared distances
    to the class mean (tr Σ_W and CDNV) and, when predictions are given, how often the nearest
    class mean agrees with them (NC4).
    """

    def __init__(self, stats: ClassMeans, between: BetweenClass) -> None:
        self.stats = stats
        self.between = between
        self.means_fingerprint = _fingerprint(stats.means)
        self.whitened_sq = torch.zeros((), dtype=torch.float64, device=stats.means.device)
        self.class_sq_dist = torch.zeros_like(stats.counts, dtype=torch.float64)
        self.ncc_agree = torch.zeros((), dtype=torch.int64, device=stats.means.device)
        self.seen = 0

    def update(self, h: Tensor, y: Tensor, predictions: Tensor | None = None) -> None:
        h = _flat64(h)
        deviation = h - self.stats.means[y]  # (B, D)
        self.whitened_sq += (deviation @ self.between.whitener).pow(2).sum()
        self.class_sq_dist.index_add_(0, y, deviation.pow(2).sum(1))
        if predictions is not None:
            # ‖h − μ_c‖² = ‖h‖² − 2 h·μ_c + ‖μ_c‖²; the ‖h‖² term does not change the argmin.
            means = self.stats.means
            dist = means.pow(2).sum(1) - 2 * h @ means.T  # (B, C)
            dist[:, self.stats.counts == 0] = torch.inf
            self.ncc_agree += (dist.argmin(1) == predictions).sum()
        self.seen += h.shape[0]

    def check_complete(self) -> None:
        """Guard the two-pass invariant: pass 2 saw exactly the samples of pass 1."""
        if self.seen != self.stats.num_samples:
            raise RuntimeError(
                f"pass 2 saw {self.seen} samples but pass 1 saw {self.stats.num_samples} "
                f"(means {self.means_fingerprint}): both passes must cover the same data"
            )

    @property
    def nc_trace(self) -> float:
        self.check_complete()
        return float(self.whitened_sq) / self.seen

    @property
    def ncc_agreement(self) -> float:
        self.check_complete()
        return int(self.ncc_agree) / self.seen


class WithinScatter:
    """One mergeable pass: n_c (C,), μ_c (C, D), S_W (D, D), per-class Σ‖h − μ_c‖² (C,).

    Merging state b into state a, per class, with δ = μ_b − μ_a (Chan, Golub & LeVeque 1979):
        S ← S_a + S_b + (n_a n_b / (n_a + n_b)) δ δᵀ,   μ ← μ_a + (n_b / (n_a + n_b)) δ.
    A batch enters as its own state (centred at its own class means), so no raw moment is
    ever formed.
    """

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu") -> None:
        self.counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
        self.means = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)
        self.scatter = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        self.class_sq_dist = torch.zeros(num_classes, dtype=torch.float64, device=device)

    @classmethod
    def from_batch(cls, h: Tensor, y: Tensor, num_classes: int) -> WithinScatter:
        h = _flat64(h)
        state = cls(num_classes, h.shape[1], h.device)
        sums = ClassSums(num_classes, h.shape[1], h.device)
        sums.update(h, y)
        batch = sums.result()
        deviation = h - batch.means[y]
        state.counts = batch.counts
        state.means = batch.means
        state.scatter = deviation.T @ deviation
        state.class_sq_dist = torch.zeros_like(state.class_sq_dist).index_add_(
            0, y, deviation.pow(2).sum(1)
        )
        return state

    def update(self, h: Tensor, y: Tensor) -> None:
        self.merge(WithinScatter.from_batch(h, y, self.counts.numel()))

    def merge(self, other: WithinScatter) -> None:
        n_a = self.counts.to(torch.float64)
        n_b = other.counts.to(torch.float64)
        total = (n_a + n_b).clamp(min=1)
        delta = other.means - self.means  # (C, D)
        weight = n_a * n_b / total  # (C,), 0 for classes absent from either side
        self.scatter += other.scatter + (delta * weight[:, None]).T @ delta
        self.class_sq_dist += other.class_sq_dist + weight * delta.pow(2).sum(1)
        self.means += delta * (n_b / total)[:, None]
        self.counts += other.counts

    def result(self) -> ClassMeans:
        return ClassMeans(counts=self.counts.clone(), means=self.means.clone())

    def within_covariance(self) -> Tensor:
        """Σ_W = S_W / N  (D, D)."""
        return self.scatter / self.counts.sum()
