"""Networks as explicit layer lists f = f^L ∘ … ∘ f^1: the thesis' (§2.3, figure 2.3),
torchvision's (`torchvision_models`, `torchvision:NAME`) and a sweep's own (a `Builder`).

    cifarnet (f₊): channels (64, 128, 256); block l =
        relu(x + bn(conv3x3_{d→d}(x))) → conv3x3_{d→d'} → bn → maxpool2 → relu
        head f^4 = global max-pool → linear
    mnistnet (f₋): channels (16, 32, 64); block l = conv5x5_{d→d'} → bn → maxpool3 → relu
        head f^4 = flatten → linear
    mlp: flatten → (linear → relu) per width; head = linear

In the thesis' networks convolutions have no bias, batch norm keeps no running statistics (a
representation depends on its batch, in training and evaluation alike), PyTorch's default
initialisation. torchvision's keep running statistics and are measured in evaluation mode
(`batch_norm_regime` says which regime a network uses). A network's last block ends in the
classifier, an nn.Linear whose input is the penultimate representation (`Head`).

Every model keeps its layers in `layers` (f^1..f^L) and its `ModelSpec`, so that for any
l = 0..L−1 the encoder f^{l:1} (current weights) and a freshly initialised decoder f^{L:l+1}
of the same architecture can be built. Layer L's "representation" is the penultimate feature
vector, the input of the final linear map.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from raycompress import torchvision_models

# A network of one's own: (input shape (C, H, W), classes) → its blocks f^1..f^L in order.
Builder = Callable[[tuple[int, ...], int], Sequence[nn.Module]]


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds an architecture anywhere (a Ray task on another node included): its name,
    input shape (C, H, W), classes, widths (the thesis' models) or builder (a sweep's own)."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    widths: tuple[int, ...] = ()
    builder: Builder | None = None


class Head(nn.Module):
    """f^L = linear ∘ pre: `pre` maps h^{L−1} to the penultimate features (B, D), the input of
    the final linear classifier (thesis' f₊: global max-pool and flatten; f₋: flatten)."""

    def __init__(self, pre: nn.Module, linear: nn.Linear) -> None:
        super().__init__()
        self.pre = pre
        self.linear = linear

    def features(self, h: Tensor) -> Tensor:
        """The penultimate features: the linear map's input (B, D)."""
        return self.pre(h).flatten(1)

    def forward(self, h: Tensor) -> Tensor:
        return self.linear(self.features(h))


def as_head(block: nn.Module) -> Head:
    """A network's last block as a Head: an nn.Linear, or an nn.Sequential ending in one."""
    if isinstance(block, Head):
        return block
    if isinstance(block, nn.Linear):
        return Head(nn.Identity(), block)
    if isinstance(block, nn.Sequential) and len(block) and isinstance(block[-1], nn.Linear):
        return Head(nn.Sequential(*block[:-1]), block[-1])
    raise ValueError(
        f"the last block must end in an nn.Linear (an nn.Linear, or an nn.Sequential whose last "
        f"module is one), got {type(block).__name__}"
    )


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
    pre = nn.AdaptiveMaxPool2d(1) if pool else nn.Identity()
    return [*blocks, Head(pre, nn.Linear(in_features, spec.num_classes))]


def _mlp_layers(spec: ModelSpec) -> list:
    dims = (int(torch.tensor(spec.input_shape).prod()), *spec.widths)
    blocks = [
        nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU()) for d_in, d_out in itertools.pairwise(dims)
    ]
    blocks[0].insert(0, nn.Flatten())
    return [*blocks, Head(nn.Identity(), nn.Linear(dims[-1], spec.num_classes))]


_ARCHITECTURES: dict[str, tuple[tuple[int, ...], Callable[[ModelSpec], list]]] = {
    "cifarnet": ((64, 128, 256), lambda spec: _conv_layers(spec, ResidualBlock, pool=True)),
    "mnistnet": ((16, 32, 64), lambda spec: _conv_layers(spec, _plain_block, pool=False)),
    "mlp": ((512, 256, 128), _mlp_layers),
}
THESIS_MODELS = tuple(_ARCHITECTURES)
MODEL_NAMES = (*THESIS_MODELS, f"{torchvision_models.PREFIX}NAME")


class LayeredNet(nn.Module):
    """f = f^L ∘ … ∘ f^1, its layers exposed for encoders, decoders and representations.

    `names` names the layers (the thesis' blocks, a torchvision model's stages); `adaptation`
    says how a torchvision model was changed for the data ("" when it was not)."""

    def __init__(
        self, spec: ModelSpec, layers: list[nn.Module], names: Sequence[str], adaptation: str = ""
    ) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList([*layers[:-1], as_head(layers[-1])])
        self.names = tuple(names)
        self.adaptation = adaptation

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


# Modules that only reshape: a representation passed through them is the same vector.
_RESHAPES = (nn.Identity, nn.Flatten, nn.Unflatten)


def _only_reshapes(module: nn.Module) -> bool:
    if isinstance(module, nn.Sequential):
        return all(_only_reshapes(m) for m in module)
    return isinstance(module, _RESHAPES)


