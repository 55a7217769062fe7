"""𝒱-information of one layer on one split, in bits (Xu et al. 2020; thesis §1.3 and §2.2).

    I_𝒱(h^l → t) = H(t) − inf_{f ∈ 𝒱} CE(t | f(h^l))   [bits]

H(t) is the empirical entropy of target t on the scored samples, 𝒱 a decoder family
(`families`: the network above l, every affine map, a one-hidden-layer mlp), and the infimum
is reached by fitting the family's decoders on the frozen encoder's features and scoring them
over every scored sample.

    sufficiency  I_𝒱(h^l → y):            t = the labels
    minimality   I_𝒱(h^l → Dec(x, 𝒴)):    t = each base-C digit of the relabelling r(x)
                                          (thesis Algorithm 2, `sampling.relabel`); mean over digits

Every family answers one call, `fit_in_sample`: its decoders fitted, each with its certificate,
and the state a warm start continues from. A decoder affine in its input (the linear family;
the network's at l = L−1, its head on pooled features) is the convex problem's optimum
(`affine.fit_affine`, float64); any other trains by SGD as one batched stack
(`decoders.StackedDecoders`, `fit_and_score`), scored at the protocol's budgets along the way
(`Term.curve`; its last gain is the convergence indicator); an mlp wide enough to hold every
affine map starts at the linear optimum (`families.MLPDecoder.start_at`), so it never reads
less than the family it contains. A certified value within the certificate's slack of its
ceiling H(t) is marked saturated: the family memorises the split.

Protocols. Each decoder is fitted and scored on the same split ("in_sample", the thesis').
Sufficiency can also be "held_out": fit on a seeded, stratified half, scored on the other half
(by SGD for every family). Minimality is in-sample by definition: a relabelling is arbitrary,
so no decoder predicts it on unseen samples.

The result is a `schema.VInfoResult`: one `schema.Term` per quantity, with its protocol, its
decoders (`schema.Head`) and its budget curve. The encoder runs once per measurement and its
features are cached (on the device, or in host memory above a budget); every stream (batch
orders, initialisations, relabellings, halves) is derived from the measurement's one seed by
name (`seeds.Stream`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from raycompress.compute import DEFAULT, Compute, memory_format
from raycompress.metrics.affine import CHUNK, AffineFit, affine_pre, fit_affine
from raycompress.metrics.decoders import (
    LN2,
    OTHER_DECODERS,
    Budgets,
    DecoderConfig,
    DecoderState,
    Progress,
    StackedDecoders,
    make_optimizer,
    score_heads,
    train_heads,
)
from raycompress.metrics.families import LINEAR, AffineStart, Family, MLPDecoder, linear_starts
from raycompress.protocol import schedule_epochs
from raycompress.sampling import VALIDATION, Split, batch_indices, held_out_parts, relabel
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

IN_SAMPLE = "in_sample: fit on the split, scored on it"
SOLVER = "float64 Newton-CG on whitened features, every head at once"  # `affine.fit_affine`
AT_OPTIMUM = f"the affine decoder at its optimum ({SOLVER})"
HELD_OUT_HALVES = "held_out: fit on a seeded half, scored on the other half"
IN_SAMPLE_STATE, HELD_OUT_STATE = "in_sample", "held_out"  # the decoder states of a measurement


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
    families: tuple[Family, ...] = (Family(),)  # 𝒱: each family measured at every (layer, split)

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
        if self.warm_optimizer and not any(f.trained for f in self.families):
            raise ValueError(
                "decoder_warm_optimizer continues AdamW's moments, and the linear family has "
                "none (L-BFGS solves it): drop decoder_warm_optimizer"
            )
        if not self.decoder.converged and any(f.name == LINEAR for f in self.families):
            raise ValueError(
                "the linear family is solved to its optimum, which the thesis protocol's fixed "
                "decoder budget does not change: use vinfo_protocol=converged with it"
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
    """A family's decoders fitted on one target column each, then scored — what every family
    returns: per head k its fit (with its certificate), the entropy H(t_k) of its scored
    targets and its raw 𝒱-information H(t_k) − CE_k (bits; NaN for a diverged head), and the
    state a warm start of the next measurement continues from."""

    fits: list[HeadFit]
    entropy: list[float]
    bits: list[float]
    batching: str
    compute: str  # how the decoders trained (`Compute.describe`, and a compile fall-back)
    curves: dict[int, list[float]]  # budget → every head's raw bits after that many epochs
    state: DecoderState  # the trained decoders, for a warm start of the next measurement
    moments: bool = False  # a warm start that continued the optimiser's state too


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
    start: Sequence[AffineStart] | None = None,
) -> Fitted:
    """The SGD families: one decoder per target column of fit = (features (N, ...), targets
    (N, K)) trained as one batched stack — fresh, or continuing from `warm` — and scored on
    `score` (at every budget, then at the end). With `select` (a validation set, or `score`
    itself: in-sample, then scored once), the budgets are scored on it instead and each head
    ends with the best there of its budgets' weights and its final ones. `start` (with
    `select`): head k begins as the affine map start[k] (`families.MLPDecoder.start_at`), or as its
    warm state where that scores higher, and that start competes as budget 0."""
    features, targets = fit
    decoders = [make_decoder(s) for s in head_seeds(targets.shape[1], seed)]
    for built, affine in zip(decoders, start or (), strict=start is not None):
        built.start_at(*affine)
    stack = StackedDecoders(decoders, device, compile=config.decoder.compute.compile)
    decoder = config.decoder.warm() if warm is not None else config.decoder
    optimizer = make_optimizer(stack, decoder)
    checked = select or score
    budgets = Budgets(
        stack, checked, _entropies(checked[1], num_classes), config.decoder.batch_size,
        derive_seed(seed, Stream.SCORE_ORDER), device, keep_best=select is not None,
    )  # fmt: skip
    moments = _begin(
        stack, budgets, warm, optimizer if config.warm_optimizer else None, start is not None
    )
    generator = torch.Generator().manual_seed(derive_seed(seed, Stream.DECODER_ORDER))
    fits = train_heads(stack, features, targets, decoder, generator, device, budgets, progress,
                       optimizer, budgets.in_sample() if checked is fit else None)  # fmt: skip
    final = budgets.finish()
    entropy = _entropies(score[1], num_classes)
    if checked is not score:  # chosen on a validation set: scored on `score` once more
        ce = score_heads(stack, *score, budgets.batch, budgets.order, device)
        final = entropy - ce / LN2
    bits = [
        b if f.stop != Stop.DIVERGED and math.isfinite(b) else math.nan
        for b, f in zip(final.tolist(), fits, strict=True)
    ]
    ran = "; ".join(filter(None, [config.decoder.compute.describe(), stack.compiled.fallback]))
    state = stack.state(optimizer if config.warm_optimizer else None)
    curves = budgets.curves(decoder.curve(), bits)
    return Fitted(fits, entropy.tolist(), bits, stack.mode, ran, curves, state, moments)


def _begin(
    stack: StackedDecoders, budgets: Budgets, warm: DecoderState | None,
    optimizer: torch.optim.Optimizer | None, embedded: bool,
) -> bool:  # fmt: skip
    """Each head's first weights: the stack as built, or `warm`; when the built stack holds
    embedded starts, per head the better-scoring of the two, kept as budget 0 so that a
    start no SGD epoch improves on is the value. Whether the optimiser continues."""
    heads = torch.arange(len(stack))
    built = [stack.head_state(k) for k in heads.tolist()] if embedded else []
    start = budgets.score() if embedded else None
    moments = warm is not None and stack.load(warm, optimizer)
    if start is not None and warm is not None:
        continued = budgets.score()
        for k in torch.nonzero(start > continued).flatten().tolist():
            stack.load_head(k, built[k])
        start = torch.maximum(start, continued)
    if start is not None:
        budgets.record(0, heads, start)
    return moments


def _entropies(targets: Tensor, num_classes: int) -> Tensor:
    """H(t_k) in bits of each target column of targets (N, K)."""
    return torch.tensor(
        [entropy_bits(t.cpu(), num_classes) for t in targets.T], dtype=torch.float64
    )


def at_optimum(
    fitted: Fitted, head: nn.Module, features: Tensor, targets: Tensor, num_classes: int
) -> tuple[Fitted, list[AffineFit]]:
    """`fitted` with every head's bits replaced by the affine family's optimum on the same
    targets (`affine.fit_affine`); the trained decoders' values stay in the budget curves."""
    fits = _optima(head, features, targets, num_classes)
    bits = [h - f.ce / LN2 for h, f in zip(fitted.entropy, fits, strict=True)]
    return dataclasses.replace(fitted, bits=bits), fits


