"""𝒱-information of one layer on one split, in bits (Xu et al. 2020; thesis §1.3 and §2.2).

    I_𝒱(h^l → t) = H(t) − CE(t | h^l)   [bits]

H(t) is the empirical entropy of target t on the scored samples; CE is the cross-entropy of a
freshly initialised decoder f^{L:l+1} trained on the frozen encoder's features and scored after
training over every scored sample.

    sufficiency  I_𝒱(h^l → y):            t = the labels
    minimality   I_𝒱(h^l → Dec(x, 𝒴)):    t = each base-C digit of the relabelling r(x)
                                          (thesis Algorithm 2, `sampling.relabel`); mean over digits

The result is a `schema.VInfoResult`: one `schema.Term` per quantity, with its protocol, its
decoders (`schema.Head`: fit, entropy, bits) and its budget curve.

Budget curves. Every decoder is also scored at the config's budgets (`DecoderConfig.curve`:
`protocol.DECODER_BUDGETS` below the epoch cap, and the cap, by default) during its one
training: each term is recorded at every budget (`Term.curve`), a head that stopped before a
budget keeping its final value there, and the bits gained between the last two budgets are its
convergence indicator (`Term.last_gain`).

The affine layer. At l = L−1 the decoder is the head alone, affine in its pooled input
(`affine`): there sufficiency and every minimality digit are convex problems, and the values
reported are the family's optimum (`affine.fit_affine`, float64), which the decoders' budget
curve approaches from below; the protocol note says so. The held-out sufficiency stays a
trained decoder's.

Protocols. The thesis fits and scores each decoder on the same split ("in_sample", the
default). Sufficiency can also be measured "held_out": fit on a seeded, stratified half of the
split, score on the other half. Minimality is in-sample by definition: its relabellings are
arbitrary, so no decoder predicts them on unseen samples and a held-out minimality is ≤ 0 by
construction.

Speed: the encoder runs once per measurement and its features are cached (on the device, or in
host memory above a budget); the sufficiency decoder and every minimality decoder train
together as one batched step (`decoders.StackedDecoders`).

Randomness: every stream of a measurement (batch orders, initialisations, relabellings, the
held-out halves) is derived from its one seed by name (`seeds.Stream`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from raycompress.compute import DEFAULT, Compute, memory_format
from raycompress.metrics.affine import CHUNK, AffineFit, affine_pre, fit_affine
from raycompress.metrics.decoders import (
    DecoderConfig,
    Progress,
    StackedDecoders,
    make_optimizer,
    score_heads,
    train_heads,
)
from raycompress.sampling import Split, batch_indices, relabel, stratified_subset
from raycompress.schema import (
    HELD_OUT_HEAD,
    SUFF_HEAD,
    Decoders,
    Head,
    HeadFit,
    Quantity,
    Term,
    VInfoResult,
    digit_head,
)
from raycompress.seeds import Stream, derive_seed
from raycompress.stopping import Stop

LN2 = math.log(2)  # nats → bits

IN_SAMPLE = "in_sample: fit on the split, scored on it"
AT_OPTIMUM = "the affine decoder at its optimum (L-BFGS, float64)"
HELD_OUT_HALVES = "held_out: fit on a seeded half, scored on the other half"
IN_SAMPLE_STATE, HELD_OUT_STATE = "in_sample", "held_out"  # the decoder states of a measurement
OTHER_DECODERS = "a warm start's decoder state is of other decoders (names or shapes)"


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


@dataclass(frozen=True)
class VInfoConfig:
    """What a 𝒱-information measurement does; recorded beside its values."""

    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    schedule: str | tuple[int, ...] = "every"  # see schedule_epochs
    layers: tuple[int, ...] | None = None  # None: every l = 0..L−1; −1: L−1 (plan.measured_layers)
    held_out: bool = False  # also measure sufficiency fitted on one half, scored on the other
    monte_carlo: int = 0  # extra relabellings with seeded within-class orders
    clip_negative: bool = False  # clip v_suff / v_min at 0 (raw per-head values are kept)
    cache_bytes: int = 2 << 30  # cached features above this size stay in host memory
    # converged only: continue each measurement's decoders from the previous measurement's
    warm_start: bool = False
    # … and their optimiser from its moments there (AdamW's two moments and step count)
    warm_optimizer: bool = False
    # the held-out halves' seed, fixed for a run (None: from each measurement's seed)
    halves_seed: int | None = None

    def __post_init__(self) -> None:
        if self.monte_carlo < 0:
            raise ValueError(f"monte_carlo must be ≥ 0, got {self.monte_carlo}")
        if self.warm_start and not self.decoder.converged:
            raise ValueError(
                "warm starts belong to the converged protocol: set vinfo_protocol=converged "
                "or drop decoder_warm_start"
            )
        if self.warm_optimizer and not self.warm_start:
            raise ValueError(
                "decoder_warm_optimizer continues a warm start's optimiser: set "
                "decoder_warm_start=true or drop decoder_warm_optimizer"
            )
        schedule_epochs(self.schedule, 1)  # validates the spelling before any training


def entropy_bits(targets: Tensor, num_classes: int) -> float:
    """Empirical entropy −Σ_k p_k log₂ p_k of integer targets (N,)."""
    p = torch.bincount(targets, minlength=num_classes).double() / targets.numel()
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


@torch.no_grad()
def encode(
    encoder: nn.Module, x: Tensor, batch_size: int, seed: int, device: torch.device | str,
    cache_bytes: int, compute: Compute = DEFAULT,
) -> Tensor:  # fmt: skip
    """Features (N, ...) of a frozen encoder, computed once in float32 in a fixed, seeded batch
    order (batch norm uses batch statistics) and stored in dataset order, images in `compute`'s
    memory format (indexing a batch keeps it, so decoders train and score in it)."""
    encoder = encoder.to(device).eval()
    order = batch_indices(x.shape[0], batch_size, torch.Generator().manual_seed(seed))
    features: Tensor | None = None
    for index in order:
        h = encoder(memory_format(x[index].to(device), compute))
        if features is None:
            size = x.shape[0] * h[0].numel() * h.element_size()
            home = device if size <= cache_bytes else "cpu"
            empty = torch.empty(x.shape[0], *h.shape[1:], dtype=h.dtype, device=home)
            features = memory_format(empty, compute)
        features[index.to(features.device)] = h.to(features.device)
    assert features is not None
    return features


def head_seeds(count: int, seed: int) -> list[int]:
    """The initialisation seeds of a measurement's `count` decoders."""
    generator = torch.Generator().manual_seed(derive_seed(seed, Stream.HEAD_INIT))
    return [int(s) for s in torch.randint(0, 2**62, (count,), generator=generator)]


