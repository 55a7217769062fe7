"""The thesis' networks (§2.3, figure 2.3) as explicit layer lists f = f^L ∘ … ∘ f^1.

    cifarnet (f₊): channels (64, 128, 256); block l =
        relu(x + bn(conv3x3_{d→d}(x))) → conv3x3_{d→d'} → bn → maxpool2 → relu
        head f^4 = global max-pool → linear
    mnistnet (f₋): channels (16, 32, 64); block l = conv5x5_{d→d'} → bn → maxpool3 → relu
        head f^4 = flatten → linear
    mlp: flatten → (linear → relu) per width; head = linear

Convolutions have no bias, batch norm keeps no running statistics (a representation depends on
its batch, in training and evaluation alike), PyTorch's default initialisation.

Every model keeps its layers in `layers` (f^1..f^L) and its `ModelSpec`, so that for any
l = 0..L−1 the encoder f^{l:1} (current weights) and a freshly initialised decoder f^{L:l+1}
of the same architecture can be built. Layer L's "representation" is the penultimate feature
vector, the input of the final linear map.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds an architecture: name, input shape (C, H, W), classes, widths."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    widths: tuple[int, ...]


class Head(nn.Module):
    """f^L: optional global max-pool, flatten, then the linear classifier."""

    def __init__(self, in_features: int, num_classes: int, pool: bool) -> None:
        super().__init__()
        self.pool = nn.AdaptiveMaxPool2d(1) if pool else nn.Identity()
        self.linear = nn.Linear(in_features, num_classes)

    def features(self, h: Tensor) -> Tensor:
        """The penultimate features: the linear map's input (B, in_features)."""
        return self.pool(h).flatten(1)

    def forward(self, h: Tensor) -> Tensor:
        return self.linear(self.features(h))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, track_running_stats=False)


class ResidualBlock(nn.Module):
    """f₊ block: relu(x + bn(conv3x3_{d→d}(x))) → conv3x3_{d→d'} → bn → maxpool2 → relu."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(d_in, d_in, 3, padding=1, bias=False), _bn(d_in))
        self.out = nn.Sequential(
            nn.Conv2d(d_in, d_out, 3, padding=1, bias=False),
            _bn(d_out),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.relu(x + self.residual(x)))


def _plain_block(d_in: int, d_out: int) -> nn.Sequential:
    """f₋ block: conv5x5_{d→d'} → bn → maxpool3 → relu."""
    return nn.Sequential(
        nn.Conv2d(d_in, d_out, 5, padding=2, bias=False), _bn(d_out), nn.MaxPool2d(3), nn.ReLU()
    )


def _conv_layers(spec: ModelSpec, block: Callable[[int, int], nn.Module], pool: bool) -> list:
    channels = (spec.input_shape[0], *spec.widths)
    blocks = [block(d_in, d_out) for d_in, d_out in itertools.pairwise(channels)]
    with torch.no_grad():
        h = nn.Sequential(*blocks)(torch.zeros(2, *spec.input_shape))
    in_features = h.shape[1] if pool else h[0].numel()
    return [*blocks, Head(in_features, spec.num_classes, pool)]


def _mlp_layers(spec: ModelSpec) -> list:
    dims = (int(torch.tensor(spec.input_shape).prod()), *spec.widths)
    blocks = [
        nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU()) for d_in, d_out in itertools.pairwise(dims)
    ]
    blocks[0].insert(0, nn.Flatten())
    return [*blocks, Head(dims[-1], spec.num_classes, pool=False)]


_ARCHITECTURES: dict[str, tuple[tuple[int, ...], Callable[[ModelSpec], list]]] = {
    "cifarnet": ((64, 128, 256), lambda spec: _conv_layers(spec, ResidualBlock, pool=True)),
    "mnistnet": ((16, 32, 64), lambda spec: _conv_layers(spec, _plain_block, pool=False)),
    "mlp": ((512, 256, 128), _mlp_layers),
}
MODEL_NAMES = tuple(_ARCHITECTURES)


class LayeredNet(nn.Module):
    """f = f^L ∘ … ∘ f^1, its layers exposed for encoders, decoders and representations."""

    def __init__(self, spec: ModelSpec, layers: list[nn.Module]) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(layers)

    @property
    def depth(self) -> int:
        """L, the number of layers; representations are measured at l = 1..L."""
        return len(self.layers)

    @property
    def head(self) -> Head:
        return self.layers[-1]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def representations(
        self, x: Tensor, depth: int | None = None
    ) -> tuple[list[Tensor], Tensor | None]:
        """[h^1, …, h^depth] and, when depth = L, the logits (else None).

        h^L is the penultimate feature vector (the head's pooled, flattened input). Only the
        layers up to `depth` run, so a shallow second pass costs a shallow forward.
        """
        depth = self.depth if depth is None else depth
        reps = []
        for layer in self.layers[: min(depth, self.depth - 1)]:
            x = layer(x)
            reps.append(x)
        if depth < self.depth:
            return reps, None
        reps.append(self.head.features(x))
        return reps, self.head.linear(reps[-1])

    def encoder(self, layer: int) -> nn.Sequential:
        """A frozen copy of f^{l:1} with the current weights (l = 0: the identity)."""
        self._check_cut(layer)
        encoder = copy.deepcopy(nn.Sequential(*self.layers[:layer]))
        return encoder.requires_grad_(False)

    def fresh_decoder(self, layer: int, seed: int) -> nn.Sequential:
        """f^{L:l+1} of the same architecture, freshly initialised from `seed`."""
        self._check_cut(layer)
        return nn.Sequential(*build_model(self.spec, seed=seed).layers[layer:])

    def _check_cut(self, layer: int) -> None:
        if not 0 <= layer < self.depth:
            raise ValueError(
                f"layer must be in 0..{self.depth - 1} for {self.spec.name}, got {layer}"
            )


def make_spec(
    name: str, input_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...] | None = None
) -> ModelSpec:
    """Validate a model request before anything is built; widths default to the thesis'."""
    if name not in _ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    default_widths, _ = _ARCHITECTURES[name]
    widths = tuple(default_widths if widths is None else widths)
    if not widths or any(int(w) < 1 for w in widths):
        raise ValueError(f"model widths must be positive integers, got {widths}")
    return ModelSpec(name, tuple(input_shape), num_classes, widths)


def build_model(spec: ModelSpec, seed: int = 0) -> LayeredNet:
    """The network with PyTorch's default initialisation, seeded without touching global RNG."""
    _, layers = _ARCHITECTURES[spec.name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LayeredNet(spec, layers(spec))
