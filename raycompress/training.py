"""The thesis' training protocol (§2.3), one epoch at a time.

Cross-entropy, AdamW (PyTorch defaults but the learning rate), constant lr 2e-3, batch size
400, until the training loss ≤ 0.02 or 50 epochs. The stopping loss is the epoch's mean
training-step loss, as the thesis logged it; the loss and accuracy at the epoch's final weights
come from the measurement pass (`metrics.measure_collapse`), which sees every layer anyway.

Reproducible on the CPU: the initialisation and the batch order come from their own seeded
streams (`seeds.Stream`), never from global RNG state. The training steps run as
`TrainConfig.compute` says (precision, channels_last, compile); the measurement passes always
run in float32, on a float32 copy of the weights where they train in bfloat16.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from raycompress import compute, protocol
from raycompress.compute import Compiled, Compute
from raycompress.data import Dataset
from raycompress.metrics.baselines import measure_baselines
from raycompress.metrics.collapse import CollapseConfig, measure_collapse
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import LayeredNet
from raycompress.plan import Layer0, WarmStates, measure_in_process
from raycompress.sampling import Split, batch_indices
from raycompress.schema import NETWORK, SPLITS, EpochRecord, VInfoKey, VInfoResult
from raycompress.seeds import Stream, derive_seed
from raycompress.stopping import Stop, stop_reason


@dataclass(frozen=True)
class TrainConfig(protocol.Optimisation):
    """The main network's training: the shared optimisation and the run's seed."""

    seed: int = 0


def make_optimizer(model: LayeredNet, config: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def train_epoch(
    model: LayeredNet,
    optimizer: torch.optim.Optimizer,
    split: Split,
    batch_size: int,
    generator: torch.Generator,
    how: Compute = compute.DEFAULT,
    forward: Callable[[Tensor], Tensor] | None = None,
) -> float:
    """One pass over `split` in a fresh seeded order; returns the mean step loss (nats/sample).

    `forward` is the model's forward (a compiled one, say); the loss is taken in float32."""
    model.train()
    forward = forward or model
    total = torch.zeros((), dtype=torch.float64, device=split.x.device)
    for index in batch_indices(len(split), batch_size, generator):
        with compute.autocast(how, split.x.device):
            logits = forward(compute.inputs(split.x[index], how))
        loss = F.cross_entropy(logits.float(), split.y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * index.numel()
    return float(total) / len(split)


# (model, splits, config, run seed, epoch, layer0, warm) → {(layer, split, family): result};
# see `plan`
VInfoMeasurer = Callable[
    [LayeredNet, dict[str, Split], VInfoConfig, int, int, Layer0, WarmStates],
    dict[VInfoKey, VInfoResult],
]


class Run:
    """One training run advanced an epoch at a time; its state round-trips through a checkpoint.

    Neural collapse is measured every epoch, with the training batch size unless `collapse`
    says otherwise; 𝒱-information (when `vinfo` is given) on its schedule and at the epoch
    where training stops, layer 0 once per run (`plan`); with `baselines`, the
    generalisation literature's baseline measures (`metrics.baselines`) where training stops
    (they cost most of an epoch: a sweep that ranks measures asks for them). `measure_vinfo`
    executes the plan:
    in this process by default (`plan.measure_in_process`); the Tune trainable passes one that
    ships each (layer, split) to a Ray task.
    """

    def __init__(
        self,
        model: LayeredNet,
        data: Dataset,
        config: TrainConfig,
        collapse: CollapseConfig | None = None,
        vinfo: VInfoConfig | None = None,
        measure_vinfo: VInfoMeasurer = measure_in_process,
        baselines: bool = False,
    ) -> None:
        self.model, self.data, self.config, self.baselines = model, data, config, baselines
        self.collapse = collapse or CollapseConfig(
            batch_size=config.batch_size, seed=derive_seed(config.seed, Stream.NC_ORDER)
        )
        self.vinfo, self.measure_vinfo = vinfo, measure_vinfo
        self.scheduled = (
            protocol.schedule_epochs(vinfo.schedule, config.max_epochs) if vinfo else frozenset()
        )
        # w⁰ of the distance from initialisation (the model arrives freshly initialised); a
        # checkpoint carries it, since a resumed run may be built with other weights
        self.initial = {name: p.detach().float().clone() for name, p in model.named_parameters()}
        compute.prepare(model, config.compute)
        self.forward = Compiled(model, config.compute.compile)
        self.optimizer = make_optimizer(model, config)
        self.generator = torch.Generator().manual_seed(derive_seed(config.seed, Stream.TRAIN_ORDER))
        self.epoch = 0
        self.layer0: Layer0 = {}
        self.warm: WarmStates = {}  # the latest decoders of each (layer, split, family)

    def step(self) -> EpochRecord:
        """Train the next epoch, then measure both splits with its final weights."""
        self.epoch += 1
        model, data, config = self.model, self.data, self.config
        step_loss = train_epoch(
            model, self.optimizer, data.train, config.batch_size, self.generator,
            config.compute, self.forward,
        )  # fmt: skip
        reason = stop_reason(
            step_loss,
            self.epoch,
            loss_threshold=config.loss_threshold,
            max_epochs=config.max_epochs,
        )
        diverged = reason == Stop.DIVERGED
        measured = compute.float32(model)
        reports = [
            None if diverged else measure_collapse(measured, split, data.num_classes, self.collapse)
            for split in (data.train, data.test)
        ]
        values: dict[VInfoKey, VInfoResult] = {}
        due = self.epoch in self.scheduled or (reason is not None and bool(self.scheduled))
        if self.vinfo and due and not diverged:
            splits = dict(zip(SPLITS, (data.train, data.test), strict=True))
            values = self.measure_vinfo(
                measured, splits, self.vinfo, config.seed, self.epoch, self.layer0, self.warm
            )
        baselines = {}
        if self.baselines and reason is not None and not diverged:
            baselines = measure_baselines(
                measured, self.initial, data.train, config.batch_size, config.seed
            )
        return EpochRecord(self.epoch, step_loss, *reports, reason, values, baselines)

    @property
    def families(self) -> tuple[str, ...]:
        """The labels of the decoder families measured (the network's without 𝒱-information)."""
        return tuple(f.label for f in self.vinfo.families) if self.vinfo else (NETWORK,)

    def describe_compute(self) -> str:
        """How the training steps ran (`Compute.describe`), with a compile fall-back's reason."""
        return "; ".join(filter(None, [self.config.compute.describe(), self.forward.fallback]))

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "initial": self.initial,
            "layer0": {"/".join(key): result.to_json() for key, result in self.layer0.items()},
            "decoders": {"/".join(map(str, key)): s for key, s in self.warm.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.initial = state.get("initial", self.initial)  # absent before the baselines
        # keys written before decoder families name no family: the network's
        self.layer0 = {
            (split, family): VInfoResult.from_json(r)
            for key, r in state["layer0"].items()
            for split, family in [(*key.split("/", 1), NETWORK)[:2]]
        }
        self.warm = {
            (int(layer), split, family): decoders
            for key, decoders in state.get("decoders", {}).items()
            for layer, split, family in [(*key.split("/", 2), NETWORK)[:3]]
        }


def run_epochs(
    model: LayeredNet,
    data: Dataset,
    config: TrainConfig,
    collapse: CollapseConfig | None = None,
    vinfo: VInfoConfig | None = None,
    baselines: bool = False,
) -> Iterator[EpochRecord]:
    """Train and measure epoch by epoch (see `Run`) until the protocol stops the run."""
    run = Run(model, data, config, collapse, vinfo, baselines=baselines)
    while True:
        record = run.step()
        yield record
        if record.stop_reason is not None:
            return