@dataclass(frozen=True)
class Fitted:
    """Decoders trained on one target column each, then scored: per head k its fit, the
    entropy H(t_k) of its scored targets and its raw 𝒱-information H(t_k) − CE_k (bits; NaN
    for a diverged head)."""

    fits: list[HeadFit]
    entropy: list[float]
    bits: list[float]
    batching: str
    compute: str  # how the decoders trained (`Compute.describe`, and a compile fall-back)
    curves: dict[int, list[float]]  # budget → every head's raw bits after that many epochs
    state: DecoderState  # the trained decoders, for a warm start of the next measurement
    moments: bool = False  # a warm start that continued the optimiser's state too


# A stack's parameters and buffers by name ("params.<name>", "buffers.<name>"), on the CPU;
# with `VInfoConfig.warm_optimizer`, its optimiser's state too ("adamw.<key>.<name>").
DecoderState = dict[str, Tensor]
OPTIMIZER_STATE = "adamw."
ADAMW_STATE = ("step", "exp_avg", "exp_avg_sq")  # what AdamW (no amsgrad) keeps per parameter


def stack_state(stack: StackedDecoders) -> DecoderState:
    return {name: t.detach().cpu().clone() for name, t in _tensors(stack).items()}


def head_state(stack: StackedDecoders, k: int) -> DecoderState:
    """Head k's own slice of the stack's parameters and buffers (a copy)."""
    return {name: t[k].detach().clone() for name, t in _tensors(stack).items()}


