"""Neural collapse of every layer of a network on one split, exactly, from end-of-epoch weights.

Three ways to Σ_W, one value (DESIGN.md); the choice is made per layer and recorded:

    features  keep h^l (in the network's dtype) while N·D fits the memory budget; pass 2 runs
              over the kept features instead of the network                 O(ND)
    scatter   one pass with the mergeable within-class scatter, for small D   O(D² + CD)
    two_pass  re-run the network up to this layer for pass 2                  O(CD)

Layers are assigned from the deepest: the budget goes first to the layers whose second pass
would cost the most network, and every layer shallower than a two-pass layer is two-pass too
(the second forward produces it anyway). With batch-statistics batch norm a representation
depends on its batch, so both passes use one fixed, seeded, class-mixed batch order at the
training batch size, with the weights frozen in evaluation mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from raycompress import protocol
from raycompress.metrics.accumulate import ClassSums, WithinClassPass, WithinScatter
from raycompress.metrics.nc import (
    between_class,
    collapse_stats,
    nc_trace_from_covariance,
)
from raycompress.models import LayeredNet
from raycompress.sampling import Split, batch_indices, check_labels
from raycompress.schema import CollapseReport, CollapseStats

METHODS = ("auto", "two_pass", "features", "scatter")


@dataclass(frozen=True)
class CollapseConfig:
    """How to measure: batch order (size, seed), Σ_W path, and the pseudo-inverse tolerance."""

    batch_size: int = protocol.BATCH_SIZE  # the training batch size: batch norm sees batches
    seed: int = 0
    method: str = "auto"
    feature_budget_bytes: int = 1 << 30
    scatter_max_dim: int = 1024
    rtol: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown NC method {self.method!r}: choose one of {', '.join(METHODS)}"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def nc_stats(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    predictions: Tensor | None = None,
    classifier_weight: Tensor | None = None,
    rtol: float | None = None,
) -> CollapseStats:
    """Every collapse statistic of in-memory features (N, ...) with labels (N,)."""
    check_labels(labels, num_classes, features.shape[0])
    first = ClassSums(num_classes, features[0].numel(), features.device)
    first.update(features, labels)
    stats = first.result()
    second = WithinClassPass(stats, between_class(stats, rtol))
    second.update(features, labels, predictions)
    return collapse_stats(
        stats, second.between, second.nc_trace, second.class_sq_dist, path="features",
        ncc_agreement=math.nan if predictions is None else second.ncc_agreement,
        classifier_weight=classifier_weight,
    )  # fmt: skip


def nc_trace(features: Tensor, labels: Tensor, num_classes: int) -> float:
    """tr(Σ_W Σ_B⁺) of in-memory features (N, ...) as the thesis defines it (no division by C)."""
    return nc_stats(features, labels, num_classes).nc_trace


def choose_paths(
    dims: list[int], num_samples: int, itemsize: int, config: CollapseConfig
) -> list[str]:
    """The Σ_W path of each layer (see the module docstring); dims[l-1] = D of layer l.

    A forced method must respect the same limits, or it raises before any pass is made.
    """
    if config.method != "auto":
        total = num_samples * sum(dims) * itemsize
        if config.method == "features" and total > config.feature_budget_bytes:
            raise ValueError(
                f"keeping every layer's features takes {total / 2**20:.0f} MiB, over "
                f"feature_budget_bytes ({config.feature_budget_bytes / 2**20:.0f} MiB): raise "
                "the budget or use method='auto'"
            )
        if config.method == "scatter" and max(dims) > config.scatter_max_dim:
            raise ValueError(
                f"a layer has D = {max(dims)} > scatter_max_dim = {config.scatter_max_dim} "
                "(the scatter is D × D): raise scatter_max_dim or use method='auto'"
            )
        return [config.method] * len(dims)
    paths: list[str] = []
    budget = config.feature_budget_bytes
    for dim in reversed(dims):
        if paths and paths[-1] == "two_pass":
            paths.append("two_pass")
        elif num_samples * dim * itemsize <= budget:
            budget -= num_samples * dim * itemsize
            paths.append("features")
        elif dim <= config.scatter_max_dim:
            paths.append("scatter")
        else:
            paths.append("two_pass")
    return paths[::-1]


@torch.no_grad()
def measure_collapse(
    model: LayeredNet, split: Split, num_classes: int, config: CollapseConfig | None = None
) -> CollapseReport:
    """Loss, accuracy and the collapse statistics of every layer of `model` on `split`."""
    config = config or CollapseConfig()
    check_labels(split.y, num_classes, split.x.shape[0])
    order = batch_indices(len(split), config.batch_size, torch.Generator().manual_seed(config.seed))
    was_training = model.training
    model.eval()
    try:
        return _measure(model, split, num_classes, config, order)
    finally:
        model.train(was_training)


def _measure(
    model: LayeredNet, split: Split, num_classes: int, config: CollapseConfig, order: list[Tensor]
) -> CollapseReport:
    device = split.x.device
    loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    predictions: list[Tensor] = []
    kept: dict[int, list[Tensor]] = {}
    accumulators: list[ClassSums | WithinScatter] = []
    paths: list[str] = []

    # Pass 1: class sums (or the one-pass scatter) of every layer, and the network's predictions.
    for index in order:
        y = split.y[index]
        reps, logits = model.representations(split.x[index])
        if not accumulators:
            dims = [h[0].numel() for h in reps]
            paths = choose_paths(dims, len(split), reps[0].element_size(), config)
            accumulators = [
                (WithinScatter if path == "scatter" else ClassSums)(num_classes, dim, device)
                for dim, path in zip(dims, paths, strict=True)
            ]
            kept = {layer: [] for layer, path in enumerate(paths, 1) if path == "features"}
        for layer, (h, acc) in enumerate(zip(reps, accumulators, strict=True), 1):
            acc.update(h, y)
            if layer in kept:
                kept[layer].append(h)
        loss += F.cross_entropy(logits.double(), y, reduction="sum")
        predictions.append(logits.argmax(1))
        correct += (predictions[-1] == y).sum()

    results: dict[int, CollapseStats] = {}
    second: dict[int, WithinClassPass] = {}
    for layer, (acc, path) in enumerate(zip(accumulators, paths, strict=True), 1):
        stats = acc.result()
        between = between_class(stats, config.rtol)
        if path == "scatter":
            trace = nc_trace_from_covariance(acc.within_covariance(), between)
            results[layer] = collapse_stats(
                stats, between, trace, acc.class_sq_dist, path=path,
                classifier_weight=_classifier(model, layer),
            )  # fmt: skip
        else:
            second[layer] = WithinClassPass(stats, between)

    # Pass 2: kept features, then the network again, only as deep as a two-pass layer needs.
    for layer, chunks in kept.items():
        for h, index, preds in zip(chunks, order, predictions, strict=True):
            second[layer].update(h, split.y[index], preds)
    rerun = [layer for layer in second if layer not in kept]
    if rerun:
        for index, preds in zip(order, predictions, strict=True):
            reps, _ = model.representations(split.x[index], depth=max(rerun))
            for layer in rerun:
                second[layer].update(reps[layer - 1], split.y[index], preds)
    for layer, acc in second.items():
        results[layer] = collapse_stats(
            acc.stats, acc.between, acc.nc_trace, acc.class_sq_dist, path=paths[layer - 1],
            ncc_agreement=acc.ncc_agreement, classifier_weight=_classifier(model, layer),
        )  # fmt: skip
    n = len(split)
    return CollapseReport(
        loss=float(loss) / n,
        accuracy=int(correct) / n,
        layers=dict(sorted(results.items())),
    )


def _classifier(model: LayeredNet, layer: int) -> Tensor | None:
    """The classifier weights (C, D) for NC3, which is defined at the penultimate layer only."""
    return model.head.linear.weight if layer == model.depth else None
