"""The thesis' training protocol (§2.3), one epoch at a time.

Cross-entropy, AdamW (PyTorch defaults but the learning rate), constant lr 2e-3, batch size
400, until the training loss ≤ 0.02 or 50 epochs. The stopping loss is the epoch's mean
training-step loss, as the thesis logged it; the loss and accuracy at the epoch's final weights
come from the measurement pass (`metrics.measure_collapse`), which sees every layer anyway.

Reproducible on the CPU: the initialisation and the batch order come from their own seeded
generators, never from global RNG state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from raycompress.data import Dataset, Split, batch_indices
from raycompress.metrics.collapse import CollapseConfig, CollapseReport, measure_collapse
from raycompress.models import LayeredNet
from raycompress.vinfo import VInfoConfig, measure_model, schedule_epochs


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 2e-3
    batch_size: int = 400
    max_epochs: int = 50
    loss_threshold: float = 0.02
    weight_decay: float = 0.01  # AdamW's PyTorch default, stated so it is recorded
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lr", "batch_size", "max_epochs"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.loss_threshold < 0:
            raise ValueError("weight_decay and loss_threshold must be non-negative")


def make_optimizer(model: LayeredNet, config: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def train_epoch(
    model: LayeredNet,
    optimizer: torch.optim.Optimizer,
    split: Split,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One pass over `split` in a fresh seeded order; returns the mean step loss (nats/sample)."""
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=split.x.device)
    for index in batch_indices(len(split), batch_size, generator):
        loss = F.cross_entropy(model(split.x[index]), split.y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * index.numel()
    return float(total) / len(split)


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: the stopping loss, both splits measured at the final weights (None once the
    loss diverged: there is nothing left to measure), and why training stopped (None while it
    goes on; "loss_threshold", "max_epochs" or "diverged")."""

    epoch: int
    train_step_loss: float
    train: CollapseReport | None
    test: CollapseReport | None
    stop_reason: str | None
    vinfo: dict[tuple[int, str], dict] = field(default_factory=dict)  # (layer, split) → values


def stop_reason(epoch: int, step_loss: float, config: TrainConfig) -> str | None:
    if not math.isfinite(step_loss):
        return "diverged"
    if step_loss <= config.loss_threshold:
        return "loss_threshold"
    if epoch >= config.max_epochs:
        return "max_epochs"
    return None


def run_epochs(
    model: LayeredNet,
    data: Dataset,
    config: TrainConfig,
    collapse: CollapseConfig | None = None,
    vinfo: VInfoConfig | None = None,
) -> Iterator[EpochRecord]:
    """Train epoch by epoch, measuring both splits after each; stops by the protocol.

    Neural collapse is measured every epoch, with the training batch size unless `collapse`
    says otherwise; 𝒱-information (when `vinfo` is given) on its schedule and at the epoch
    where training stops, layer 0 once per run.
    """
    collapse = collapse or CollapseConfig(batch_size=config.batch_size)
    scheduled = schedule_epochs(vinfo.schedule, config.max_epochs) if vinfo else frozenset()
    layer0: dict[str, dict] = {}
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(1, config.max_epochs + 1):
        step_loss = train_epoch(model, optimizer, data.train, config.batch_size, generator)
        reason = stop_reason(epoch, step_loss, config)
        diverged = reason == "diverged"
        reports = [
            None if diverged else measure_collapse(model, split, data.num_classes, collapse)
            for split in (data.train, data.test)
        ]
        values = {}
        if vinfo and not diverged and (epoch in scheduled or (reason and scheduled)):
            splits = {"train": data.train, "test": data.test}
            values = measure_model(model, splits, vinfo, config.seed + 1000 * epoch, layer0)
        yield EpochRecord(epoch, step_loss, *reports, stop_reason=reason, vinfo=values)
        if reason is not None:
            return