@torch.no_grad()
def load_head(stack: StackedDecoders, k: int, state: DecoderState) -> None:
    for name, tensor in _tensors(stack).items():
        tensor[k] = state[name]


def _tensors(stack: StackedDecoders) -> dict[str, Tensor]:
    tensors = {f"params.{n}": p for n, p in stack.params.items()}
    return tensors | {f"buffers.{n}": b for n, b in stack.buffers.items()}


def optimizer_state(stack: StackedDecoders, optimizer: torch.optim.Optimizer) -> DecoderState:
    """The optimiser's state of every stacked parameter (AdamW: step, exp_avg, exp_avg_sq),
    by parameter name, copied to the CPU."""
    return {
        f"{OPTIMIZER_STATE}{key}.{name}": t.detach().cpu().clone()
        for name, p in stack.params.items()
        for key, t in optimizer.state.get(p, {}).items()
    }


@torch.no_grad()
def load_optimizer(
    stack: StackedDecoders, optimizer: torch.optim.Optimizer, state: DecoderState
) -> bool:
    """Continue `optimizer` from the optimiser state in `state` (`optimizer_state`); False,
    and the optimiser left fresh, when `state` holds none."""
    for name, p in stack.params.items():
        # looked up by exact name: a suffix match would confuse "0.weight" with "1.0.weight"
        mine = {k: state[f"{OPTIMIZER_STATE}{k}.{name}"] for k in ADAMW_STATE
                if f"{OPTIMIZER_STATE}{k}.{name}" in state}  # fmt: skip
        if not mine:
            return False
        # the step count stays where the optimiser keeps it (the CPU), the moments go to p's
        optimizer.state[p] = {
            k: t.clone() if k == "step" else t.to(p.device, copy=True) for k, t in mine.items()
        }
    return True


@torch.no_grad()
def load_stack(stack: StackedDecoders, state: DecoderState) -> None:
    """Start `stack` from a state of the same decoders (a warm start); a one-line ValueError
    when the state is of other decoders. An optimiser's state in it is `load_optimizer`'s."""
    mine = _tensors(stack)
    shapes = {n: tuple(t.shape) for n, t in state.items() if not n.startswith(OPTIMIZER_STATE)}
    if shapes != {n: tuple(t.shape) for n, t in mine.items()}:
        raise ValueError(OTHER_DECODERS)
    for name, tensor in mine.items():
        tensor.copy_(state[name])


