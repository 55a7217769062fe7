"""Train K fresh decoders f^{L:l+1} at once on cached features, each on its own targets.

torch.func stacks the K decoders' parameters; one step runs every head's forward (vmapped on a
GPU, a loop on the CPU: `batching_mode`), one backward and one optimiser step. The heads share
input batches, never weights. AdamW acts element-wise, so one optimiser over the
stacked parameters is K independent optimisers. A head stops on its own (train-loss threshold,
plateau, divergence or the epoch cap); its weights are kept from that moment and it leaves the
batched forward, so the remaining heads train on without it.

Budget curves: at each of the config's budgets (decoder epochs) the heads that trained that
epoch are handed to a callback (`Budgets`), which scores them (`score_heads` on a subset) and
returns their bits; a head that stopped earlier already holds its final weights. Scoring does
not touch the training's random streams or weights, so the final values do not depend on the
budgets.

Two protocols (`DecoderConfig.protocol`). "thesis": the thesis' recipe, a head stops at the
loss threshold, a plateau or the epoch cap. "converged": a head trains until it is certified or
until the cap, where it stops uncertified; its last gain is recorded either way. A head is
certified when its training loss meets the threshold, or when its scored value gained at most
`tolerance` bits over the last quadrupling of its epochs (its last two doublings: the budgets are
certify_from · 2^k, and the cap). A fresh head's early epochs can be flat (a minimality head
memorises slowly at first), so its first certificate comes late (certify_from 12: 12 → 48
epochs); a warm-started one continues a trained decoder and starts early (warm_certify_from 2:
2 → 8).

A head scored on the set it fits (in-sample: `InSample`) is judged more strictly, because its
score is H(t_k) − its loss on that set and a memorising head under a constant learning rate
spikes. An audit of the rule above found that 12 of 18 certified heads had fallen by more than
the tolerance over their quadrupling: a loss spike at the certifying budget read as a plateau,
and one head certified 0.090 bit below what it reached when trained on (docs/benchmarks.md,
"Auditing the certificate"). So in-sample a quadrupling certifies only if
- the score moved by at most the tolerance either way, unless every SGD score stayed below the
  head's embedded start, which is then its value (SGD leaving the optimum it began at);
- the best epoch loss over the quadrupling fell by at most tolerance · ln 2 nats from the best
  before it. The epoch loss is seen every epoch, so a head still learning between two budgets
  shows.
At the loss threshold, a head stops only once it scores within the tolerance of its ceiling
H(t_k). In-sample no decoder scores above H(t_k), so such a value is within the tolerance of
the family's supremum. A head short of its ceiling trains on with its threshold halved. For
the same reason an embedded start that already scores within the tolerance of H(t_k) is
certified as it is, before any SGD epoch: SGD could only leave it (an mlp started at a
memorising linear optimum spiked away and stayed uncertified at the cap).

Training runs as `compute.Compute` says (precision, channels_last, compile); the forward of
one architecture is compiled once per process and shared by all its fresh decoders (the
weights are arguments, not constants). Scoring always runs in float32.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from raycompress import compute, protocol
from raycompress.compute import Compiled
from raycompress.sampling import batch_indices
from raycompress.schema import HeadFit
from raycompress.stopping import Stop, stop_reason

LN2 = math.log(2)  # nats → bits


@dataclass(frozen=True)
class DecoderConfig(protocol.Optimisation):
    """Training "to convergence", with every control explicit (and recorded with the result).

    A head stops when its epoch-mean training loss (nats) is ≤ `stop_loss`, when it has not
    improved by a relative min_delta for `patience` epochs (a plateau), or at max_epochs.
    """

    # `batch_size` (shared) is the batch of the features' encoding and of scoring: batch norm
    # without running statistics makes a representation and a decoder's output depend on their
    # batch, so it stays the network's; `train_batch_size` (None: it) is only the optimiser's.
    # `compute` is the training's; scoring is always float32.
    train_batch_size: int | None = None
    patience: int = protocol.DECODER_PATIENCE
    min_delta: float = protocol.DECODER_MIN_DELTA
    # Epochs at which every head is also scored (`curve`); None: protocol.DECODER_BUDGETS
    # up to the cap.
    budgets: tuple[int, ...] | None = None
    # How the heads of one step run: "vmap" (one vectorised forward), "loop" (one head after
    # another, still one backward and one optimiser step) or "auto" (`batching_mode`: the loop
    # on the CPU, vmap on a GPU). Both compute the same update up to rounding, and rounding can
    # move a memorising head's stopping epoch and so its bits (docs/benchmarks.md,
    # "Deterministic batching"). So the mode follows the device, never a timing, and a seed
    # reproduces its bits.
    batching: str = "auto"
    # "constant" (the thesis'), or "cosine": a linear warm-up over the first 5 % of the cap,
    # then a cosine decay that would reach 0 one epoch after the cap (thesis protocol only)
    lr_schedule: str = "constant"
    tolerance: float = protocol.CERTIFY_TOLERANCE  # converged: bits over a quadrupling
    certify_from: int = protocol.CERTIFY_FROM  # converged: the first scored epoch
    warm_certify_from: int = protocol.WARM_CERTIFY_FROM  # … of a warm-started head
    # CONVERGED (the default: every value certified or said not to be) or THESIS, the thesis'
    # fixed recipe (the module docstring)
    protocol: str = protocol.CONVERGED
    role: ClassVar[str] = "decoder "

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_positive("train_batch", "patience", "certify_from", "warm_certify_from")
        if self.batching not in ("auto", "vmap", "loop"):
            raise ValueError(f"decoder batching must be auto, vmap or loop, got {self.batching!r}")
        if self.protocol not in protocol.VINFO_PROTOCOLS:
            raise ValueError(
                f"unknown 𝒱-information protocol {self.protocol!r}: use "
                f"{' or '.join(protocol.VINFO_PROTOCOLS)}"
            )
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"decoder lr_schedule must be constant or cosine, got {self.lr_schedule!r}"
            )
        if self.converged:
            self._check_converged()
        elif self.budgets is not None:
            check_budgets(self.budgets, self.max_epochs)

    @property
    def converged(self) -> bool:
        return self.protocol == protocol.CONVERGED

    @property
    def train_batch(self) -> int:
        """The decoders' training batch."""
        return self.batch_size if self.train_batch_size is None else self.train_batch_size

    def _check_converged(self) -> None:
        if not self.tolerance > 0:
            raise ValueError(f"the certification tolerance must be > 0 bits, got {self.tolerance}")
        if self.lr_schedule != "constant":
            raise ValueError(
                "a cosine schedule needs a fixed horizon: under converged use constant"
            )
        if self.budgets is not None:
            raise ValueError(
                "decoder budgets belong to the thesis protocol; under converged every head is "
                f"scored at {self.certify_from}·2^k epochs: drop decoder_budgets"
            )
        first = 4 * max(self.certify_from, self.warm_certify_from)
        if self.max_epochs < first:
            raise ValueError(
                f"the decoder epoch cap {self.max_epochs} is below the first quadrupling "
                f"({first} epochs: two doublings), where a decoder can first be certified: "
                "raise decoder_epochs or lower decoder_certify_from"
            )

    def curve(self) -> tuple[int, ...]:
        """The budgets at which every head is scored: ascending, ending at the epoch cap (under
        converged: certify_from, its doublings, …, the cap)."""
        if self.converged:
            return tuple(sorted({*doublings(self.certify_from, self.max_epochs), self.max_epochs}))
        budgets = self.budgets or [b for b in protocol.DECODER_BUDGETS if b < self.max_epochs]
        return tuple(sorted({*budgets, self.max_epochs}))

    @property
    def stop_loss(self) -> float:
        """The epoch-mean training loss (nats) at which a head stops: loss_threshold, and under
        converged at most tolerance · ln 2, so that a head it certifies reads within the
        tolerance of its ceiling H(t) (the thesis' 0.02 nats left certified heads up to
        0.029 bit short: docs/benchmarks.md, "Auditing the certificate")."""
        if not self.converged:
            return self.loss_threshold
        return min(self.loss_threshold, self.tolerance * LN2)

    def warm(self) -> DecoderConfig:
        """This configuration for decoders that continue trained ones (converged)."""
        return dataclasses.replace(self, certify_from=self.warm_certify_from)

    def recipe(self, warm: bool, moments: bool = False) -> str:
        """How a head was trained, in words: recorded beside every value. `moments`: a warm
        start continued the optimiser's state too."""
        start = "fresh"
        if warm:
            what = "decoders and their AdamW state" if moments else "decoders"
            start = f"warm (continued from the previous measurement's {what})"
        return (
            f"{start}, AdamW lr {self.lr:g} {self.lr_schedule}, weight decay "
            f"{self.weight_decay:g}, batch {self.train_batch}"
        )

    def lr_at(self, epoch: int) -> float:
        """The learning rate of decoder epoch `epoch` (1-based) under `lr_schedule`."""
        if self.lr_schedule == "constant":
            return self.lr
        warmup = max(1, round(0.05 * self.max_epochs))
        if epoch <= warmup:
            return self.lr * epoch / warmup
        progress = (epoch - warmup) / (self.max_epochs - warmup + 1)
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))


