"""Pure sampling over tensors: what the measures need of the data, without any loader.

Split               one split as tensors (x, y)
check_labels        one-line errors for labels that are not C-class integer ids
batch_indices       seeded, class-mixed batch order (training and measurement)
stratified_subset   a seeded subset with the class proportions of the labels
relabel             the base-C relabelling of thesis Algorithm 2 (minimality's targets)
held_out_parts      the seeded halves (and validation part) of held-out sufficiency
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from raycompress.seeds import Stream, derive_seed


@dataclass(frozen=True)
class Split:
    """One split as tensors: x (N, C, H, W) float32 in [0, 1] (times the trial's input scale),
    y (N,) int64."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return self.y.numel()

    def subset(self, index: Tensor) -> Split:
        return Split(self.x[index], self.y[index])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def class_counts(self, num_classes: int) -> Tensor:
        return torch.bincount(self.y, minlength=num_classes)


def check_labels(labels: Tensor, num_classes: int, num_samples: int | None = None) -> None:
    """Raise a one-line ValueError unless labels are C-class integer ids matching the features."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
        raise ValueError(
            f"labels must be a 1-D integer tensor, got dtype {labels.dtype} and shape "
            f"{tuple(labels.shape)}"
        )
    if num_samples is not None and labels.numel() != num_samples:
        raise ValueError(
            f"features and labels have different lengths ({num_samples} vs {labels.numel()}): "
            "pass one label per feature row"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), found values in "
            f"[{int(labels.min())}, {int(labels.max())}]: check num_classes or the labels"
        )


def stratified_subset(labels: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """Indices of a seeded subset of `size` samples with the class proportions of `labels`.

    Class quotas are size · n_c / N rounded by largest remainder, so they sum to `size`; the
    indices come back sorted, keeping the dataset's order.
    """
    n = labels.numel()
    if not 0 < size <= n:
        raise ValueError(f"subset size must be in 1..{n}, got {size}")
    counts = torch.bincount(labels)
    exact = counts.double() * size / n
    quota = exact.floor().long()
    short = size - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:short]] += 1
    chosen = [
        members[torch.randperm(members.numel(), generator=generator)[:k]]
        for members, k in (
            (torch.nonzero(labels == c).flatten(), int(quota[c])) for c in range(counts.numel())
        )
    ]
    return torch.cat(chosen).sort().values


def batch_indices(num_samples: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """A seeded random permutation cut into batches (class-mixed, never class-sorted).

    With batch-statistics batch normalisation a tiny last batch would get degenerate
    statistics, so a remainder shorter than half a batch joins the previous batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    batches = list(torch.randperm(num_samples, generator=generator).split(batch_size))
    if len(batches) > 1 and 2 * batches[-1].numel() < batch_size:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def within_class_index(
    labels: Tensor, num_classes: int, generator: torch.Generator | None = None
) -> Tensor:
    """i for the i-th sample of its class (0-based) in dataset order, or in a seeded random
    within-class order when a generator is given (a Monte-Carlo relabelling)."""
    order = (
        torch.arange(labels.numel())
        if generator is None
        else torch.randperm(labels.numel(), generator=generator)
    )
    shuffled = labels[order]
    sort = torch.argsort(shuffled, stable=True)
    counts = torch.bincount(labels, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(labels)
    rank[sort] = torch.arange(labels.numel()) - starts[shuffled[sort]]
    index = torch.empty_like(labels)
    index[order] = rank
    return index


def num_digits(value: int, base: int) -> int:
    """Digits of a non-negative integer in `base`, counted with integers (0 has none)."""
    digits = 0
    while value > 0:
        value //= base
        digits += 1
    return digits


def relabel(labels: Tensor, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """The base-C relabelling of thesis Algorithm 2 (Dubois et al. 2020, Algorithm 1).

    The i-th sample of class c gets the N_D base-C digits of i, leading digit first:
    column j holds the digit of C^(N_D − 1 − j). N_D = the number of base-C digits of
    max_c n_c − 1, computed with integers (⌈log_C max n_c⌉ in floats gets 125 in base 5 wrong).
    Returns a LongTensor (N, N_D); N_D = 0 when no class has two samples.
    """
    check_labels(labels, num_classes)
    index = within_class_index(labels, num_classes, generator)
    n_digits = num_digits(int(torch.bincount(labels, minlength=num_classes).max()) - 1, num_classes)
    powers = num_classes ** torch.arange(n_digits - 1, -1, -1)
    return (index[:, None] // powers) % num_classes


VALIDATION = 0.2  # converged held-out: the part of the fit half that early-stops the decoder


def held_out_parts(y: Tensor, seed: int, validation: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Indices (fit, validation, scored) of a split with labels y (N,): a seeded, stratified
    half is fitted on, the other half scored; with `validation`, a stratified VALIDATION part
    of the fit half is held back to early-stop the decoder (else empty). Disjoint."""
    halves = torch.Generator().manual_seed(derive_seed(seed, Stream.HALVES))
    half = stratified_subset(y, y.numel() // 2, halves)
    rest = torch.ones(y.numel(), dtype=torch.bool)
    rest[half] = False
    scored = torch.nonzero(rest).flatten()
    if not validation:
        return half, half[:0], scored
    parts = torch.Generator().manual_seed(derive_seed(seed, Stream.VALIDATION))
    held = half[stratified_subset(y[half], round(VALIDATION * half.numel()), parts)]
    keep = torch.ones(y.numel(), dtype=torch.bool)
    keep[held] = False
    return half[keep[half]], held, scored