def fit_and_score(
    make_decoder: Callable[[int], nn.Module],
    fit: tuple[Tensor, Tensor],
    score: tuple[Tensor, Tensor],
    num_classes: int,
    config: VInfoConfig,
    seed: int,
    device: torch.device | str,
    progress: Progress | None = None,
    warm: DecoderState | None = None,
    select: tuple[Tensor, Tensor] | None = None,
) -> Fitted:
    """Train one decoder per target column of fit = (features (N, ...), targets (N, K)) as one
    batched stack — fresh, or continuing from `warm` — and score each on `score` (at every
    budget, then at the end). With `select` (a validation set, or the fit set itself), the
    budgets are scored on it instead and each head ends with the best there of its budgets'
    weights and its final ones."""
    features, targets = fit
    compute = config.decoder.compute
    decoders = [make_decoder(s) for s in head_seeds(targets.shape[1], seed)]
    stack = StackedDecoders(decoders, device, compile=compute.compile)
    decoder = config.decoder.warm() if warm is not None else config.decoder
    optimizer = make_optimizer(stack, decoder)
    moments = False  # whether the optimiser continues too
    if warm is not None:
        load_stack(stack, warm)
        moments = config.warm_optimizer and load_optimizer(stack, optimizer, warm)
    generator = torch.Generator().manual_seed(derive_seed(seed, Stream.DECODER_ORDER))
    order = derive_seed(seed, Stream.SCORE_ORDER)
    batch = config.decoder.batch_size
    entropy = [entropy_bits(t.cpu(), num_classes) for t in score[1].T]
    checked = select or score
    checked_entropy = [entropy_bits(t.cpu(), num_classes) for t in checked[1].T]
    scored: dict[int, dict[int, float]] = {}  # budget → {head training then: CE in bits}
    best: dict[int, tuple[float, DecoderState]] = {}  # with `select`: head → its best budget

    def at_budget(budget: int, heads: Tensor) -> Tensor:
        ce = score_heads(stack, *checked, batch, order, device, heads) / LN2
        scored[budget] = dict(zip(heads.tolist(), ce.tolist(), strict=True))
        bits = torch.tensor([checked_entropy[k] for k in heads.tolist()], dtype=torch.float64)
        bits -= ce
        if select is not None:
            for k, value in zip(heads.tolist(), bits.tolist(), strict=True):
                if k not in best or value > best[k][0]:
                    best[k] = (value, head_state(stack, k))
        return bits

    fits = train_heads(
        stack, features, targets, decoder, generator, device, at_budget, progress, optimizer
    )
    if select is not None:  # the final weights compete too: a head stops between budgets
        final = torch.tensor(checked_entropy, dtype=torch.float64)
        final -= score_heads(stack, *checked, batch, order, device) / LN2
        for k, (value, weights) in best.items():
            if value > final[k]:
                load_head(stack, k, weights)
    state = stack_state(stack)
    if config.warm_optimizer:
        state |= optimizer_state(stack, optimizer)
    ce = (score_heads(stack, *score, batch, order, device) / LN2).tolist()
    bits = [
        h - c if f.stop != Stop.DIVERGED and math.isfinite(h - c) else math.nan
        for h, c, f in zip(entropy, ce, fits, strict=True)
    ]
    curves = {  # a head that stopped before a budget holds its final weights there
        budget: [
            checked_entropy[k] - scored[budget][k] if k in scored.get(budget, {}) else bits[k]
            for k in range(len(bits))
        ]
        for budget in decoder.curve()
    }
    ran = "; ".join(filter(None, [compute.describe(), stack.compiled.fallback]))
    return Fitted(fits, entropy, bits, stack.mode, ran, curves, state, moments)


def at_optimum(
    fitted: Fitted, head: nn.Module, features: Tensor, targets: Tensor, num_classes: int
) -> tuple[Fitted, list[AffineFit]]:
    """`fitted` with every head's bits replaced by the affine family's optimum on the same
    targets (`affine.fit_affine`); the trained decoders' values stay in the budget curves."""
    with torch.no_grad():
        z = torch.cat([head.features(features[i]).double() for i in _chunks(features.shape[0])])
    fits = fit_affine(z, targets.to(z.device), num_classes)
    bits = [h - f.ce / LN2 for h, f in zip(fitted.entropy, fits, strict=True)]
    return dataclasses.replace(fitted, bits=bits), fits


def _chunks(n: int, size: int = 4096) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _optimum_note(fits: list[AffineFit]) -> str:
    """How the optimum was certified: the largest gradient entry left (targets not separable)
    and how many targets were separable (value within affine.SEPARABLE nats of H(t))."""
    state = "converged" if all(f.converged for f in fits) else "NOT converged"
    gradients = [f.grad_max for f in fits if not f.separable]
    parts = [f"{AT_OPTIMUM}, {state}"]
    if gradients:
        parts.append(f"largest gradient entry {max(gradients):.1e}")
    if separable := sum(f.separable for f in fits):
        parts.append(f"{separable} of {len(fits)} targets separable (within 1e-4 nats of H(t))")
    if stalled := [f for f in fits if not f.converged]:
        gain = max(f.last_gain for f in stalled) / LN2
        parts.append(
            f"{len(stalled)} of {len(fits)} not certified (partly separable: the optimum is not "
            f"attained; the last {CHUNK} iterations still gained {gain:.1e} bits)"
        )
    parts.append("the trained decoders' values are the budget curve")
    return "; ".join(parts)


def _diverged(fitted: Fitted, names: list[str]) -> list[str]:
    return [
        f"{name} diverged (loss {fit.train_loss}); lower the decoder lr"
        for name, fit, bits in zip(names, fitted.fits, fitted.bits, strict=True)
        if math.isnan(bits)
    ]


