"""The optimum of an affine decoder family: at l = L−1 the decoder f^L = linear ∘ pre is affine
in z = pre(h^{L−1}) (pre: the head's fixed pooling and flattening), so the decoder that
𝒱-information asks for — the best of the family — solves a convex problem, per target t:

    CE*(t | z) = min_{W ∈ ℝ^{C×D}, b ∈ ℝ^C}  (1/N) Σ_i −log softmax(W z_i + b)_{t_i}   [nats]

z (N, D) and t (N,). The features are standardised first, z' = (z − mean) / std per feature
(a constant feature becomes 0): W z + b and W' z' + b' span the same family, so CE* is
unchanged, and L-BFGS converges far faster on features of unequal scales. Solved in float64
by L-BFGS with a strong-Wolfe line search from zero weights, until the gradient's largest
entry is ≤ GRAD_TOL, or the cross-entropy is below SEPARABLE (separable targets: the infimum
CE* = 0 is not attained, and as CE* ≥ 0 the value found is then certified within SEPARABLE
nats of it). Targets that some direction separates in part have an infimum that is not
attained either, and no certificate: there the solver stops when CHUNK iterations gain less
than STALLED nats (or after `max_iter`), and reports the fit as not converged, with that last
gain. No weight decay: the family's optimum, not a
regularised one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raycompress.models import Head

GRAD_TOL = 1e-6  # L-BFGS stops once every gradient entry is this small ...
CERTIFIED = 1e-5  # ... and a result counts as converged when every entry is below this,
# or when the mean cross-entropy is below this (nats): as CE* ≥ 0, the value is then within
# SEPARABLE / ln 2 bits of the supremum (separable targets, where CE* = 0 is not attained)
SEPARABLE = 1e-4
CHUNK = 50  # iterations between two looks at the stopping rules
STALLED = 1e-7  # nats gained by an unfinished problem in one chunk, below which it stops


@dataclass(frozen=True)
class AffineFit:
    """The minimum found, CE in nats, the iterations used and the final gradient's largest
    entry (the optimality certificate: 0 at the optimum); `separable` when CE fell below
    SEPARABLE (the value is then within SEPARABLE nats of the supremum)."""

    ce: float
    iterations: int
    grad_max: float
    separable: bool
    last_gain: float  # nats gained in the last CHUNK iterations

    @property
    def converged(self) -> bool:
        return self.separable or self.grad_max <= CERTIFIED


def affine_pre(decoder: nn.Module) -> Head | None:
    """The decoder's Head when the decoder is affine in its input (a lone Head whose `pre`
    has neither parameters nor buffers), else None."""
    blocks = list(decoder) if isinstance(decoder, nn.Sequential) else [decoder]
    if len(blocks) != 1 or not isinstance(blocks[0], Head):
        return None
    pre = blocks[0].pre
    fixed = not any(True for _ in pre.parameters()) and not any(True for _ in pre.buffers())
    return blocks[0] if fixed else None


def fit_affine(
    z: Tensor, targets: Tensor, num_classes: int, max_iter: int = 1000
) -> list[AffineFit]:
    """For each column t of targets (N, K): min over (W, b) of the mean cross-entropy of
    softmax(W z + b) on t (module docstring); z (N, D) on any device, in float64.

    The K problems share z but are solved one by one: a shared line search would let one
    problem's steps (a separable one's, growing without bound) stall another's."""
    z = standardised(z.double())
    return [_fit_one(z, t, num_classes, max_iter) for t in targets.T]


def _fit_one(z: Tensor, t: Tensor, num_classes: int, max_iter: int) -> AffineFit:
    params = torch.zeros(num_classes, z.shape[1] + 1, dtype=torch.float64, device=z.device,
                         requires_grad=True)  # fmt: skip
    optimizer = torch.optim.LBFGS(
        [params], lr=1, max_iter=CHUNK, tolerance_grad=GRAD_TOL, tolerance_change=0,
        history_size=50, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def loss() -> Tensor:
        return F.cross_entropy(z @ params[:, :-1].T + params[:, -1], t)

    def closure() -> Tensor:
        optimizer.zero_grad()
        value = loss()
        value.backward()
        return value

    ce = float(loss().detach())
    for _ in range(0, max_iter, CHUNK):  # L-BFGS keeps its history across the calls
        optimizer.step(closure)
        before, ce = ce, float(closure().detach())  # the loss, and its gradient in params.grad
        grad_max = float(params.grad.abs().max())
        if grad_max <= GRAD_TOL or ce <= SEPARABLE or before - ce < STALLED:
            break
    iterations = optimizer.state[params]["n_iter"]
    return AffineFit(ce, iterations, grad_max, ce <= SEPARABLE, before - ce)


def standardised(z: Tensor) -> Tensor:
    """(z − mean) / std per feature of z (N, D); a constant feature becomes 0 (the bias holds
    it). An affine map of z is an affine map of the result and back: the family is the same."""
    std = z.std(0, correction=0)
    return (z - z.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
