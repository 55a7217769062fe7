"""𝒱-information of one layer on one split, in bits (Xu et al. 2020; thesis §1.3 and §2.2).

    I_𝒱(h^l → t) = H(t) − CE(t | h^l)   [bits]

H(t) is the empirical entropy of target t on the scored samples; CE is the cross-entropy of a
freshly initialised decoder f^{L:l+1} trained on the frozen encoder's features and scored after
training over every scored sample.

    sufficiency  I_𝒱(h^l → y):            t = the labels
    minimality   I_𝒱(h^l → Dec(x, 𝒴)):    t = each base-C digit of the relabelling r(x)
                                          (thesis Algorithm 2, `data.relabel`); mean over digits

Protocols. The thesis fits and scores each decoder on the same split ("in_sample", the
default). Sufficiency can also be measured "held_out": fit on a seeded, stratified half of the
split, score on the other half. Minimality is in-sample by definition: its relabellings are
arbitrary, so no decoder predicts them on unseen samples and a held-out minimality is ≤ 0 by
construction.

Speed: the encoder runs once per measurement and its features are cached (on the device, or in
host memory above a budget); the sufficiency decoder and every minimality decoder train
together as one batched step (`decoders.StackedDecoders`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
from torch import Tensor, nn

from raycompress.data import Split, batch_indices, relabel, stratified_subset
from raycompress.decoders import DecoderConfig, HeadFit, StackedDecoders, score_heads, train_heads
from raycompress.models import LayeredNet, ModelSpec, build_model

LN2 = math.log(2)


def schedule_epochs(schedule: str | Sequence[int], max_epochs: int) -> frozenset[int]:
    """The epochs at which 𝒱-information is measured.

    "every" (default), "every:K" (K, 2K, …), "log:N" (N log-spaced epochs from 1 to
    max_epochs, rounded, duplicates merged), "none", or an explicit list of epochs.
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
    if schedule == "none":
        return frozenset()
    raise ValueError(
        f"unknown 𝒱-information schedule {schedule!r}: use every, every:K, log:N, none or a list"
    )


@dataclass(frozen=True)
class VInfoConfig:
    """What a 𝒱-information measurement does; recorded beside its values."""

    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    schedule: str | tuple[int, ...] = "every"  # see schedule_epochs
    held_out: bool = False  # also measure sufficiency fitted on one half, scored on the other
    monte_carlo: int = 0  # extra relabellings with seeded within-class orders
    clip_negative: bool = False  # clip v_suff / v_min at 0 (raw per-head values are kept)
    cache_bytes: int = 2 << 30  # cached features above this size stay in host memory

    def __post_init__(self) -> None:
        if self.monte_carlo < 0:
            raise ValueError(f"monte_carlo must be ≥ 0, got {self.monte_carlo}")
        schedule_epochs(self.schedule, 1)  # validates the spelling before any training


def entropy_bits(targets: Tensor, num_classes: int) -> float:
    """Empirical entropy −Σ_k p_k log₂ p_k of integer targets (N,)."""
    p = torch.bincount(targets, minlength=num_classes).double() / targets.numel()
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


@torch.no_grad()
def encode(
    encoder: nn.Module, x: Tensor, batch_size: int, seed: int, device: torch.device | str,
    cache_bytes: int,
) -> Tensor:  # fmt: skip
    """Features (N, ...) of a frozen encoder, computed once in a fixed, seeded batch order (batch
    norm uses batch statistics) and stored in dataset order."""
    encoder = encoder.to(device).eval()
    order = batch_indices(x.shape[0], batch_size, torch.Generator().manual_seed(seed))
    features: Tensor | None = None
    for index in order:
        h = encoder(x[index].to(device))
        if features is None:
            size = x.shape[0] * h[0].numel() * h.element_size()
            home = device if size <= cache_bytes else "cpu"
            features = torch.empty(x.shape[0], *h.shape[1:], dtype=h.dtype, device=home)
        features[index.to(features.device)] = h.to(features.device)
    assert features is not None
    return features