def _heads(fitted: Fitted, names: list[str], first: int = 0) -> tuple[Head, ...]:
    """Heads first, first + 1, … of `fitted` under `names`."""
    return tuple(
        Head(name, fitted.fits[k], fitted.entropy[k], fitted.bits[k])
        for k, name in enumerate(names, first)
    )


def sufficiency(fitted: Fitted, protocol: str = IN_SAMPLE) -> Term:
    """I_𝒱(h → y) from head 0 (target y)."""
    curve = {b: bits[0] for b, bits in fitted.curves.items()}
    bits = fitted.bits[0]
    return Term(Quantity.SUFFICIENCY, bits, bits, protocol, _heads(fitted, [SUFF_HEAD]), curve)


def minimality(
    fitted: Fitted, num_digits: int, monte_carlo: int, protocol: str = IN_SAMPLE
) -> Term:
    """I_𝒱(h → Dec(x, 𝒴)) = the mean over the N_D digits of heads 1..N_D (the relabelling);
    heads after them are the Monte-Carlo relabellings' digits, summarised by mean and spread."""

    def mean(bits: list[float]) -> float:
        return sum(bits[1 : 1 + num_digits]) / num_digits if num_digits else math.nan

    spread = None
    if monte_carlo and num_digits:
        bits = torch.tensor(fitted.bits[1:]).reshape(1 + monte_carlo, num_digits).mean(1)
        spread = (float(bits.mean()), float(bits.std(correction=1)))
    heads = _heads(fitted, [digit_head(j) for j in range(num_digits)], first=1)
    raw = mean(fitted.bits)
    curve = {b: mean(bits) for b, bits in fitted.curves.items()}
    return Term(Quantity.MINIMALITY, raw, raw, protocol, heads, curve, spread)


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


def held_out_sufficiency(
    make_decoder: Callable[[int], nn.Module],
    features: Tensor,
    y: Tensor,
    num_classes: int,
    config: VInfoConfig,
    seed: int,
    device: torch.device | str,
    progress: Progress | None = None,
    warm: DecoderState | None = None,
) -> tuple[Term, list[str], DecoderState]:
    """Sufficiency fitted on a seeded, stratified half of the split and scored on the other
    half; under the converged protocol, early-stopped on a validation part of the fit half
    (the best of its budgets; the term's curve is its validation value). Returns the term, any
    error and the decoder's state."""
    converged = config.decoder.converged
    halves = seed if config.halves_seed is None else config.halves_seed
    fit, validation, scored = held_out_parts(y.cpu(), halves, converged)

    def part(index: Tensor) -> tuple[Tensor, Tensor]:
        return features[index.to(features.device)], y[index.to(y.device)][:, None]

    fitted = fit_and_score(
        make_decoder, part(fit), part(scored), num_classes, config,
        derive_seed(seed, Stream.HELD_OUT_FIT), device, progress, warm,
        select=part(validation) if converged else None,
    )  # fmt: skip
    curve = {b: bits[0] for b, bits in fitted.curves.items()}
    bits = fitted.bits[0]
    heads = _heads(fitted, [HELD_OUT_HEAD])
    protocol = HELD_OUT_HALVES
    if converged:
        protocol = (
            f"held_out: fit on {1 - VALIDATION:.0%} of a seeded half, early-stopped on the "
            f"other {VALIDATION:.0%} (its best budget; the curve is that validation value), "
            f"scored on the other half; {config.decoder.recipe(warm is not None, fitted.moments)}"
        )
    term = Term(Quantity.HELD_OUT, bits, bits, protocol, heads, curve)
    return term, _diverged(fitted, ["the held-out sufficiency decoder"]), fitted.state


def clipped(term: Term, clip_negative: bool) -> Term:
    """The term with its reported value clipped at 0 when asked (its raw value kept)."""
    if clip_negative and term.raw < 0:
        return dataclasses.replace(term, value=0.0)
    return term


