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

from collections.abc import Iterator

import torch
from torch import Tensor

from raycompress.metrics.nc import BetweenClass, ClassMeans

# float64 copies of a batch are made this many bytes at a time: small enough for the allocator
# to reuse one block (glibc maps anything above 32 MiB afresh and page-faults it in every time)
# and for the cache, large enough to keep the matrix products efficient.
BLOCK_BYTES = 4 << 20


def _blocks(h: Tensor, *others: Tensor | None) -> Iterator[tuple[Tensor, ...]]:
    """Row blocks of h flattened to (B, D) as fresh float64 copies (callers work on them in
    place), with the matching rows of the other per-sample tensors (None passes through)."""
    h = h.reshape(h.shape[0], -1)
    rows = max(1, BLOCK_BYTES // (8 * h.shape[1]))
    for start in range(0, h.shape[0], rows):
        block = slice(start, start + rows)
        rows_64 = h[block].to(torch.float64, copy=True)
        yield (rows_64, *(o if o is None else o[block] for o in others))


class ClassSums:
    """Pass 1: per-class counts n_c (C,) and sums s_c (C, D), float64."""

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu") -> None:
        self.counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)

    def update(self, h: Tensor, y: Tensor) -> None:
        self.counts += torch.bincount(y, minlength=self.counts.numel())
        for h64, yb in _blocks(h, y):
            self.sums.index_add_(0, yb, h64)

    def result(self) -> ClassMeans:
        present = self.counts.clamp(min=1)[:, None]
        return ClassMeans(counts=self.counts.clone(), means=self.sums / present)


# Pass 2 must see pass 1's representations: its own class means may differ from pass 1's by
# rounding (a GPU's reductions need not repeat bit for bit), never by this much relative to
# the means' size — a model that changed between the passes moves them by far more.
SAME_MEANS_RTOL = 1e-5


class WithinClassPass:
    """Pass 2 over the same representations as pass 1, given its means and Σ_B's whitener.

    Accumulates Σ_n ‖(h_n − μ_{y_n}) W‖² (N · tr(Σ_W Σ_B⁺)), the per-class squared distances
    to the class mean (tr Σ_W and CDNV) and, when predictions are given, how often the nearest
    class mean agrees with them (NC4). It also sums the representations per class again, so
    that the result is refused unless pass 2 saw pass 1's samples and class means.
    """

    def __init__(self, stats: ClassMeans, between: BetweenClass) -> None:
        self.stats = stats
        self.between = between
        self.sums = ClassSums(*stats.means.shape, stats.means.device)
        self.whitened_sq = torch.zeros((), dtype=torch.float64, device=stats.means.device)
        self.class_sq_dist = torch.zeros_like(stats.counts, dtype=torch.float64)
        self.ncc_agree = torch.zeros((), dtype=torch.int64, device=stats.means.device)
        self.seen = 0
        # absent classes can never be the nearest mean
        self._mean_sq = stats.means.square().sum(1).masked_fill(stats.counts == 0, torch.inf)

    def update(self, h: Tensor, y: Tensor, predictions: Tensor | None = None) -> None:
        means = self.stats.means  # (C, D)
        self.sums.counts += torch.bincount(y, minlength=self.sums.counts.numel())
        for h64, yb, pb in _blocks(h, y, predictions):
            self.sums.sums.index_add_(0, yb, h64)
            if pb is not None:
                # argmin_c ‖h − μ_c‖² = argmin_c ‖μ_c‖² − 2 h·μ_c
                dist = self._mean_sq - 2 * h64 @ means.T  # (b, C)
                self.ncc_agree += (dist.argmin(1) == pb).sum()
            deviation = h64.sub_(means[yb])  # (b, D), in place: one float64 block per batch
            self.whitened_sq += (deviation @ self.between.whitener).square().sum()
            self.class_sq_dist.index_add_(0, yb, torch.einsum("bd,bd->b", deviation, deviation))
        self.seen += h.shape[0]

    def check_complete(self) -> None:
        """Guard the two-pass invariant: pass 2 saw exactly the samples of pass 1, with pass 1's
        class means (up to SAME_MEANS_RTOL of their size)."""
        if self.seen != self.stats.num_samples or not torch.equal(
            self.sums.counts, self.stats.counts
        ):
            raise RuntimeError(
                f"pass 2 saw {self.seen} samples but pass 1 saw {self.stats.num_samples}, or "
                "other class counts: both passes must cover the same data"
            )
        moved = float((self.sums.result().means - self.stats.means).abs().max())
        size = float(self.stats.means.abs().max())
        if moved > SAME_MEANS_RTOL * size:
            raise RuntimeError(
                f"the class means of pass 2 differ from pass 1's by {moved:.3g} (of {size:.3g}): "
                "the representations changed between the passes; keep the model fixed (eval "
                "mode, no training step) until both passes are done"
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
        state = cls(num_classes, h[0].numel(), h.device)
        state.update(h, y)
        return state

    def update(self, h: Tensor, y: Tensor) -> None:
        """Absorb a batch as its own state, centred at the batch's class means."""
        sums = ClassSums(*self.means.shape, h.device)
        sums.update(h, y)
        batch = sums.result()
        class_sq_dist = torch.zeros_like(self.class_sq_dist)
        for h64, yb in _blocks(h, y):
            deviation = h64.sub_(batch.means[yb])
            self.scatter.addmm_(deviation.T, deviation)
            class_sq_dist.index_add_(0, yb, torch.einsum("bd,bd->b", deviation, deviation))
        self._combine(batch.counts, batch.means, class_sq_dist)

    def merge(self, other: WithinScatter) -> None:
        self.scatter += other.scatter
        self._combine(other.counts, other.means, other.class_sq_dist)

    def _combine(self, counts: Tensor, means: Tensor, class_sq_dist: Tensor) -> None:
        """The merge above, given the other side's scatter has been added already."""
        n_a = self.counts.to(torch.float64)
        n_b = counts.to(torch.float64)
        total = (n_a + n_b).clamp(min=1)
        delta = means - self.means  # (C, D)
        weight = n_a * n_b / total  # (C,), 0 for classes absent from either side
        self.scatter.addmm_((delta * weight[:, None]).T, delta)
        self.class_sq_dist += class_sq_dist + weight * delta.square().sum(1)
        self.means += delta * (n_b / total)[:, None]
        self.counts += counts

    def result(self) -> ClassMeans:
        return ClassMeans(counts=self.counts.clone(), means=self.means.clone())

    def within_covariance(self) -> Tensor:
        """Σ_W = S_W / N  (D, D)."""
        return self.scatter / self.counts.sum()