@torch.no_grad()
def _optima(head: nn.Module, features: Tensor, targets: Tensor, num_classes: int,
            **solver: Any) -> list[AffineFit]:  # fmt: skip
    """The affine optimum of every target column on the head's input features."""
    n = features.shape[0]
    z = torch.cat([head.features(features[i : i + 4096]).double() for i in range(0, n, 4096)])
    return fit_affine(z, targets.to(z.device), num_classes, **solver)


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
    """Sufficiency and minimality, every decoder fitted and scored on the split
    (`fit_in_sample`), certified values marked where they sit at their ceiling; how the
    decoders ran; what made a value undefined; the decoders' state."""
    fitted, protocol = fit_in_sample(
        make_decoder, features, columns, num_classes, config, seed, device, progress, warm
    )
    names = ["the sufficiency decoder"] + [
        f"minimality decoder {k}" for k in range(1, columns.shape[1])
    ]
    errors = _diverged(fitted, names)
    if num_digits == 0:
        errors.append("no class has two samples (N_D = 0): minimality is undefined")
    slack = saturation_slack(config.decoder)
    terms = [
        saturation(sufficiency(fitted, protocol), slack),
        saturation(minimality(fitted, num_digits, config.monte_carlo, protocol), slack),
    ]
    decoders = Decoders(asdict(config.decoder), fitted.batching, fitted.compute)
    return terms, decoders, errors, fitted.state


