"""torchvision's classification networks cut at their top-level stages: `torchvision:NAME`.

    ResNet family (resnet*, resnext*, wide_resnet*):  stem, layer1, layer2, layer3, layer4, head
        stem = conv1 → bn1 → relu → maxpool;  head = global average pool → flatten → fc
    VGG family (vgg*, vgg*_bn):                       block1 … block5, head
        block k = the convolutions up to and with the k-th max-pool;
        head = average pool → flatten → classifier (its last Linear is the classifier proper)

Freshly initialised by torchvision's own code (never pretrained: nothing is downloaded), with
`num_classes` from the dataset. Adapted to the data the way the neural-collapse literature
adapts them to CIFAR-sized inputs, and the adaptation is recorded with the run:

- the first convolution takes the dataset's channel count (1 for Fashion-MNIST);
- inputs of at most 64 px: ResNet's stem becomes a 3×3 stride-1 convolution without the
  max-pool; VGG keeps only the max-pools whose input is at least 2 px wide and pools its
  last feature map to 1×1, so its classifier's first Linear takes 512 inputs (not 512·7·7).

Other families cannot be cut this way: their forward passes do more than chain their top-level
modules (DenseNet's final ReLU, Inception's auxiliary heads, the transformers' class token, …),
so a stage list would not compute the network; the error says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

PREFIX = "torchvision:"
SMALL_PX = 64  # inputs up to this size get the small-image adaptation
FAMILIES = {"resnet": "ResNet", "resnext": "ResNet", "wide_resnet": "ResNet", "vgg": "VGG"}


@dataclass
class Cut:
    """A network as stages: blocks f^1..f^L (the last ends in the classifier), their names,
    and what was changed for the data ("" when nothing was)."""

    blocks: list[nn.Module]
    names: list[str]
    adaptation: str


def _family(arch: str) -> str | None:
    return next((f for prefix, f in FAMILIES.items() if arch.startswith(prefix)), None)


def check_name(name: str) -> None:
    """One-line ValueError unless `name` is torchvision:ARCH for a classification model of a
    family that can be cut into stages."""
    import torchvision

    arch = name.removeprefix(PREFIX)
    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known:
        raise ValueError(
            f"unknown torchvision model {arch!r}: torchvision's classification models are "
            f"{', '.join(known[:8])}, … (torchvision.models.list_models())"
        )
    if _family(arch) is None:
        raise ValueError(
            f"torchvision:{arch} cannot be cut into stages: its forward pass does more than "
            "chain its top-level modules; the ResNet (resnet*, resnext*, wide_resnet*) and VGG "
            "(vgg*) families can"
        )


def stages(name: str, input_shape: tuple[int, ...], num_classes: int) -> Cut:
    """The freshly initialised network, adapted to (C, H, W) inputs and cut into stages."""
    import torchvision

    check_name(name)
    arch = name.removeprefix(PREFIX)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    small = max(input_shape[1:]) <= SMALL_PX
    cut = _resnet if _family(arch) == "ResNet" else _vgg
    return cut(net, input_shape, small)


def _conv_like(conv: nn.Conv2d, in_channels: int, kernel: int, stride: int) -> nn.Conv2d:
    """A new first convolution, initialised as torchvision initialises its convolutions."""
    new = nn.Conv2d(
        in_channels, conv.out_channels, kernel, stride, padding=kernel // 2,
        bias=conv.bias is not None,
    )  # fmt: skip
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _resnet(net: nn.Module, input_shape: tuple[int, ...], small: bool) -> Cut:
    channels = input_shape[0]
    changes = []
    if small:
        net.conv1 = _conv_like(net.conv1, channels, 3, 1)
        net.maxpool = nn.Identity()
        changes.append(f"stem: 3×3 stride-1 convolution from {channels} channel(s), no max-pool")
    elif channels != 3:
        net.conv1 = _conv_like(net.conv1, channels, 7, 2)
        changes.append(f"first convolution from {channels} channel(s)")
    blocks = [
        nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
        net.layer1, net.layer2, net.layer3, net.layer4,
        nn.Sequential(net.avgpool, nn.Flatten(), net.fc),
    ]  # fmt: skip
    names = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    return Cut(blocks, names, _said(changes, input_shape))


def _vgg(net: nn.Module, input_shape: tuple[int, ...], small: bool) -> Cut:
    channels, size = input_shape[0], min(input_shape[1:])
    changes = []
    layers = list(net.features)
    if channels != 3:
        layers[0] = _conv_like(layers[0], channels, 3, 1)
        changes.append(f"first convolution from {channels} channel(s)")
    blocks: list[nn.Module] = []
    current: list[nn.Module] = []
    dropped = []
    for module in layers:
        if isinstance(module, nn.MaxPool2d):
            if small and size < 2:
                dropped.append(str(len(blocks) + 1))
            else:
                current.append(module)
                size //= 2
            blocks.append(nn.Sequential(*current))
            current = []
        else:
            current.append(module)
    classifier = list(net.classifier)
    avgpool = net.avgpool
    if small:
        avgpool = nn.AdaptiveAvgPool2d(1)
        first = classifier[0]
        classifier[0] = nn.Linear(_channels_out(layers), first.out_features)
        nn.init.normal_(classifier[0].weight, 0, 0.01)
        nn.init.zeros_(classifier[0].bias)
        changes.append(f"average pool to 1×1, classifier from {classifier[0].in_features} inputs")
    if dropped:
        changes.append(f"max-pool of block {', '.join(dropped)} dropped (its input is 1 px)")
    head = nn.Sequential(avgpool, nn.Flatten(), *classifier)
    names = [f"block{i}" for i in range(1, len(blocks) + 1)] + ["head"]
    return Cut([*blocks, head], names, _said(changes, input_shape))


def _channels_out(layers: list[nn.Module]) -> int:
    """The channels the last convolution of a feature stack puts out."""
    return next(m.out_channels for m in reversed(layers) if isinstance(m, nn.Conv2d))


def _said(changes: list[str], input_shape: tuple[int, ...]) -> str:
    shape = "×".join(map(str, input_shape))
    return f"for {shape} inputs: " + "; ".join(changes) if changes else ""