def relabellings(labels: Tensor, num_classes: int, monte_carlo: int, seed: int) -> list[Tensor]:
    """The relabelling in dataset order, then `monte_carlo` ones in seeded within-class orders;
    each (N, N_D)."""
    return [relabel(labels, num_classes)] + [
        relabel(
            labels,
            num_classes,
            torch.Generator().manual_seed(derive_seed(seed, Stream.RELABELLING, m)),
        )
        for m in range(monte_carlo)
    ]


def targets(split: Split, num_classes: int, monte_carlo: int, seed: int) -> tuple[Tensor, int]:
    """Every decoder's target column (N, K): y, then the relabelling's N_D digits, then each
    Monte-Carlo relabelling's; and N_D."""
    digits = relabellings(split.y, num_classes, monte_carlo, seed)
    return torch.cat([split.y[:, None], *digits], 1), digits[0].shape[1]


def in_sample(
    make_decoder: Callable[[int], nn.Module],
    features: Tensor,
    columns: Tensor,
    num_digits: int,
    num_classes: int,
    config: VInfoConfig,
    seed: int,
    device: torch.device | str,
    progress: Progress,
    warm: DecoderState | None = None,
) -> tuple[list[Term], Decoders, list[str], DecoderState]:
    """Sufficiency and minimality, every decoder fitted and scored on the split (the affine
    optimum at l = L−1); how the decoders ran; what made a value undefined; the decoders'
    state. Under the converged protocol the affine optimum needs no trained decoders: its
    heads are certified by the optimum's own convergence."""
    affine = affine_pre(make_decoder(0))
    converged = config.decoder.converged
    if affine is not None and converged:
        fitted = optimum_only(
            affine.to(device), features, columns, num_classes, config.decoder.tolerance, warm
        )
    else:
        # converged: each decoder ends at the best of its budgets and its end (each bounds the
        # in-sample supremum from below, so the best of them is the estimate)
        fitted = fit_and_score(
            make_decoder, (features, columns), (features, columns), num_classes, config, seed,
            device, progress, warm, select=(features, columns) if converged else None,
        )  # fmt: skip
    protocol = IN_SAMPLE
    if affine is not None and not converged:
        fitted, optima = at_optimum(fitted, affine.to(device), features, columns, num_classes)
        protocol = f"{IN_SAMPLE}; {_optimum_note(optima)}"
    elif affine is not None:
        protocol = (
            f"{IN_SAMPLE}; {AT_OPTIMUM}, certified by its convergence (gradient, or separable) "
            f"or, where the optimum is not attained, by ≤ {config.decoder.tolerance:g} bits "
            f"gained over its last doubling of iterations; no SGD decoders"
        )
        if warm is not None:
            protocol += "; started from the previous measurement's optima"
    elif converged:
        rule = certification(config.decoder.warm() if warm is not None else config.decoder)
        protocol = f"{IN_SAMPLE}; {rule}; "
        protocol += config.decoder.recipe(warm is not None, fitted.moments)
    names = ["the sufficiency decoder"] + [
        f"minimality decoder {k}" for k in range(1, columns.shape[1])
    ]
    errors = _diverged(fitted, names)
    if num_digits == 0:
        errors.append("no class has two samples (N_D = 0): minimality is undefined")
    terms = [
        sufficiency(fitted, protocol),
        minimality(fitted, num_digits, config.monte_carlo, protocol),
    ]
    decoders = Decoders(asdict(config.decoder), fitted.batching, fitted.compute)
    return terms, decoders, errors, fitted.state


def certification(config: DecoderConfig) -> str:
    """The converged protocol's rule, in words."""
    return (
        f"converged: each decoder trained until certified (training loss ≤ "
        f"{config.loss_threshold:g} nats, or ≤ {config.tolerance:g} bits gained over its last "
        f"doubling of epochs, scored at {', '.join(map(str, config.curve()))}) or the cap "
        f"{config.max_epochs} (uncertified), and kept at the best of its budgets and its end"
    )


AFFINE_STATE = "affine.weights"  # the affine optima's weights in a decoder state


