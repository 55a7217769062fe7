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
attained either, and no optimality certificate: there the solver stops when CHUNK iterations
gain less than STALLED nats (or after `max_iter`), and reports the fit as not converged, with
that last gain. With a `tolerance` (the converged protocol's), such a fit is certified by the
protocol's doubling rule instead, as its SGD decoders are: after every CHUNK iterations from
DOUBLED_FROM chunks on, the cross-entropy is compared with its value at half as many chunks
(rounded down, so the span is at least a doubling), and the fit stops, certified, once that
gain is at most `tolerance` bits. No weight decay: the family's optimum, not a regularised one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
DOUBLED_FROM = 4  # the doubling rule is first read at 4 chunks (2 → 4): read at 2 (1 → 2),
# it stopped a partly separable fit 0.011 bit short of the 1 000-iteration solve
DOUBLED_MAX_ITER = CHUNK * 2**5  # the cap of a fit certified by doublings


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
    # with a tolerance: the nats gained over the last doubling of the iterations (None before
    # the first), and whether that certified the fit
    doubling_gain: float | None = None
    doubled: bool = False
    # (C, D + 1): W and b on the standardised features, where the fit ended (a warm start's)
    weights: Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def converged(self) -> bool:
        """At the optimum: the gradient's certificate, or separable."""
        return self.separable or self.grad_max <= CERTIFIED

    @property
    def certified(self) -> bool:
        """At the optimum, or certified by the doubling rule (a tolerance was given)."""
        return self.converged or self.doubled


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
    z: Tensor, targets: Tensor, num_classes: int, max_iter: int = 1000,
    tolerance: float | None = None, start: Tensor | None = None,
) -> list[AffineFit]:  # fmt: skip
    """For each column t of targets (N, K): min over (W, b) of the mean cross-entropy of
    softmax(W z + b) on t (module docstring); z (N, D) on any device, in float64. With a
    `tolerance` (bits), a fit also stops, certified, when the last doubling of its iterations
    gained at most that; its cap is then DOUBLED_MAX_ITER. `start` (K, C, D + 1): each
    problem's first weights on the standardised features (a warm start; default zeros).

    The K problems share z but are solved one by one: a shared line search would let one
    problem's steps (a separable one's, growing without bound) stall another's."""
    z = standardised(z.double())
    shape = (targets.shape[1], num_classes, z.shape[1] + 1)
    if start is not None and tuple(start.shape) != shape:
        raise ValueError(
            f"an affine warm start of shape {tuple(start.shape)} does not fit {shape} "
            "(targets, classes, features + 1): start fresh"
        )
    if start is None:
        start = torch.zeros(shape, dtype=torch.float64)
    if tolerance is not None:
        max_iter = DOUBLED_MAX_ITER
    return [_fit_one(z, t, w, max_iter, tolerance) for t, w in zip(targets.T, start, strict=True)]


def _fit_one(
    z: Tensor, t: Tensor, start: Tensor, max_iter: int, tolerance: float | None
) -> AffineFit:
    params = start.to(z.device, torch.float64).clone().requires_grad_(True)
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
    at: dict[int, float] = {}  # chunks done → cross-entropy then
    doubling_gain, doubled = None, False
    for chunks in range(1, max_iter // CHUNK + 1):  # L-BFGS keeps its history across calls
        optimizer.step(closure)
        before, ce = ce, float(closure().detach())  # the loss, and its gradient in params.grad
        grad_max = float(params.grad.abs().max())
        at[chunks] = ce
        if tolerance is not None and chunks >= DOUBLED_FROM:  # chunks // 2 → chunks: ≥ 2×
            doubling_gain = at[chunks // 2] - ce
            doubled = doubling_gain <= tolerance * math.log(2)
        if grad_max <= GRAD_TOL or ce <= SEPARABLE or before - ce < STALLED or doubled:
            break
    iterations = optimizer.state[params]["n_iter"]
    separable = ce <= SEPARABLE
    weights = params.detach().cpu().clone()
    return AffineFit(
        ce, iterations, grad_max, separable, before - ce, doubling_gain, doubled, weights
    )


def standardised(z: Tensor) -> Tensor:
    """(z − mean) / std per feature of z (N, D); a constant feature becomes 0 (the bias holds
    it). An affine map of z is an affine map of the result and back: the family is the same."""
    std = z.std(0, correction=0)
    return (z - z.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