def _heads(
    make_decoder: Callable[[int], nn.Module], count: int, seed: int, device: torch.device | str
) -> StackedDecoders:
    seeds = torch.randint(0, 2**62, (count,), generator=torch.Generator().manual_seed(seed))
    return StackedDecoders([make_decoder(int(s)) for s in seeds], device)


def _fit_and_score(
    make_decoder: Callable[[int], nn.Module],
    fit: tuple[Tensor, Tensor],
    score: tuple[Tensor, Tensor],
    config: VInfoConfig,
    seed: int,
    device: torch.device | str,
) -> tuple[list[HeadFit], Tensor, str]:
    """Train one head per target column on `fit`; return the fits, the CE (bits) on `score`
    and how the heads were batched."""
    stack = _heads(make_decoder, fit[1].shape[1], seed, device)
    generator = torch.Generator().manual_seed(seed + 1)
    fits = train_heads(stack, *fit, config.decoder, generator, device)
    ce = score_heads(stack, *score, config.decoder.batch_size, seed + 2, device)
    return fits, ce / LN2, stack.mode


def measure_vinfo(
    encoder: nn.Module,
    make_decoder: Callable[[int], nn.Module],
    split: Split,
    num_classes: int,
    config: VInfoConfig,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, float | int | str | bool]:
    """Sufficiency and minimality (bits) of encoder's features on `split`, as plain numbers.

    Problems that make a value undefined (a single class, no relabelling digit, a diverged
    decoder) give NaN for that value and a message under "error"; nothing is raised for them.
    """
    errors: list[str] = []
    out: dict[str, float | int | str | bool] = {}
    present = int((torch.bincount(split.y, minlength=num_classes) > 0).sum())
    if present < 2:
        return {
            "v_suff": math.nan, "v_min": math.nan,
            "error": f"the split has {present} class(es): 𝒱-information needs at least two",
        }  # fmt: skip
    features = encode(encoder, split.x, config.decoder.batch_size, seed, device, config.cache_bytes)
    y = split.y.to(features.device)
    relabellings = [relabel(split.y, num_classes)] + [
        relabel(split.y, num_classes, torch.Generator().manual_seed(seed + 100 + m))
        for m in range(config.monte_carlo)
    ]
    num_digits = relabellings[0].shape[1]
    targets = torch.cat([split.y[:, None], *relabellings], 1).to(features.device)  # (N, K)
    fits, ce, batching = _fit_and_score(
        make_decoder, (features, targets), (features, targets), config, seed, device
    )
    entropies = [entropy_bits(targets[:, k].cpu(), num_classes) for k in range(targets.shape[1])]
    raw = [h - c for h, c in zip(entropies, ce.tolist(), strict=True)]
    for k, fit in enumerate(fits):
        if fit.stop == "diverged" or not math.isfinite(raw[k]):
            name = "the sufficiency decoder" if k == 0 else f"minimality decoder {k}"
            errors.append(f"{name} diverged (loss {fit.train_loss}); lower the decoder lr")
            raw[k] = math.nan

    out.update(
        h_y_bits=entropies[0], v_suff_raw=raw[0], suff_epochs=fits[0].epochs,
        suff_stop=fits[0].stop, suff_protocol="in_sample: fit on the split, scored on it",
    )  # fmt: skip
    if num_digits == 0:
        errors.append("no class has two samples (N_D = 0): minimality is undefined")
    digits = raw[1 : 1 + num_digits]
    for j, (value, fit) in enumerate(zip(digits, fits[1 : 1 + num_digits], strict=True)):
        out[f"v_min_digit{j}_raw"] = value
        out[f"h_digit{j}_bits"] = entropies[1 + j]
        out[f"digit{j}_epochs"] = fit.epochs
        out[f"digit{j}_stop"] = fit.stop
    out["num_digits"] = num_digits
    out["v_min_raw"] = sum(digits) / num_digits if num_digits else math.nan
    out["min_protocol"] = "in_sample: fit on the split, scored on it"
    if config.monte_carlo and num_digits:
        per_relabelling = torch.tensor(raw[1:]).reshape(1 + config.monte_carlo, num_digits).mean(1)
        out["v_min_mc_mean"] = float(per_relabelling.mean())
        out["v_min_mc_std"] = float(per_relabelling.std(correction=1))
    if config.held_out:
        out.update(
            _held_out_sufficiency(make_decoder, features, y, num_classes, config, seed, device)
        )
    out["v_suff"], clip_suff = _clip(out["v_suff_raw"], config)
    out["v_min"], clip_min = _clip(out["v_min_raw"], config)
    clip_held = False
    if config.held_out:
        out["v_suff_held_out"], clip_held = _clip(out["v_suff_held_out_raw"], config)
    out["clipped"] = clip_suff or clip_min or clip_held
    out["decoder_config"] = repr(asdict(config.decoder))
    out["decoder_batching"] = batching
    out["error"] = "; ".join(errors)
    return out