def doublings(first: int, cap: int) -> list[int]:
    """first, 2·first, 4·first, … up to cap."""
    out = [first]
    while out[-1] * 2 <= cap:
        out.append(out[-1] * 2)
    return out


def check_budgets(budgets: tuple[int, ...], max_epochs: int) -> None:
    """One-line ValueError unless `budgets` are increasing positive integers within the cap."""
    numbers = all(isinstance(b, int) and not isinstance(b, bool) for b in budgets)
    if not budgets or not numbers or budgets[0] < 1 or list(budgets) != sorted(set(budgets)):
        raise ValueError(
            f"decoder budgets must be increasing positive integers, e.g. [5, 10, 20, 50], "
            f"got {list(budgets)}"
        )
    if budgets[-1] > max_epochs:
        raise ValueError(
            f"decoder budget {budgets[-1]} is beyond the decoder epoch cap {max_epochs}: "
            f"raise decoder_epochs or drop the budget"
        )


@dataclass
class Progress:
    """One line at most every `every` seconds while decoders train (none in the first
    `every` seconds, so that short measurements stay quiet): what is measured, which heads
    still train, the decoder epoch reached of the cap (and the batch, inside an epoch longer
    than `every`), the time elapsed."""

    label: str  # e.g. "𝒱-information l=1 train"
    every: float = 20.0
    clock: Callable[[], float] = time.monotonic
    write: Callable[..., None] = print  # called as print(line, flush=True)
    certified: list[int] | None = None  # under the converged protocol

    def __post_init__(self) -> None:
        self.start = self.last = self.clock()

    def update(
        self,
        epoch: int,
        max_epochs: int,
        training: Tensor,
        heads: int,
        batch: str = "",
        certified: list[int] | None = None,
    ) -> None:
        """In or after decoder epoch `epoch`: `training` are the heads (of `heads`) still
        training; `batch` ("b/B") says how far into the epoch, empty once it is done;
        `certified`, under the converged protocol, the heads certified so far (kept for the
        lines inside later epochs)."""
        if certified is not None:
            self.certified = certified
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        where = f"decoder epoch {epoch}/{max_epochs}" + (f", batch {batch}" if batch else "")
        done = "" if self.certified is None else f", certified {_listed(self.certified)}"
        self.write(  # flushed: a Ray task's output reaches the sweep's console as it comes
            f"{self.label}: {where}, heads training {_listed(training.tolist())} of "
            f"0..{heads - 1}{done}, {now - self.start:.0f} s",
            flush=True,
        )


