"""When a training stops — one rule for the main network and the 𝒱-information decoders."""

from __future__ import annotations

import math

CONVERGED = ("loss_threshold", "plateau")  # the stop reasons that mean "converged", not capped


def stop_reason(
    loss: float,
    epoch: int,
    *,
    loss_threshold: float,
    max_epochs: int,
    stale: int = 0,
    patience: int | None = None,
) -> str | None:
    """Why training stops after `epoch` with epoch-mean loss `loss`, or None to go on.

    "diverged" (non-finite loss), "loss_threshold" (loss ≤ threshold), "plateau" (no
    improvement for `patience` epochs, when a patience is given) or "max_epochs".
    """
    if not math.isfinite(loss):
        return "diverged"
    if loss <= loss_threshold:
        return "loss_threshold"
    if patience is not None and stale >= patience:
        return "plateau"
    if epoch >= max_epochs:
        return "max_epochs"
    return None
