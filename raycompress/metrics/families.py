"""What 𝒱 is: the decoder families a 𝒱-information value is the supremum over.

    network  f^{L:l+1}: a fresh copy of the network above layer l (the thesis' 𝒱)
    linear   W·flatten(h^l) + b, every affine map of the flattened representation
             (multinomial logistic regression; solved to its optimum, `affine`)
    mlp      W₂·relu(W₁·flatten(h^l) + b₁) + b₂, one hidden ReLU layer of `width` units
             (the capacity-limited heads of the decodable-information-bottleneck literature)

A value means something only for its family: the network family memorises any relabelling of
10 000 examples from h¹ on, where the linear one reads a fraction of a bit. So a family (with
its width) is part of every value's identity: `Family.label` is the frame's `family` column.

An mlp of width ≥ C contains the linear family, so its supremum is at least the linear
optimum; SGD from a fresh start falls far short of that on a relabelling, so under the
converged protocol each mlp head starts at that optimum (`linear_starts`, `MLPDecoder.start_at`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from raycompress.metrics.affine import fit_affine, on_raw
from raycompress.models import Head, LayeredNet
from raycompress.schema import NETWORK

LINEAR, MLP = "linear", "mlp"
FAMILIES = (NETWORK, LINEAR, MLP)
# One hidden layer of 64 units: on f₋ it reaches the network family's sufficiency at every
# layer while memorising a relabelling far less (docs/benchmarks.md, "Decoder families").
MLP_WIDTH = 64


@dataclass(frozen=True)
class Family:
    """One decoder family; `width` is the mlp's hidden units (None for the others)."""

    name: str = NETWORK
    width: int | None = None

    def __post_init__(self) -> None:
        if self.name not in FAMILIES:
            raise ValueError(
                f"unknown decoder family {self.name!r}: use {', '.join(FAMILIES)} (or a list)"
            )
        if self.name == MLP and not (isinstance(self.width, int) and self.width > 0):
            raise ValueError(f"decoder_width must be a positive integer, got {self.width!r}")
        if self.name != MLP and self.width is not None:
            raise ValueError(
                f"decoder_width sets the mlp family's hidden units: the {self.name} family has "
                "none; drop decoder_width or add mlp to decoder_family"
            )

    @property
    def label(self) -> str:
        """The family's name in the frame, the report and the figures ("mlp-64")."""
        return self.name if self.width is None else f"{self.name}-{self.width}"

    @property
    def trained(self) -> bool:
        """Whether the family's in-sample values come from SGD-trained decoders (network and
        mlp) rather than a convex optimum (linear): what warm-start settings act on."""
        return self.name != LINEAR

    def decoder(self, model: LayeredNet, layer: int) -> DecoderFactory:
        """Fresh decoders of this family on h^l of `model`: seed → module."""
        if self.name == NETWORK:
            return lambda seed: model.fresh_decoder(layer, seed)
        dim, classes = representation_size(model, layer), model.spec.num_classes
        if self.name == LINEAR:  # a lone Head: `affine.affine_pre` finds its optimum
            return lambda seed: _seeded(seed, lambda: Head(nn.Flatten(), nn.Linear(dim, classes)))
        assert self.width is not None
        width = self.width
        return lambda seed: _seeded(seed, lambda: MLPDecoder(dim, width, classes))


class MLPDecoder(nn.Sequential):
    """W₂·relu(W₁·flatten(h) + b₁) + b₂: h (N, …) flattened to D features, `width` hidden
    units, C logits."""

    def __init__(self, dim: int, width: int, classes: int) -> None:
        super().__init__(nn.Flatten(), nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, classes))

    def embeds_affine(self) -> bool:
        """Whether every affine map of h is one of this family's decoders (width ≥ C)."""
        return self[1].out_features >= self[3].out_features

    @torch.no_grad()
    def start_at(self, weight: Tensor, bias: Tensor, lowest: Tensor) -> None:
        """Become the affine map W·flatten(h) + b (W (C, D), b (C,)) on samples whose logits
        are at least `lowest` (C,): hidden unit c computes relu(W_c h + b_c + m_c), lifted
        by m_c = 1 − min(lowest_c, 0) above zero on every such sample, and logit c reads
        unit c back less m_c. The other units keep their initial weights in, and none out,
        so SGD from here can use them."""
        if not self.embeds_affine():
            raise ValueError(
                f"an mlp of width {self[1].out_features} holds no affine map of "
                f"{self[3].out_features} logits: it needs width ≥ C"
            )
        first, last = self[1], self[3]
        classes = weight.shape[0]
        lift = 1 - lowest.clamp(max=0)
        first.weight[:classes] = weight
        first.bias[:classes] = bias + lift
        last.weight.zero_()
        last.weight[:, :classes] = torch.eye(classes)
        last.bias.copy_(-lift)


DecoderFactory = Callable[[int], nn.Module]


@torch.no_grad()
def representation_size(model: LayeredNet, layer: int) -> int:
    """The number of entries of one sample's h^l."""
    probe = torch.zeros(2, *model.spec.input_shape)  # two samples: batch norm needs them
    return math.prod(model.encoder(layer).cpu().eval()(probe).shape[1:])


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """`build()` with its initialisation drawn from `seed` alone (the global generator's state
    is restored after)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def parse_families(names: str | Sequence[str], width: int | None = None) -> tuple[Family, ...]:
    """A sweep's `decoder_family` (a name or a list of names) and `decoder_width` as families,
    validated: a one-line ValueError for an unknown family, a repeated one, or a width given
    without mlp or of no use."""
    listed = [names] if isinstance(names, str) else list(names)
    if not listed:
        raise ValueError("decoder_family lists no family: name one of " + ", ".join(FAMILIES))
    if len(set(listed)) < len(listed):
        raise ValueError(f"decoder_family lists a family twice: {listed}")
    if width is not None and MLP not in listed:
        raise ValueError(
            f"decoder_width {width} sets the mlp family's hidden units, and decoder_family "
            f"{listed} has no mlp: drop decoder_width or add mlp"
        )
    return tuple(
        Family(name, (MLP_WIDTH if width is None else width) if name == MLP else None)
        for name in listed
    )


AffineStart = tuple[Tensor, Tensor, Tensor]  # W (C, D), b (C,), the lowest logits (C,)


@torch.no_grad()
def linear_starts(
    features: Tensor, targets: Tensor, num_classes: int, tolerance: float,
    previous: Tensor | None = None,
) -> tuple[list[AffineStart], Tensor]:  # fmt: skip
    """The linear family's optimum (`affine.fit_affine`, from `previous`' weights when given)
    of each target column of targets (N, K) on the flattened features, as each mlp head's
    start (`MLPDecoder.start_at`; on the CPU), and the optima's weights for a warm start."""
    z = features.flatten(1).double()
    optima = fit_affine(z, targets, num_classes, tolerance=tolerance, start=previous)
    weights = torch.stack([f.weights for f in optima])
    w, b = on_raw(weights.to(z.device), z)
    starts = [(w[k], b[k], (z @ w[k].T + b[k]).amin(0)) for k in range(len(optima))]
    return [tuple(t.float().cpu() for t in s) for s in starts], weights  # type: ignore[misc]