def identical_layers(model: LayeredNet) -> dict[int, int]:
    """Each layer l = 1..L whose representation is an earlier layer's (flattened), mapped to the
    earliest such layer (0: the input): the blocks between them only reshape. f₋'s and the
    MLP's penultimate features are h^{L−1} flattened ({L: L−1}); f₊'s are max-pooled ({})."""
    same: dict[int, int] = {}
    # the head's features are pre(h^{L−1}) flattened: pre is the last block's representation
    for layer, block in enumerate([*model.layers[:-1], model.head.pre], 1):
        if _only_reshapes(block):
            same[layer] = same.get(layer - 1, layer - 1)
    return same


def batch_norm_regime(model: nn.Module) -> str:
    """How the model's batch norm normalises when measured: "batch statistics" (the thesis'
    models: no running statistics, a representation depends on its batch), "running
    statistics" (evaluation mode, as torchvision's models), "mixed" or "none"."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    regimes = {"running statistics" if m.track_running_stats else "batch statistics" for m in norms}
    return regimes.pop() if len(regimes) == 1 else ("mixed" if regimes else "none")


def describe(model: LayeredNet) -> dict[str, str | list[str] | dict[str, int]]:
    """What network ran, for the run's record (`record.MODEL_FILE`). `same_as` (only for a
    network that has them, as records written before it lack it): `identical_layers`, keyed
    by the layer as text (JSON's object keys)."""
    same = {str(layer): earlier for layer, earlier in identical_layers(model).items()}
    return {
        "model": model.spec.name,
        "stages": list(model.names),
        "batch_norm": batch_norm_regime(model),
        "adaptation": model.adaptation,
        **({"same_as": same} if same else {}),
    }


def make_spec(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    widths: Sequence[int] | None = None,
    builders: Mapping[str, Builder] | None = None,
) -> ModelSpec:
    """Validate a model request before anything is built: one of the thesis' models (widths
    default to the thesis'), `torchvision:NAME`, or a name of `builders` (a sweep's MODELS)."""
    builders = builders or {}
    if name in _ARCHITECTURES:
        default_widths, _ = _ARCHITECTURES[name]
        widths = tuple(default_widths if widths is None else widths)
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(f"model widths must be positive integers, got {widths}")
        return ModelSpec(name, tuple(input_shape), num_classes, widths)
    if widths is not None:
        raise ValueError(f"widths apply to {', '.join(_ARCHITECTURES)} only, not to {name!r}")
    if name.startswith(torchvision_models.PREFIX):
        torchvision_models.check_name(name)
        return ModelSpec(name, tuple(input_shape), num_classes)
    if name in builders:
        return ModelSpec(name, tuple(input_shape), num_classes, builder=builders[name])
    known = [
        *_ARCHITECTURES,
        *builders,
        f"{torchvision_models.PREFIX}NAME (e.g. torchvision:resnet18)",
    ]
    raise ValueError(f"unknown model {name!r}: choose one of {', '.join(known)}")


def build_model(spec: ModelSpec, seed: int = 0) -> LayeredNet:
    """The network with its own default initialisation, seeded without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.name.startswith(torchvision_models.PREFIX):
            cut = torchvision_models.stages(spec.name, spec.input_shape, spec.num_classes)
            return LayeredNet(spec, cut.blocks, cut.names, cut.adaptation)
        if spec.builder is not None:
            blocks = list(spec.builder(spec.input_shape, spec.num_classes))
            names = [f"block{i}" for i in range(1, len(blocks))] + ["head"]
            return LayeredNet(spec, blocks, names)
        _, layers = _ARCHITECTURES[spec.name]
        blocks = layers(spec)
        return LayeredNet(spec, blocks, [f"block{i}" for i in range(1, len(blocks))] + ["head"])


@torch.no_grad()
def check_model(spec: ModelSpec) -> None:
    """Build the model and run a batch of two zeros through every block: one-line ValueError
    naming the block and the shape found when the blocks do not compose into (B, C) logits."""
    where = f"model {spec.name!r}"
    try:
        blocks = list(spec.builder(spec.input_shape, spec.num_classes)) if spec.builder else None
    except Exception as err:
        raise ValueError(f"{where}: its builder failed: {error_line(err)}") from None
    if blocks is not None and (not blocks or not all(isinstance(b, nn.Module) for b in blocks)):
        raise ValueError(f"{where}: the builder must return a non-empty list of nn.Module blocks")
    try:
        model = build_model(spec).eval()
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    x = torch.zeros(2, *spec.input_shape)
    for i, (name, block) in enumerate(zip(model.names, model.layers, strict=True), 1):
        try:
            out = block(x)
        except Exception as err:
            raise ValueError(
                f"{where}: block {i} ({name}, {type(block).__name__}) fails on input of shape "
                f"{tuple(x.shape)}: {error_line(err)}"
            ) from None
        if not isinstance(out, Tensor):
            raise ValueError(
                f"{where}: block {i} ({name}) returns {type(out).__name__}, not a tensor"
            )
        x = out
    if tuple(x.shape) != (2, spec.num_classes):
        raise ValueError(
            f"{where}: the blocks map a batch of 2 to shape {tuple(x.shape)}, expected "
            f"(2, {spec.num_classes}) logits: the last Linear must have num_classes outputs"
        )


def error_line(err: Exception) -> str:
    """An error in one line: its type and the first line of its message (≤ 300 characters)."""
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:300]}"
