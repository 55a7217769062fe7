"""The optimum of an affine decoder family: every affine map of the flattened features z (the
`linear` family at any layer; at l = L−1 the head alone, linear ∘ pre with a fixed pre, is one),
so the decoder that 𝒱-information asks for — the best of the family — solves a convex
problem, per target t:

    CE*(t | z) = min_{W ∈ ℝ^{C×D}, b ∈ ℝ^C}  (1/N) Σ_i −log softmax(W z_i + b)_{t_i}   [nats]

z (N, D) and K target columns (N, K), one problem each. Exact reparametrisations, each leaving
the family (so CE*) unchanged:

1. Standardised: z' = (z − mean) / std per feature (a constant feature becomes 0; the bias
   holds it). The weights on z' are the fit's `weights`, the warm-start state: they do not
   depend on the basis below, which changes whenever z does.
2. Whitened: W z' depends on W only through its projection on the span of the samples, so
   with the covariance's eigendecomposition Z'ᵀZ'/N = V Λ Vᵀ (the "primal", D × D) or, when
   D > N, the Gram matrix's Z'Z'ᵀ/N = U Λ Uᵀ (the "dual", N × N: the same non-zero Λ),
   eigenvalues below RANK_TOL × the largest dropped (numerically null: rank r ≤ min(N, D)),
   the features become Q = Z' V Λ^{-1/2} (N, r) (dual: Q = Z'Z'ᵀ U Λ^{-1} / N, the same
   matrix, formed from Z' so that it lies in Z''s span exactly), with QᵀQ/N = I, and
   W z' = B q for B = W V Λ^{1/2} = W Z'ᵀQ/N and back W = B Λ^{-1} QᵀZ'/N.

On Q (and a ones column: [Q, 1]ᵀ[Q, 1]/N = I, as Q is centred) the K problems run together:
one matmul over the features per product for all K·C logits, each problem with its own
Newton step and line search (a shared one would let a separable problem's steps, growing
without bound, stall the others). Newton-CG: the step solves H d = −g by conjugate gradients
(Hessian-vector products in float32, to a relative residual min(½, √‖g‖), at most CG_MAX
steps), then an Armijo backtracking line search in float64. The loss, its gradient and the
certificate are float64, the gradient's taken on [Z', 1] — the original family's, not the
whitened one's.

Stopping rules, read after every Newton iteration: the largest gradient entry ≤ GRAD_TOL
(`converged` when ≤ CERTIFIED), the cross-entropy ≤ SEPARABLE (separable targets: the infimum
CE* = 0 is not attained, and as CE* ≥ 0 the value found is within SEPARABLE nats of it), or
less than STALLED nats gained over the last CHUNK iterations (or `max_iter`): targets that
some direction separates in part have an infimum that is not attained and no optimality
certificate. With a `tolerance` (bits, the converged protocol's), such a fit is certified by
the doubling rule instead: from DOUBLED_FROM iterations on, the cross-entropy is compared with
its value at half as many (rounded down), and the fit stops, certified, once that gain is at
most `tolerance` bits. No weight decay: the family's optimum, not a regularised one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raycompress.models import Head

Form = Literal["auto", "primal", "dual"]

GRAD_TOL = 1e-7  # Newton stops once every gradient entry is this small ...
CERTIFIED = 1e-5  # ... and a result counts as converged when every entry is below this,
# or when the mean cross-entropy is below this (nats): as CE* ≥ 0, the value is then within
# SEPARABLE / ln 2 bits of the supremum (separable targets, where CE* = 0 is not attained)
SEPARABLE = 1e-4
RANK_TOL = 1e-10  # eigenvalues below this × the largest are dropped: float32 features' own
# rounding leaves variance ≈ (1e-7)² of the largest in directions that hold none
MAX_ITER = 200  # Newton iterations (each up to CG_MAX Hessian-vector products)
CG_MAX = 60  # conjugate-gradient steps per Newton step
CHUNK = 4  # Newton iterations over which a gain below STALLED stops an unfinished problem
STALLED = 1e-8  # nats
DOUBLED_FROM = 8  # the doubling rule is first read at 8 iterations (4 → 8)
ARMIJO = 1e-4  # sufficient decrease, as a fraction of the step's first-order decrease
HALVINGS = 40  # backtracking steps before a line search gives up (a stalled problem)
EXPANSIONS = 10  # doublings of an accepted full step at most (up to 1 024 ×)


@dataclass(frozen=True)
class AffineFit:
    """The minimum found, CE in nats, the Newton iterations used and the final gradient's
    largest entry on the standardised features (the optimality certificate: 0 at the optimum);
    `separable` when CE fell below SEPARABLE (the value is then within SEPARABLE nats of the
    supremum); the form that ran ("primal" or "dual") and the rank kept (module docstring)."""

    ce: float
    iterations: int
    grad_max: float
    separable: bool
    last_gain: float  # nats gained in the last CHUNK iterations
    # with a tolerance: the nats gained over the last doubling of the iterations (None before
    # the first), and whether that certified the fit
    doubling_gain: float | None
    doubled: bool
    form: str
    rank: int
    # (C, D + 1): W and b on the standardised features, where the fit ended (a warm start's)
    weights: Tensor = field(repr=False, compare=False)

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
    z: Tensor, targets: Tensor, num_classes: int, max_iter: int = MAX_ITER,
    tolerance: float | None = None, start: Tensor | None = None, form: Form = "auto",
) -> list[AffineFit]:  # fmt: skip
    """For each column t of targets (N, K): min over (W, b) of the mean cross-entropy of
    softmax(W z + b) on t (module docstring); z (N, D) on any device, solved in float64 on
    it. With a `tolerance` (bits), a fit also stops, certified, when the last doubling of its
    iterations gained at most that. `start` (K, C, D + 1): each problem's first weights on the
    standardised features (a warm start: a previous fit's `weights`, stacked; default zeros).
    `form`: "auto" takes the dual when D > N, else the primal (the cheaper eigendecomposition)."""
    z = standardised(z.double())
    n, d = z.shape
    k = targets.shape[1]
    shape = (k, num_classes, d + 1)
    if start is not None and tuple(start.shape) != shape:
        raise ValueError(
            f"an affine warm start of shape {tuple(start.shape)} does not fit {shape} "
            "(targets, classes, features + 1): start fresh"
        )
    form = ("dual" if d > n else "primal") if form == "auto" else form
    q, eigenvalues = whitened(z, form)
    x = torch.cat([q, torch.ones(n, 1, dtype=q.dtype, device=q.device)], 1)
    params = torch.zeros(k, num_classes, q.shape[1] + 1, dtype=x.dtype, device=x.device)
    if start is not None:
        w = start.to(x.device, x.dtype)
        params[..., :-1] = to_whitened(w[..., :-1], z, q)
        params[..., -1] = w[..., -1]
    t = targets.to(x.device)
    solved = _newton(x, z, t, params, max_iter, tolerance)
    weights = torch.cat([from_whitened(solved.params[..., :-1], z, q, eigenvalues),
                         solved.params[..., -1:]], -1).cpu()  # fmt: skip
    return [
        AffineFit(
            float(solved.ce[j]),
            solved.iterations[j],
            float(solved.grad_max[j]),
            float(solved.ce[j]) <= SEPARABLE,
            solved.last_gain[j],
            solved.doubling_gain[j],
            solved.doubled[j],
            form,
            q.shape[1],
            weights[j],
        )
        for j in range(k)
    ]


def standardised(z: Tensor) -> Tensor:
    """(z − mean) / std per feature of z (N, D); a constant feature becomes 0 (the bias holds
    it). An affine map of z is an affine map of the result and back: the family is the same."""
    std = z.std(0, correction=0)
    return (z - z.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))


def on_raw(weights: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """W (…, C, D) and b (…, C) giving on z (N, D) itself the logits that `weights`
    (…, C, D + 1), a fit's, give on standardised(z)."""
    std = z.std(0, correction=0)
    w = weights[..., :-1] / torch.where(std > 0, std, torch.ones_like(std))
    return w, weights[..., -1] - w @ z.mean(0)


def whitened(z: Tensor, form: str) -> tuple[Tensor, Tensor]:
    """Q (N, r) with QᵀQ/N = I spanning what z (N, D, centred) spans, and the eigenvalues Λ (r,)
    kept (module docstring, 2): from the covariance ("primal") or the Gram matrix ("dual")."""
    n = z.shape[0]
    if form == "primal":
        eigenvalues, v = torch.linalg.eigh(z.T @ z / n)
    elif form == "dual":
        eigenvalues, u = torch.linalg.eigh(z @ z.T / n)
    else:
        raise ValueError(f"form must be 'auto', 'primal' or 'dual', got {form!r}")
    keep = eigenvalues > RANK_TOL * eigenvalues.max().clamp_min(0)
    eigenvalues = eigenvalues[keep]
    if form == "primal":
        return z @ (v[:, keep] / eigenvalues.sqrt()), eigenvalues
    return z @ (z.T @ u[:, keep]) / (n * eigenvalues), eigenvalues


def to_whitened(w: Tensor, z: Tensor, q: Tensor) -> Tensor:
    """B = W Z'ᵀQ/N (…, C, r) of weights W (…, C, D) on the standardised z: the same logits on
    z's span (W's part outside it changes no logit on these samples)."""
    return (w @ z.T) @ q / z.shape[0]


def from_whitened(b: Tensor, z: Tensor, q: Tensor, eigenvalues: Tensor) -> Tensor:
    """W = B Λ^{-1} QᵀZ'/N (…, C, D): the weights on the standardised z of B (…, C, r)."""
    return ((b / eigenvalues) @ q.T) @ z / z.shape[0]


@dataclass(frozen=True)
class _Solved:
    params: Tensor  # (K, C, r + 1)
    ce: Tensor  # (K,)
    grad_max: Tensor  # (K,)
    iterations: list[int]
    last_gain: list[float]
    doubling_gain: list[float | None]
    doubled: list[bool]


def _evaluate(x: Tensor, t: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
    """Per problem the mean cross-entropy (K,) and the logits' gradient (N, K, C) of params
    (K, C, r + 1) on the features x (N, r + 1) and targets t (N, K)."""
    n, (k, c, _) = x.shape[0], params.shape
    logits = (x @ params.reshape(k * c, -1).T).view(n, k, c)
    log_p = F.log_softmax(logits, -1)
    ce = -log_p.gather(-1, t[..., None]).squeeze(-1).mean(0)
    residual = log_p.exp() - F.one_hot(t, c).to(log_p.dtype)
    return ce, residual / n


def _cross_entropy(x: Tensor, t: Tensor, params: Tensor) -> Tensor:
    n, (k, c, _) = x.shape[0], params.shape
    logits = (x @ params.reshape(k * c, -1).T).view(n, k, c)
    return -F.log_softmax(logits, -1).gather(-1, t[..., None]).squeeze(-1).mean(0)


def _project(x: Tensor, g_logits: Tensor) -> Tensor:
    """(K, C, r + 1): xᵀ of per-logit values (N, K, C)."""
    n, k, c = g_logits.shape
    return (g_logits.reshape(n, k * c).T @ x).view(k, c, -1)


def _cg(x32: Tensor, p32: Tensor, grad: Tensor) -> Tensor:
    """An inexact Newton step d (K, C, r + 1) for each problem: H d ≈ −g by conjugate
    gradients from 0, in float32, the Hessian H v = xᵀ[(diag p − p pᵀ) (x v)]/N per sample
    (p (N, K, C) the probabilities); each problem stops at its own relative residual."""
    n, k, c = p32.shape
    g = grad.float()
    g_norm = g.flatten(1).norm(dim=1)
    target = torch.minimum(torch.full_like(g_norm, 0.5), g_norm.sqrt()) * g_norm
    step, residual = torch.zeros_like(g), -g
    direction = residual.clone()
    rr = (residual * residual).flatten(1).sum(1)
    active = rr.sqrt() > target
    for _ in range(CG_MAX):
        if not active.any():
            break
        a = (x32 @ direction.reshape(k * c, -1).T).view(n, k, c)
        hd = _project(x32, p32 * (a - (p32 * a).sum(-1, keepdim=True))) / n
        curvature = (direction * hd).flatten(1).sum(1)
        active &= curvature > 0  # a flat direction (the softmax's shift): nothing to gain
        alpha = torch.where(active, rr / curvature.clamp_min(1e-30), 0)
        step += alpha[:, None, None] * direction
        residual -= alpha[:, None, None] * hd
        rr_new = (residual * residual).flatten(1).sum(1)
        active &= rr_new.sqrt() > target
        beta = torch.where(active, rr_new / rr.clamp_min(1e-30), 0)
        direction = residual + beta[:, None, None] * direction
        rr = rr_new
    return step.double()


def _newton(
    x: Tensor, z: Tensor, t: Tensor, params: Tensor, max_iter: int, tolerance: float | None
) -> _Solved:
    """Newton-CG on the whitened features x (N, r + 1) for targets t (N, K) from params
    (K, C, r + 1); the certificate is the gradient on the standardised z (N, D)."""
    k = t.shape[1]
    x32 = x.float()
    ones = torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)
    z1 = torch.cat([z, ones], 1)
    ce = torch.zeros(k, dtype=x.dtype)
    grad_max = torch.zeros(k, dtype=x.dtype)
    history: list[list[float]] = [[] for _ in range(k)]  # cross-entropy after i iterations
    doubling_gain: list[float | None] = [None] * k
    doubled = [False] * k
    active = list(range(k))
    while active:
        index = torch.tensor(active, device=x.device)
        value, g_logits = _evaluate(x, t[:, index], params[index])
        grad_max[index] = _project(z1, g_logits).abs().flatten(1).amax(1).cpu()
        ce[index] = value.cpu()
        still = []
        for j in active:
            at = history[j]
            at.append(float(ce[j]))
            i = len(at) - 1
            if tolerance is not None and i >= DOUBLED_FROM:
                doubling_gain[j] = at[i // 2] - at[i]
                doubled[j] = doubling_gain[j] <= tolerance * math.log(2)
            stalled = i >= CHUNK and at[i - CHUNK] - at[i] < STALLED
            done = grad_max[j] <= GRAD_TOL or at[i] <= SEPARABLE or stalled or doubled[j]
            if not (done or i >= max_iter):
                still.append(j)
        if not still:
            break
        keep = torch.tensor([active.index(j) for j in still], device=x.device)
        active, index = still, index[keep]
        g_logits = g_logits[:, keep]
        grad = _project(x, g_logits)
        p = g_logits * x.shape[0] + F.one_hot(t[:, index], params.shape[1]).to(x.dtype)
        step = _cg(x32, p.float(), grad)
        slope = (grad * step).flatten(1).sum(1)
        descent = slope < 0  # float32 CG may miss: fall back to steepest descent
        step[~descent] = -grad[~descent]
        slope = torch.where(descent, slope, -(grad * grad).flatten(1).sum(1))
        params[index] = _line_search(x, t[:, index], params[index], step, ce[index], slope)
    last_gain = [at[-1 - min(CHUNK, len(at) - 1)] - at[-1] for at in history]
    iterations = [len(at) - 1 for at in history]
    return _Solved(params, ce, grad_max, iterations, last_gain, doubling_gain, doubled)


def _line_search(
    x: Tensor, t: Tensor, params: Tensor, step: Tensor, ce: Tensor, slope: Tensor
) -> Tensor:
    """params + s·step per problem, s = 1, ½, ¼, … the first with the Armijo decrease, or, where
    s = 1 has it, s = 2, 4, … while the cross-entropy still falls (a separable direction's
    Newton step is short of the unbounded optimum: doubling it is what gets there); a problem
    without a decrease keeps its params (it then stalls)."""
    ce, slope = ce.to(x.device), slope.to(x.device)
    scale = torch.ones_like(ce)
    accepted = torch.zeros_like(ce, dtype=torch.bool)
    for _ in range(HALVINGS):
        trial = _cross_entropy(x, t, params + scale[:, None, None] * step)
        accepted |= trial <= ce + ARMIJO * scale * slope
        if accepted.all():
            break
        scale = torch.where(accepted, scale, scale / 2)
    best = torch.where(accepted & (scale == 1), trial, -math.inf)
    growing = best > -math.inf
    for _ in range(EXPANSIONS):
        if not growing.any():
            break
        trial = _cross_entropy(
            x, t, params + torch.where(growing, 2 * scale, scale)[:, None, None] * step
        )
        growing &= trial < best
        scale = torch.where(growing, 2 * scale, scale)
        best = torch.where(growing, trial, best)
    return params + torch.where(accepted, scale, 0)[:, None, None] * step