def optimum_only(
    head: nn.Module, features: Tensor, targets: Tensor, num_classes: int, tolerance: float,
    warm: DecoderState | None = None,
) -> Fitted:  # fmt: skip
    """Every head at the affine family's optimum, certified where the optimum converged or its
    last doubling of iterations gained ≤ `tolerance` bits; no decoder trained, so no budget
    curve. The solver starts from `warm` (the previous measurement's optima) when given, and
    the state returned holds these optima for the next."""
    with torch.no_grad():
        z = torch.cat([head.features(features[i]).double() for i in _chunks(features.shape[0])])
    start = None if warm is None else warm.get(AFFINE_STATE)
    if warm is not None and start is None:
        raise ValueError(OTHER_DECODERS)
    optima = fit_affine(z, targets.to(z.device), num_classes, tolerance=tolerance, start=start)
    entropy = [entropy_bits(t.cpu(), num_classes) for t in targets.T]
    fits = [  # the optimum's certificate, or its gain over the last doubling of iterations
        HeadFit(0, Stop.CERTIFIED if f.certified else Stop.MAX_EPOCHS, f.ce, f.certified,
                None if f.doubling_gain is None else f.doubling_gain / LN2)
        for f in optima
    ]  # fmt: skip
    bits = [h - f.ce / LN2 for h, f in zip(entropy, optima, strict=True)]
    state = {AFFINE_STATE: torch.stack([f.weights for f in optima])}
    return Fitted(fits, entropy, bits, "none", "float64 L-BFGS", {}, state)


def measure_vinfo(
    encoder: nn.Module,
    make_decoder: Callable[[int], nn.Module],
    split: Split,
    num_classes: int,
    config: VInfoConfig,
    seed: int = 0,
    device: torch.device | str = "cpu",
    label: str = "𝒱-information",
    warm: dict[str, DecoderState] | None = None,
) -> VInfoResult:
    """Sufficiency and minimality (bits) of encoder's features on `split`: features once, the
    targets, the decoders fitted (in-sample, then held-out when asked), the result assembled.

    The sufficiency decoder and every minimality decoder train together as one stack. Problems
    that make a value undefined (a single class, no relabelling digit, a diverged decoder) give
    NaN for that value and a message in the result's error; nothing is raised for them. While
    decoders train, a line tagged `label` reports progress every 20 s (`decoders.Progress`).

    Warm starts (`config.warm_start`, converged only): the decoders start from `warm` — the
    previous measurement's `decoder_state` of this (layer, split) — and the result carries
    theirs for the next one.
    """
    present = int((torch.bincount(split.y, minlength=num_classes) > 0).sum())
    if present < 2:
        return VInfoResult.failed(
            f"the split has {present} class(es): 𝒱-information needs at least two"
        )
    order = derive_seed(seed, Stream.ENCODE_ORDER)
    features = encode(
        encoder, split.x, config.decoder.batch_size, order, device, config.cache_bytes,
        config.decoder.compute,
    )  # fmt: skip
    columns, num_digits = targets(split, num_classes, config.monte_carlo, seed)
    progress = Progress(label)
    warm = warm or {}
    terms, decoders, errors, state = in_sample(
        make_decoder, features, columns.to(features.device), num_digits, num_classes, config,
        seed, device, progress, warm.get(IN_SAMPLE_STATE),
    )  # fmt: skip
    states = {IN_SAMPLE_STATE: state}
    if config.held_out:
        progress.label = f"{label}, held-out"
        held_out, held_out_errors, states[HELD_OUT_STATE] = held_out_sufficiency(
            make_decoder, features, split.y.to(features.device), num_classes, config, seed,
            device, progress, warm.get(HELD_OUT_STATE),
        )  # fmt: skip
        terms.append(held_out)
        errors += held_out_errors
    reported = [clipped(term, config.clip_negative) for term in terms]
    return VInfoResult(
        terms={term.quantity: term for term in reported},
        num_digits=num_digits,
        clipped=any(r.value != t.value for r, t in zip(reported, terms, strict=True)),
        decoders=decoders,
        error="; ".join(errors),
        decoder_state={k: v for k, v in states.items() if v} if config.warm_start else None,
    )
