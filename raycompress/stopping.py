"""When a training stops — one rule for the main network and the 𝒱-information decoders."""

from __future__ import annotations

import math
from enum import StrEnum


class Stop(StrEnum):
    """Why a training stopped: the one spelling of each reason (in histories, notes, the
    Tune summary)."""

    DIVERGED = "diverged"  # a non-finite loss
    LOSS_THRESHOLD = "loss_threshold"  # the loss reached the threshold
    PLATEAU = "plateau"  # no improvement for `patience` epochs (decoders)
    CERTIFIED = "certified"  # stopped gaining: ≤ a tolerance over its last span (decoders)
    MAX_EPOCHS = "max_epochs"  # the epoch cap
    ERROR = "error"  # a trial ended by bad settings or missing data (Tune's summary only)

    @property
    def converged(self) -> bool:
        """Converged, as opposed to capped, diverged or failed."""
        return self in CONVERGED


CONVERGED = (Stop.LOSS_THRESHOLD, Stop.PLATEAU, Stop.CERTIFIED)


def stop_reason(
    loss: float,
    epoch: int,
    *,
    loss_threshold: float,
    max_epochs: int,
    stale: int = 0,
    patience: int | None = None,
) -> Stop | None:
    """Why training stops after `epoch` with epoch-mean loss `loss`, or None to go on.

    Diverged (non-finite loss), the loss threshold, a plateau (no improvement for `patience`
    epochs, when a patience is given) or the epoch cap.
    """
    if not math.isfinite(loss):
        return Stop.DIVERGED
    if loss <= loss_threshold:
        return Stop.LOSS_THRESHOLD
    if patience is not None and stale >= patience:
        return Stop.PLATEAU
    if epoch >= max_epochs:
        return Stop.MAX_EPOCHS
    return None