def _held_out_sufficiency(
    make_decoder: Callable[[int], nn.Module],
    features: Tensor,
    y: Tensor,
    num_classes: int,
    config: VInfoConfig,
    seed: int,
    device: torch.device | str,
) -> dict[str, float | int | str]:
    half = stratified_subset(y.cpu(), y.numel() // 2, torch.Generator().manual_seed(seed + 3))
    rest = torch.ones(y.numel(), dtype=torch.bool)
    rest[half] = False
    other = torch.nonzero(rest).flatten()
    fit_set = (features[half.to(features.device)], y[half.to(y.device)][:, None])
    score_set = (features[other.to(features.device)], y[other.to(y.device)][:, None])
    fits, ce, _ = _fit_and_score(make_decoder, fit_set, score_set, config, seed + 7, device)
    h = entropy_bits(score_set[1][:, 0].cpu(), num_classes)
    return {
        "v_suff_held_out_raw": h - float(ce[0]),
        "held_out_epochs": fits[0].epochs,
        "held_out_stop": fits[0].stop,
        "held_out_protocol": "held_out: fit on a seeded half, scored on the other half",
    }


def _clip(value: float, config: VInfoConfig) -> tuple[float, bool]:
    if config.clip_negative and value < 0:
        return 0.0, True
    return value, False


def measure_layer(
    spec: ModelSpec,
    state: dict[str, Tensor],
    layer: int,
    split: Split,
    config: VInfoConfig,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, float | int | str | bool]:
    """One (layer, split) measurement from plain inputs — what a Ray remote task runs."""
    model = build_model(spec)
    model.load_state_dict(state)
    out = measure_vinfo(
        model.encoder(layer), partial(model.fresh_decoder, layer), split,
        spec.num_classes, config, seed, device,
    )  # fmt: skip
    return {"layer": layer, **out}


def vinfo_seed(seed: int, layer: int, split_index: int) -> int:
    """The seed of one (layer, split) measurement, the same in this process and in a Ray task.

    Hashed, so that the seed + k streams a measurement derives never meet another's.
    """
    digest = hashlib.sha256(f"{seed}/{layer}/{split_index}".encode()).digest()
    return int.from_bytes(digest[:6], "little")


def measure_model(
    model: LayeredNet,
    splits: dict[str, Split],
    config: VInfoConfig,
    seed: int,
    layer0: dict[str, dict],
) -> dict[tuple[int, str], dict[str, float | int | str | bool]]:
    """Every (layer, split) of `model` in this process, l = 0..L−1.

    Layer 0 (the empty encoder) never changes during training: it is measured once and kept in
    `layer0`, which the caller holds for the whole run.
    """
    device = next(model.parameters()).device
    results = {}
    for layer in range(model.depth):
        for index, (name, split) in enumerate(splits.items()):
            if layer == 0 and name in layer0:
                results[0, name] = layer0[name]
                continue
            results[layer, name] = measure_vinfo(
                model.encoder(layer), partial(model.fresh_decoder, layer), split,
                model.spec.num_classes, config, vinfo_seed(seed, layer, index), device,
            )  # fmt: skip
            if layer == 0:
                layer0[name] = results[0, name]
    return results
