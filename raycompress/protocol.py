"""The thesis' training protocol (§2.3) as constants: the one source of every default.

`Optimisation` holds what the network and its decoders share; `TrainConfig` and
`DecoderConfig` extend it, a trial's settings (`trial.SETTINGS`) read their defaults from those
dataclasses, and both command lines read the settings: nothing else writes the numbers down.
`schedule_epochs` reads when a run measures 𝒱-information.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from raycompress.compute import Compute

LR = 2e-3  # AdamW, constant
BATCH_SIZE = 400  # the thesis' reference code's default
MAX_EPOCHS = 50  # epoch cap of the main network and of every decoder
LOSS_THRESHOLD = 0.02  # stop once the epoch-mean training loss (nats) is at most this
WEIGHT_DECAY = 0.01  # AdamW's PyTorch default, stated so that it is recorded

# Decoders (𝒱-information) train "to convergence" with the main network's optimiser settings;
# a plateau ends a head too: no relative improvement of DECODER_MIN_DELTA in DECODER_PATIENCE
# epochs.
DECODER_PATIENCE = 5
DECODER_MIN_DELTA = 1e-3

# The decoder budgets (epochs) at which every decoder is also scored along its one training:
# the thesis' own budgets (20 for sufficiency, 50 for minimality) and smaller ones. The cap
# (MAX_EPOCHS, or a run's decoder_epochs) is always the last point.
DECODER_BUDGETS = (5, 10, 20, 50)

# The converged protocol (`vinfo_protocol="converged"`): a decoder trains until it is
# certified — its training loss meets LOSS_THRESHOLD, or its scored value gained at most
# CERTIFY_TOLERANCE bits over the last quadrupling of its epochs (scored at CERTIFY_FROM,
# 2·CERTIFY_FROM, 4·CERTIFY_FROM, …: the first check is CERTIFY_FROM → 4·CERTIFY_FROM; a
# warm-started decoder's from WARM_CERTIFY_FROM) — or until the decoder epoch cap, where it is
# recorded as uncertified. A quadrupling (two doublings), because a memorising decoder can sit
# on a plateau for one doubling and climb after it: certified by one doubling, 3 of 206 values
# of a whole f₋ run sat 0.04–0.10 bit low (decoders.py's module docstring).
THESIS = "thesis"
CONVERGED = "converged"
VINFO_PROTOCOLS = (THESIS, CONVERGED)
CERTIFY_TOLERANCE = 0.01  # bits
# The first scored decoder epoch of a fresh decoder: its first check, 12 → 48, comes where the
# one-doubling rule's (25 → 50) came, so the default cap of 50 still allows it, and spans more
# of the flat start of a minimality decoder (0.02 bit after 5 epochs, 0.11 after 10).
CERTIFY_FROM = 12
WARM_CERTIFY_FROM = 2  # the same for a decoder that continues the previous measurement's


@dataclass(frozen=True)
class Optimisation:
    """How a network trains, shared by the main network (`TrainConfig`) and its decoders
    (`DecoderConfig`): AdamW's learning rate and weight decay, the batch, the stopping rule
    (training loss ≤ loss_threshold nats, or max_epochs) and the arithmetic (`Compute`)."""

    lr: float = LR
    batch_size: int = BATCH_SIZE
    max_epochs: int = MAX_EPOCHS
    loss_threshold: float = LOSS_THRESHOLD
    weight_decay: float = WEIGHT_DECAY
    compute: Compute = field(default_factory=Compute)
    role: ClassVar[str] = ""  # how errors name the fields: "" (the network) or "decoder "

    def __post_init__(self) -> None:
        self.check_positive("lr", "batch_size", "max_epochs")
        for name in ("loss_threshold", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{self.role}{name} must be ≥ 0, got {getattr(self, name)}")

    def check_positive(self, *names: str) -> None:
        for name in names:
            if not getattr(self, name) > 0:
                raise ValueError(f"{self.role}{name} must be positive, got {getattr(self, name)}")


def schedule_epochs(schedule: str | Sequence[int], max_epochs: int) -> frozenset[int]:
    """The epochs at which 𝒱-information is measured.

    "every" (default), "every:K" (K, 2K, …), "log:N" (N log-spaced epochs from 1 to
    max_epochs, rounded, duplicates merged), "stop" (only where training stops: a run also
    measures at its stopping epoch whatever the schedule), "none", or an explicit list of
    epochs.
    """
    if not isinstance(schedule, str):
        epochs = frozenset(int(e) for e in schedule)
        if any(e < 1 for e in epochs):
            raise ValueError(f"scheduled epochs must be ≥ 1, got {sorted(epochs)}")
        return epochs
    kind, _, arg = schedule.partition(":")
    if kind in ("every", "log") and arg:
        if not arg.isdigit() or int(arg) < 1:
            raise ValueError(f"schedule {schedule!r}: {kind}:K needs a positive integer K")
        k = int(arg)
        if kind == "every":
            return frozenset(range(k, max_epochs + 1, k))
        grid = torch.logspace(0, math.log10(max_epochs), k, dtype=torch.float64)
        return frozenset(int(e) for e in grid.round().tolist())
    if schedule == "every":
        return frozenset(range(1, max_epochs + 1))
    if schedule == "stop":
        return frozenset({max_epochs})
    if schedule == "none":
        return frozenset()
    raise ValueError(
        f"unknown 𝒱-information schedule {schedule!r}: use every, every:K, log:N, stop, none or "
        "a list"
    )