def _listed(heads: list[int]) -> str:
    return ", ".join(map(str, heads)) or "none"


class StackedDecoders:
    """K decoders of one architecture as stacked parameters (K, ...) and one batched forward.

    Batch norm with running statistics (torchvision's models) updates them in training mode
    and uses them in evaluation mode, as in the network itself; `train()` and `eval()` switch
    the mode. Those in-place updates cannot run under vmap, so such decoders always loop.
    With `compile`, the training forward is compiled (`shared_forward`); evaluation is eager.
    """

    def __init__(
        self, decoders: list[nn.Module], device: torch.device | str = "cpu", compile: bool = False
    ) -> None:
        decoders = [d.to(device) for d in decoders]
        self.params, self.buffers = stack_module_state(decoders)
        self.base, self.compiled = shared_forward(decoders[0], compile)
        self.running_stats = any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            for m in self.base.modules()
        )
        self.mode = "vmap"
        self.forward = self.compiled

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def train(self) -> None:
        self.base.train()
        self.forward = self.compiled

    def eval(self) -> None:
        self.base.eval()
        self.forward = self.compiled.eager

    def __call__(self, x: Tensor, heads: Tensor | None = None) -> Tensor:
        """Logits (K', B, C) of the heads selected by `heads` (default all) on x (B, ...)."""
        if self.mode == "loop":  # views of head k's slices: running statistics update in place
            chosen = range(len(self)) if heads is None else heads.tolist()
            return torch.stack([
                self.forward({n: p[k] for n, p in self.params.items()},
                             {n: b[k] for n, b in self.buffers.items()}, x)
                for k in chosen
            ])  # fmt: skip
        params, buffers = self.params, self.buffers
        if heads is not None:
            params = {name: p[heads] for name, p in params.items()}
            buffers = {name: b[heads] for name, b in buffers.items()}
        return torch.vmap(self.forward, in_dims=(0, 0, None))(params, buffers, x)

    # A warm start's state: the stack's tensors by name ("params.<name>", "buffers.<name>"),
    # and with its optimiser, AdamW's per parameter ("adamw.<key>.<name>"); on the CPU.

    def tensors(self) -> dict[str, Tensor]:
        """Every stacked parameter and buffer, by its state name."""
        tensors = {f"params.{n}": p for n, p in self.params.items()}
        return tensors | {f"buffers.{n}": b for n, b in self.buffers.items()}

    def state(self, optimizer: torch.optim.Optimizer | None = None) -> DecoderState:
        """A copy of the stack's tensors on the CPU, with `optimizer`'s state when given."""
        state = {name: t.detach().cpu().clone() for name, t in self.tensors().items()}
        if optimizer is not None:
            state |= {
                f"{OPTIMIZER_STATE}{key}.{name}": t.detach().cpu().clone()
                for name, p in self.params.items()
                for key, t in optimizer.state.get(p, {}).items()
            }
        return state

    def head_state(self, k: int) -> DecoderState:
        """Head k's own slice of the stack's tensors (a copy, where they are)."""
        return {name: t[k].detach().clone() for name, t in self.tensors().items()}

    @torch.no_grad()
    def load_head(self, k: int, state: DecoderState) -> None:
        for name, tensor in self.tensors().items():
            tensor[k] = state[name]

    @torch.no_grad()
    def load(self, state: DecoderState, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Start from a state of the same decoders (a warm start), a one-line ValueError when
        it is of other decoders; with `optimizer`, continue it from the state's optimiser
        moments. Returns whether the optimiser continues (False: none in the state)."""
        mine = self.tensors()
        shapes = {n: tuple(t.shape) for n, t in state.items() if not n.startswith(OPTIMIZER_STATE)}
        if shapes != {n: tuple(t.shape) for n, t in mine.items()}:
            raise ValueError(OTHER_DECODERS)
        for name, tensor in mine.items():
            tensor.copy_(state[name])
        return optimizer is not None and self._load_optimizer(optimizer, state)

    def _load_optimizer(self, optimizer: torch.optim.Optimizer, state: DecoderState) -> bool:
        for name, p in self.params.items():
            # by exact name: a suffix match would confuse "0.weight" with "1.0.weight"
            mine = {k: state[f"{OPTIMIZER_STATE}{k}.{name}"] for k in ADAMW_STATE
                    if f"{OPTIMIZER_STATE}{k}.{name}" in state}  # fmt: skip
            if not mine:
                return False
            # the step count stays where the optimiser keeps it (the CPU), the moments go to p's
            optimizer.state[p] = {
                k: t.clone() if k == "step" else t.to(p.device, copy=True) for k, t in mine.items()
            }
        return True


DecoderState = dict[str, Tensor]
OPTIMIZER_STATE = "adamw."
ADAMW_STATE = ("step", "exp_avg", "exp_avg_sq")  # what AdamW (no amsgrad) keeps per parameter
OTHER_DECODERS = "a warm start's decoder state is of other decoders (names or shapes)"


# One weightless copy and one compiled forward per decoder architecture in this process.
_SHARED: dict[str, tuple[nn.Module, Compiled]] = {}


def shared_forward(decoder: nn.Module, compile: bool) -> tuple[nn.Module, Compiled]:
    """A weightless ("meta") copy of `decoder` and its forward f(params, buffers, x).

    Compiled, it is shared by every decoder of the same architecture (same modules, same
    shapes), so that the fresh decoders of a measurement, and of the measurements after it,
    reuse one compilation: the weights are arguments of the compiled code, not constants.
    """
    key = f"{type(decoder).__module__}:{decoder!r}"
    if compile and key in _SHARED:
        return _SHARED[key]
    base = copy.deepcopy(decoder).to("meta")

    def forward(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(base, (params, buffers), (x,))

    shared = base, Compiled(forward, compile)
    if compile:
        _SHARED[key] = shared
    return shared


def train_heads(
    stack: StackedDecoders,
    features: Tensor,
    targets: Tensor,
    config: DecoderConfig,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    at_budget: Callable[[int, Tensor], Tensor] | None = None,
    progress: Progress | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    in_sample: InSample | None = None,
) -> list[HeadFit]:
    """Fit head k on (features, targets[:, k]); features (N, ...) may live on the host.

    After each epoch that is one of `config.curve()`, `at_budget(epoch, heads)` gets the heads
    that trained that epoch (their weights as of then) and returns their scored bits, which
    certify heads under the converged protocol (it needs `at_budget`); `progress` hears of
    every epoch. The steps are `optimizer`'s (default: a fresh `make_optimizer`). With
    `in_sample` (the heads are scored on the set they fit), the stricter certificate. Returns
    one HeadFit per head; the stacked parameters end as each head stopped.
    """
    if config.converged and at_budget is None:
        raise ValueError("the converged protocol certifies heads by their scores: pass at_budget")
    curve = set(config.curve())
    optimizer = optimizer or make_optimizer(stack, config)
    steps = Steps(stack, optimizer, config, device, progress)
    stopping = HeadStopping(len(stack), config, in_sample if config.converged else None)
    if progress is not None and config.converged:
        progress.certified = []
    # a stopped head's weights, from its last epoch (a start certified as it is: from now)
    kept = {k: stack.head_state(k) for k in stopping.stopped}
    stack.mode = "loop" if stack.running_stats else batching_mode(config.batching, device)
    stack.train()
    for epoch in range(1, config.max_epochs + 1):
        heads = stopping.training()
        if not heads.numel():
            break
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(epoch)
        losses = steps.epoch(epoch, features, targets, heads, generator)
        if at_budget is not None and epoch in curve:
            stopping.scored(epoch, heads, at_budget(epoch, heads))
            stack.train()
        stops = stopping.update(epoch, heads, losses)
        if stopping.in_sample is not None and at_budget is not None:
            stops = stopping.confirmed(epoch, stops, at_budget)
            stack.train()
        kept |= {k: stack.head_state(k) for k in stops}
        if progress is not None:
            certified = stopping.certified() if config.converged else None
            progress.update(
                epoch, config.max_epochs, stopping.training(), len(stack), certified=certified
            )
    for k, weights in kept.items():
        stack.load_head(k, weights)
    return stopping.fits()


def make_optimizer(stack: StackedDecoders, config: DecoderConfig) -> torch.optim.AdamW:
    """AdamW over the stacked parameters, in the order of `stack.params`."""
    return torch.optim.AdamW(stack.params.values(), lr=config.lr, weight_decay=config.weight_decay)


@dataclass(frozen=True)
class InSample:
    """What a fit scored on the set it trains on knows of its scores: each head's ceiling
    H(t_k) (no score exceeds it), and each head's score at its start (budget 0) where an
    embedded start competes (`vinfo._begin`)."""

    ceiling: Tensor  # (K,) bits
    start: Tensor | None = None  # (K,) bits


@dataclass
class HeadStopping:
    """Each head's stopping state: its best epoch loss, the epochs since it improved by a
    relative `min_delta`, its epoch losses, its scored bits at every budget and its gain over
    the last quadrupling of its epochs, and its fit once it stopped (`stopping.stop_reason`, the
    rule of the main network too; under the converged protocol no plateau, and the module
    docstring's certificate, stricter `in_sample`)."""

    num_heads: int
    config: DecoderConfig
    in_sample: InSample | None = None
    best: Tensor = field(init=False)
    stale: Tensor = field(init=False)
    threshold: Tensor = field(init=False)  # each head's stopping loss (nats)
    losses: dict[int, list[float]] = field(default_factory=dict)  # head → its epoch losses
    stopped: dict[int, HeadFit] = field(default_factory=dict)
    bits: dict[int, dict[int, float]] = field(default_factory=dict)  # head → budget → bits
    gain: dict[int, float] = field(default_factory=dict)  # over its last quadrupling of epochs
    gained_now: set[int] = field(default_factory=set)  # heads whose quadrupling ended this epoch

    def __post_init__(self) -> None:
        self.best = torch.full((self.num_heads,), math.inf, dtype=torch.float64)
        self.stale = torch.zeros(self.num_heads, dtype=torch.int64)
        self.threshold = torch.full((self.num_heads,), self.config.stop_loss, dtype=torch.float64)
        start = self.in_sample.start if self.in_sample is not None else None
        if start is None:
            return
        short = self.in_sample.ceiling - start  # bits; its loss on the fitted set is short · ln 2
        for k in torch.nonzero(short <= self.config.tolerance).flatten().tolist():
            self.stopped[k] = HeadFit(0, Stop.CERTIFIED, float(short[k]) * LN2, True)

    def training(self) -> Tensor:
        """The heads still training, ascending."""
        active = [k for k in range(self.num_heads) if k not in self.stopped]
        return torch.tensor(active, dtype=torch.int64)

    def scored(self, epoch: int, heads: Tensor, bits: Tensor) -> None:
        """Each of `heads`' scored bits at this epoch's budget, and its gain since its budget
        at a quarter of these epochs (two doublings back; the cap may not end a quadrupling)."""
        for k, value in zip(heads.tolist(), bits.tolist(), strict=True):
            scored = self.bits.setdefault(k, {})
            if epoch % 4 == 0 and epoch // 4 in scored:
                self.gain[k] = value - scored[epoch // 4]
                self.gained_now.add(k)
            scored[epoch] = value

    def update(self, epoch: int, heads: Tensor, losses: Tensor) -> list[int]:
        """Record epoch `epoch`'s mean loss (nats) of each of `heads`; returns those that stop."""
        config, stopping = self.config, []
        for k, loss in zip(heads.tolist(), losses.tolist(), strict=True):
            self.losses.setdefault(k, []).append(loss)
            if loss < self.best[k] * (1 - config.min_delta):
                self.best[k], self.stale[k] = loss, 0
            else:
                self.stale[k] += 1
            stop = stop_reason(
                loss, epoch, loss_threshold=float(self.threshold[k]),
                max_epochs=config.max_epochs, stale=int(self.stale[k]),
                patience=None if config.converged else config.patience,
            )  # fmt: skip
            if config.converged and stop in (None, Stop.MAX_EPOCHS) and self._certifies(k):
                stop = Stop.CERTIFIED
            if stop is not None:
                self.stopped[k] = self._fit(k, epoch, stop, loss)
                stopping.append(k)
        self.gained_now.clear()
        return stopping

    def _certifies(self, k: int) -> bool:
        """Head k's quadrupling ends now and certifies it (the module docstring)."""
        tolerance = self.config.tolerance
        if k not in self.gained_now or self.gain[k] > tolerance:
            return False
        if self.in_sample is None:  # scored on another set: a fall is over-fitting, best kept
            return True
        losses = self.losses[k]
        quarter = len(losses) // 4
        still_learning = min(losses[:quarter]) - min(losses[quarter:]) > tolerance * LN2
        start = self.in_sample.start
        held = start is not None and max(self.bits[k].values()) < float(start[k])
        return not still_learning and (self.gain[k] >= -tolerance or held)

    def confirmed(self, epoch: int, stopping: list[int], score: Callable[[int, Tensor], Tensor]
                  ) -> list[int]:  # fmt: skip
        """In-sample, those of `stopping` that may stop: a head at its loss threshold only if
        `score` (the budgets' callback) reads it within the tolerance of its ceiling; one short
        of it trains on with its threshold halved."""
        assert self.in_sample is not None
        check = [k for k in stopping if self.stopped[k].stop == Stop.LOSS_THRESHOLD]
        if not check:
            return stopping
        now = {k: self.bits[k][epoch] for k in check if epoch in self.bits.get(k, {})}
        if unscored := [k for k in check if k not in now]:  # between budgets: scored apart
            now |= zip(unscored, score(epoch, torch.tensor(unscored)).tolist(), strict=True)
        ceiling, tolerance = self.in_sample.ceiling, self.config.tolerance
        short = {k for k in check if now[k] < float(ceiling[k]) - tolerance}
        for k in short:
            self.threshold[k] /= 2
            if epoch < self.config.max_epochs:
                del self.stopped[k]
            else:  # the cap: stops there, uncertified
                self.stopped[k] = self._fit(k, epoch, Stop.MAX_EPOCHS, self.losses[k][-1])
        return [k for k in stopping if k in self.stopped]

    def _fit(self, k: int, epoch: int, stop: Stop, loss: float) -> HeadFit:
        if not self.config.converged:
            return HeadFit(epoch, stop, loss)
        certified = stop in (Stop.LOSS_THRESHOLD, Stop.CERTIFIED)
        return HeadFit(epoch, stop, loss, certified, self.gain.get(k))

    def certified(self) -> list[int]:
        return [k for k, fit in sorted(self.stopped.items()) if fit.certified]

    def fits(self) -> list[HeadFit]:
        return [self.stopped[k] for k in range(self.num_heads)]


@dataclass
class Steps:
    """The optimiser steps of one decoder epoch: every head still training takes one step per
    batch, in the precision of `config.compute`; `progress` hears of long epochs."""

    stack: StackedDecoders
    optimizer: torch.optim.Optimizer
    config: DecoderConfig
    device: torch.device | str
    progress: Progress | None

    def step(self, x: Tensor, y: Tensor, heads: Tensor) -> Tensor:
        """One step on a batch x (B, ...) with targets y (B, K'); returns each head's loss."""
        with compute.autocast(self.config.compute, self.device):
            logits = self.stack(x, heads.to(self.device))  # (K', B, C)
        losses = F.cross_entropy(logits.float().permute(1, 2, 0), y, reduction="none").mean(0)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.optimizer.step()
        return losses.detach()

    def epoch(
        self,
        epoch: int,
        features: Tensor,
        targets: Tensor,
        heads: Tensor,
        generator: torch.Generator,
    ) -> Tensor:
        """Decoder epoch `epoch`: one pass over the features in a fresh seeded order; each
        head's epoch-mean training loss (nats, float64, on the host)."""
        total = torch.zeros(heads.numel(), dtype=torch.float64, device=self.device)
        batches = batch_indices(features.shape[0], self.config.train_batch, generator)
        for b, index in enumerate(batches, 1):
            x = features[index].to(self.device, non_blocking=True)
            y = targets[index][:, heads].to(self.device, non_blocking=True)  # (B, K')
            total += self.step(x, y, heads).double() * index.numel()
            if self.progress is not None and b < len(batches):
                where = f"{b}/{len(batches)}"
                self.progress.update(epoch, self.config.max_epochs, heads, len(self.stack), where)
        return (total / features.shape[0]).cpu()


def batching_mode(batching: str, device: torch.device | str) -> str:
    """The mode "auto" stands for: the loop on the CPU, where it is the faster one for the
    convolutional decoders that dominate a measurement (docs/benchmarks.md), vmap elsewhere
    (one launch for every head on a GPU)."""
    if batching != "auto":
        return batching
    return "loop" if torch.device(device).type == "cpu" else "vmap"


@dataclass
class Budgets:
    """`train_heads`' callback: scores the heads that trained up to a budget on `checked`
    (bits), and with `keep_best` remembers each head's best budget and its weights."""

    stack: StackedDecoders
    checked: tuple[Tensor, Tensor]
    entropy: Tensor  # (K,) H(t_k) of the checked targets
    batch: int
    order: int
    device: torch.device | str
    keep_best: bool
    scored: dict[int, dict[int, float]] = field(default_factory=dict)  # budget → head → bits
    best: dict[int, tuple[float, DecoderState]] = field(default_factory=dict)

    def score(self, heads: Tensor | None = None) -> Tensor:
        """The bits of `heads` (default all) on the checked set as the weights are now."""
        ce = score_heads(self.stack, *self.checked, self.batch, self.order, self.device, heads)
        return self.entropy[heads if heads is not None else slice(None)] - ce / LN2

    def __call__(self, budget: int, heads: Tensor) -> Tensor:
        bits = self.score(heads)
        self.record(budget, heads, bits)
        return bits

    def record(self, budget: int, heads: Tensor, bits: Tensor) -> None:
        """`heads`' bits at `budget`, scored with the weights the stack holds now."""
        self.scored[budget] = dict(zip(heads.tolist(), bits.tolist(), strict=True))
        for k, value in self.scored[budget].items():
            if self.keep_best and (k not in self.best or value > self.best[k][0]):
                self.best[k] = (value, self.stack.head_state(k))

    def in_sample(self) -> InSample:
        """The checked set is the fitted one: its entropies are the ceilings, and a start
        scored as budget 0 is each head's start."""
        start = self.scored.get(0)
        if start is None:
            return InSample(self.entropy)
        return InSample(self.entropy, torch.tensor([start[k] for k in range(len(self.stack))]))

    def finish(self) -> Tensor:
        """Every head's final bits on the checked set; with `keep_best`, the better of its best
        budget and its final weights, which the stack is left holding (a head stops between
        budgets, so its final weights compete too)."""
        final = self.score()
        for k, (value, weights) in self.best.items():
            if value > final[k]:
                self.stack.load_head(k, weights)
                final[k] = value
        return final

    def curves(self, budgets: Sequence[int], final: list[float]) -> dict[int, list[float]]:
        """budget → every head's bits then; a head that stopped before a budget holds its
        final value there."""
        return {
            b: [self.scored.get(b, {}).get(k, value) for k, value in enumerate(final)]
            for b in budgets
        }


@torch.no_grad()
def score_heads(
    stack: StackedDecoders,
    features: Tensor,
    targets: Tensor,
    batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
    heads: Tensor | None = None,
) -> Tensor:
    """Cross-entropy (nats) of every head (or of `heads`) over the whole scored set, in a fixed
    batch order, in evaluation mode (running statistics where the decoders keep them)."""
    stack.eval()
    chosen = torch.arange(len(stack)) if heads is None else heads.cpu()
    total = torch.zeros(chosen.numel(), dtype=torch.float64, device=device)
    for index in batch_indices(features.shape[0], batch_size, torch.Generator().manual_seed(seed)):
        logits = stack(features[index].to(device), chosen.to(device))  # (K', B, C)
        y = targets[index][:, chosen].to(device)  # (B, K')
        total += F.cross_entropy(logits.permute(1, 2, 0).double(), y, reduction="none").sum(0)
    return total.cpu() / features.shape[0]