def fit_in_sample(
    make_decoder: Callable[[int], nn.Module],
    features: Tensor,
    columns: Tensor,
    num_classes: int,
    config: VInfoConfig,
    seed: int,
    device: torch.device | str,
    progress: Progress,
    warm: DecoderState | None = None,
) -> tuple[Fitted, str]:
    """Every family's one interface: its decoders fitted on the split and scored there, and the
    protocol behind their values. A decoder affine in its input (the linear family, and the
    network's at l = L−1) is at the family's optimum: under converged no SGD decoder trains,
    the optimum's convergence certifies it; under the thesis' recipe the trained decoders'
    values stay as the budget curve. Every other family's decoders train (`fit_and_score`)."""
    probe = make_decoder(0)
    affine = affine_pre(probe)
    converged = config.decoder.converged
    if affine is not None and converged:
        fitted = optimum_only(
            affine.to(device), features, columns, num_classes, config.decoder.tolerance, warm
        )
        protocol = (  # the solver's description names the form that ran and its rank
            f"{IN_SAMPLE}; the affine decoder at its optimum ({fitted.compute}), certified by "
            "its convergence (gradient, or separable) "
            f"or, where the optimum is not attained, by ≤ {config.decoder.tolerance:g} bits "
            f"gained over its last doubling of iterations; no SGD decoders"
        )
        if warm is not None:
            protocol += "; started from the previous measurement's optima"
        return fitted, protocol
    # converged: each decoder ends at the best of its budgets and its end (each bounds the
    # in-sample supremum from below, so the best of them is the estimate)
    data = (features, columns)
    starts = converged and isinstance(probe, MLPDecoder) and probe.embeds_affine()
    start, optima = None, None
    if starts:  # the mlp holds every affine map: its supremum is at least the linear one's
        previous = None if warm is None else warm.get(AFFINE_STATE)
        tolerance = config.decoder.tolerance
        start, optima = linear_starts(features, columns, num_classes, tolerance, previous)
        warm = None if warm is None else {k: v for k, v in warm.items() if k != AFFINE_STATE}
    fitted = fit_and_score(
        make_decoder, data, data, num_classes, config, seed, device, progress, warm,
        select=data if converged else None, start=start,
    )  # fmt: skip
    if optima is not None:
        fitted = dataclasses.replace(fitted, state=fitted.state | {AFFINE_STATE: optima})
    if affine is not None:
        fitted, optima = at_optimum(fitted, affine.to(device), features, columns, num_classes)
        return fitted, f"{IN_SAMPLE}; {_optimum_note(optima)}"
    if not converged:
        return fitted, IN_SAMPLE
    rule = certification(config.decoder.warm() if warm is not None else config.decoder)
    protocol = f"{IN_SAMPLE}; {rule}; {config.decoder.recipe(warm is not None, fitted.moments)}"
    if starts:
        protocol += f"; each decoder started at the linear family's optimum ({SOLVER})" + (
            " where it scored above the warm start" if warm is not None else ""
        )  # a certificate of SGD from there: a fresh start can climb further (docs/benchmarks.md)
        protocol += (
            f"; a start within {config.decoder.tolerance:g} bits of H(t) certified as it is, "
            "any other as SGD from that start, a lower bound of the family's supremum"
        )
    return fitted, protocol


