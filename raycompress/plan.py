"""Which 𝒱-information measurements an epoch makes, written once for every executor.

    plan(depth, splits, seed, epoch, layer0, config)  →  [Measurement(layer, split, family,
                                                          seed), …]
    gather(plan, results, layer0, warm)       →  {(layer, split, family): result}, layer 0 in

An epoch's measurement covers every layer l = 0..L−1 (or those of `VInfoConfig.layers`,
`measured_layers`) on every split with every decoder family of the config, each (layer,
split) with its own seed derived from the run's seed by (epoch, layer, split) — the families
of one (layer, split) share it, and so their relabellings. Layer 0 (the empty encoder,
h^0 = x) never changes during training: it is measured at the first measurement of a run and
kept in `layer0` by (split, family) — only once it succeeded, so that a failed layer-0
measurement is tried again at the next one. Under warm starts, each measurement starts its
decoders from `warm[(layer, split, family)]`, the last decoder state it returned, and
`gather` moves each result's new state there (the run keeps the latest only, in its
checkpoint). The executors run the planned measurements and nothing else:
`measure_in_process` here, `trainable.RayVInfo` as Ray tasks; both call `measure_layer`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from raycompress.metrics.families import Family
from raycompress.metrics.vinfo import VInfoConfig, measure_vinfo
from raycompress.models import LayeredNet, ModelSpec, build_model
from raycompress.sampling import Split
from raycompress.schema import VInfoKey, VInfoResult
from raycompress.seeds import Stream, derive_seed


@dataclass(frozen=True)
class Measurement:
    """One planned (layer, split, family) measurement and its seed."""

    layer: int
    split: str
    family: Family
    seed: int

    @property
    def key(self) -> VInfoKey:
        return self.layer, self.split, self.family.label


def measurement_seed(run_seed: int, epoch: int, layer: int, split: str) -> int:
    return derive_seed(run_seed, Stream.VINFO, epoch, layer, split)


def measured_layers(layers: Sequence[int] | None, depth: int) -> list[int]:
    """The layers l of 0..depth−1 that `layers` names (None: all; −k: depth − k), or a
    one-line ValueError for a layer the network does not have."""
    if layers is None:
        return list(range(depth))
    wrong = [layer for layer in layers if not -depth <= layer < depth]
    if wrong:
        raise ValueError(
            f"vinfo_layers {list(layers)}: this network has 𝒱-information layers 0..{depth - 1} "
            f"(or −1..−{depth}), not {wrong}"
        )
    return sorted({layer % depth for layer in layers})


# (split, family label) → the layer-0 result kept for the rest of the run
Layer0 = dict[tuple[str, str], VInfoResult]
# (layer, split, family label) → the decoder state its last measurement returned (warm starts)
WarmStates = dict[VInfoKey, Any]


def plan(
    depth: int,
    splits: Iterable[str],
    run_seed: int,
    epoch: int,
    layer0: Layer0,
    config: VInfoConfig,
) -> list[Measurement]:
    """The measurements of one epoch: every (layer, split, family) of the config's layers
    (None: all) and families, layer 0 only where not kept."""
    return [
        Measurement(layer, split, family, measurement_seed(run_seed, epoch, layer, split))
        for layer in measured_layers(config.layers, depth)
        for split in splits
        for family in config.families
        if not (layer == 0 and (split, family.label) in layer0)
    ]


def gather(
    planned: list[Measurement],
    results: list[VInfoResult],
    layer0: Layer0,
    warm: WarmStates | None = None,
) -> dict[VInfoKey, VInfoResult]:
    """The epoch's values by (layer, split, family): the measured ones and the kept layer 0.
    A layer-0 measurement that succeeded (no error) is kept in `layer0` for the rest of the
    run; a result's decoder state moves into `warm` (a failed one leaves the last state there;
    layer 0's and, without `warm`, every one is dropped)."""
    out = {(0, split, family): result for (split, family), result in layer0.items()}
    for m, result in zip(planned, results, strict=True):
        if result.decoder_state is not None:
            if warm is not None and m.layer > 0:  # layer 0 is measured once: never continued
                warm[m.key] = result.decoder_state
            result = dataclasses.replace(result, decoder_state=None)
        out[m.key] = result
        if m.layer == 0 and not result.error:
            layer0[m.split, m.family.label] = result
    return dict(sorted(out.items()))


def measure_layer(
    spec: ModelSpec,
    state: dict[str, Tensor],
    m: Measurement,
    split: Split,
    config: VInfoConfig,
    device: torch.device | str = "cpu",
    warm: Any = None,
) -> VInfoResult:
    """One planned measurement from plain inputs (the model's spec and weights, the decoder
    state to start from): what every executor runs, so that a seed gives the same values in
    this process and in a Ray task."""
    model = build_model(spec)
    model.load_state_dict(state)
    label = f"𝒱-information l={m.layer} {m.split} {m.family.label}"
    return measure_vinfo(
        model.encoder(m.layer), m.family.decoder(model, m.layer), split, spec.num_classes,
        config, m.seed, device, label=label, warm=warm,
    )  # fmt: skip


def measure_in_process(
    model: LayeredNet,
    splits: dict[str, Split],
    config: VInfoConfig,
    run_seed: int,
    epoch: int,
    layer0: Layer0,
    warm: WarmStates | None = None,
) -> dict[VInfoKey, VInfoResult]:
    """Every planned (layer, split, family) of `model` in this process, one after another
    (from and into `warm`, see `gather`)."""
    starts = warm or {}
    device = next(model.parameters()).device
    state = {k: v.detach() for k, v in model.state_dict().items()}
    planned = plan(model.depth, splits, run_seed, epoch, layer0, config)
    results = [
        measure_layer(model.spec, state, m, splits[m.split], config, device, starts.get(m.key))
        for m in planned
    ]
    return gather(planned, results, layer0, warm)