def saturation_slack(config: DecoderConfig) -> float:
    """How close to its ceiling (bits) a certified value is at it: within the doubling rule's
    tolerance, or the loss threshold's bits (a head certified there has CE ≤ that much)."""
    return max(config.tolerance, config.stop_loss / LN2)


def saturation(term: Term, slack: float) -> Term:
    """The term marked saturated when it is certified and its raw value lies within `slack`
    bits of its ceiling H(t) (`Term.entropy`): the family memorises this split. Unjudged
    (None) where the value is not certified."""
    if not term.certified:
        return term
    return dataclasses.replace(term, saturated=term.entropy - term.raw <= slack)


def certification(config: DecoderConfig) -> str:
    """The converged protocol's rule, in words."""
    tolerance = f"{config.tolerance:g} bits"
    return (
        f"converged: each decoder trained until certified (training loss ≤ "
        f"{config.stop_loss:.4g} nats and a score within {tolerance} of H(t); or, over its last "
        f"quadrupling of epochs, a score that moved ≤ {tolerance} either way and a best epoch "
        f"loss that fell ≤ {config.tolerance * LN2:.4g} nats; scored at "
        f"{', '.join(map(str, config.curve()))}) or the cap {config.max_epochs} (uncertified), "
        "and kept at the best of its budgets and its end"
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
    start = None if warm is None else warm.get(AFFINE_STATE)
    if warm is not None and start is None:
        raise ValueError(OTHER_DECODERS)
    optima = _optima(head, features, targets, num_classes, tolerance=tolerance, start=start)
    entropy = [entropy_bits(t.cpu(), num_classes) for t in targets.T]
    fits = [  # the optimum's certificate, or its gain over the last doubling of iterations
        HeadFit(0, Stop.CERTIFIED if f.certified else Stop.MAX_EPOCHS, f.ce, f.certified,
                None if f.doubling_gain is None else f.doubling_gain / LN2)
        for f in optima
    ]  # fmt: skip
    bits = [h - f.ce / LN2 for h, f in zip(entropy, optima, strict=True)]
    state = {AFFINE_STATE: torch.stack([f.weights for f in optima])}
    solver = f"{SOLVER} ({optima[0].form} form, rank {optima[0].rank})"
    return Fitted(fits, entropy, bits, "none", solver, {}, state)


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
    """Sufficiency and minimality (bits) of encoder's features on `split` under the family
    of `make_decoder`: features once, the targets, the decoders fitted (in-sample, then
    held-out when asked), the result assembled. What makes a value undefined (a single class,
    no relabelling digit, a diverged decoder) is NaN and a message in the result's error, never
    raised; a line tagged `label` reports progress every 20 s (`decoders.Progress`). With
    `config.warm_start` the decoders start from `warm`, the previous measurement's
    `decoder_state`, and the result carries theirs for the next one."""
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
