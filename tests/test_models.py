"""The thesis' networks: shapes, layer cuts, fresh decoders and seeded construction."""

from __future__ import annotations

import pytest
import torch

from raycompress.models import (
    THESIS_MODELS,
    batch_norm_regime,
    build_model,
    check_model,
    make_spec,
)

# Thesis, table in §3.3 (H × W × channels of h^1, h^2, h^3).
THESIS_SHAPES = {
    ("cifarnet", (3, 32, 32)): [(64, 16, 16), (128, 8, 8), (256, 4, 4)],
    ("cifarnet", (1, 28, 28)): [(64, 14, 14), (128, 7, 7), (256, 3, 3)],
    ("mnistnet", (3, 32, 32)): [(16, 10, 10), (32, 3, 3), (64, 1, 1)],
    ("mnistnet", (1, 28, 28)): [(16, 9, 9), (32, 3, 3), (64, 1, 1)],
}


@pytest.mark.parametrize(("name", "shape"), THESIS_SHAPES)
def test_representation_shapes_match_the_thesis(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(make_spec(name, shape, 10))
    reps, logits = model.representations(torch.rand(3, *shape))
    assert model.depth == 4
    assert [tuple(h.shape[1:]) for h in reps[:3]] == THESIS_SHAPES[name, shape]
    assert reps[3].shape == (3, THESIS_SHAPES[name, shape][2][0])  # penultimate: 256 or 64
    assert logits.shape == (3, 10)


def test_thesis_architecture_details() -> None:
    model = build_model(make_spec("cifarnet", (3, 32, 32), 10))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 3, (3, 3)), (3, 64, (3, 3)), (64, 64, (3, 3)), (64, 128, (3, 3)),
        (128, 128, (3, 3)), (128, 256, (3, 3)),
    ]  # fmt: skip
    assert all(c.bias is None for c in convs)
    assert all(not n.track_running_stats for n in norms)
    mnist = build_model(make_spec("mnistnet", (1, 28, 28), 10))
    assert [c.kernel_size for c in mnist.modules() if isinstance(c, torch.nn.Conv2d)] == [
        (5, 5)
    ] * 3
    assert mnist.head.linear.in_features == 64


@pytest.mark.parametrize("name", [*THESIS_MODELS, "torchvision:resnet18", "torchvision:vgg11_bn"])
def test_encoder_then_decoder_is_the_network(name: str) -> None:
    model = build_model(make_spec(name, (1, 28, 28), 10), seed=3).eval()  # no dropout
    x = torch.rand(8, 1, 28, 28)
    logits = model(x)
    reps, same_logits = model.representations(x)
    torch.testing.assert_close(same_logits, logits)
    for layer in range(model.depth):
        h = model.encoder(layer)(x)
        if layer:
            torch.testing.assert_close(h, reps[layer - 1])
        torch.testing.assert_close(torch.nn.Sequential(*model.layers[layer:])(h), logits)


def test_encoder_is_a_frozen_copy() -> None:
    model = build_model(make_spec("mnistnet", (1, 28, 28), 10))
    encoder = model.encoder(2)
    assert not any(p.requires_grad for p in encoder.parameters())
    x = torch.rand(4, 1, 28, 28)
    before = encoder(x)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    torch.testing.assert_close(encoder(x), before)


def test_fresh_decoder_is_new_seeded_and_of_the_same_architecture() -> None:
    model = build_model(make_spec("cifarnet", (3, 32, 32), 10), seed=0)
    a, b, c = (model.fresh_decoder(1, seed=s) for s in (7, 7, 8))
    shapes = [p.shape for p in a.parameters()]
    assert shapes == [p.shape for p in torch.nn.Sequential(*model.layers[1:]).parameters()]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))
    assert not torch.equal(next(a.parameters()), next(model.layers[1].parameters()))
    with pytest.raises(ValueError, match=r"layer must be in 0\.\.3"):
        model.fresh_decoder(4, seed=0)


def test_construction_is_seeded_and_leaves_global_rng_alone() -> None:
    spec = make_spec("mlp", (1, 28, 28), 10, widths=(32, 16))
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    m1, m2 = build_model(spec, seed=5), build_model(spec, seed=5)
    assert torch.rand(1) == expected
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters(), strict=True))
    assert m1.depth == 3


def test_bad_model_requests() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet': choose one of cifarnet"):
        make_spec("resnet", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="widths apply to cifarnet, mnistnet, mlp only"):
        make_spec("torchvision:resnet18", (3, 32, 32), 10, widths=(8,))
    with pytest.raises(ValueError, match="torchvision:densenet121 cannot be cut into stages"):
        make_spec("torchvision:densenet121", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet7'"):
        make_spec("torchvision:resnet7", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="widths must be positive"):
        make_spec("mlp", (3, 32, 32), 10, widths=(0,))


RESNET_STAGES = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]


@pytest.mark.parametrize(
    ("name", "shape", "names", "dims", "adaptation"),
    [
        ("torchvision:resnet18", (1, 28, 28), RESNET_STAGES,
         [64 * 28 * 28, 64 * 28 * 28, 128 * 14 * 14, 256 * 7 * 7, 512 * 4 * 4, 512],
         "for 1×28×28 inputs: stem: 3×3 stride-1 convolution from 1 channel(s), no max-pool"),
        ("torchvision:resnet34", (3, 96, 96), RESNET_STAGES,
         [64 * 24 * 24, 64 * 24 * 24, 128 * 12 * 12, 256 * 6 * 6, 512 * 3 * 3, 512], ""),
        ("torchvision:vgg11_bn", (1, 28, 28), [*(f"block{i}" for i in range(1, 6)), "head"],
         [64 * 14 * 14, 128 * 7 * 7, 256 * 3 * 3, 512, 512, 4096],
         "for 1×28×28 inputs: first convolution from 1 channel(s); average pool to 1×1, "
         "classifier from 512 inputs; max-pool of block 5 dropped (its input is 1 px)"),
    ],
)  # fmt: skip
def test_torchvision_models_are_cut_at_their_stages(
    name: str, shape: tuple, names: list, dims: list, adaptation: str
) -> None:
    model = build_model(make_spec(name, shape, 7), seed=0).eval()
    assert list(model.names) == names and model.adaptation == adaptation
    reps, logits = model.representations(torch.rand(2, *shape))
    assert [h[0].numel() for h in reps] == dims and logits.shape == (2, 7)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == shape[0]
    assert model.head.linear.out_features == 7 and batch_norm_regime(model) == "running statistics"
    again = build_model(make_spec(name, shape, 7), seed=0)
    assert all(
        torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters(), strict=True)
    )


def test_batch_norm_regimes() -> None:
    assert batch_norm_regime(build_model(make_spec("mnistnet", (1, 28, 28), 10))) == (
        "batch statistics"
    )
    assert batch_norm_regime(build_model(make_spec("mlp", (1, 28, 28), 10))) == "none"


def small_net(input_shape: tuple[int, ...], num_classes: int) -> list[torch.nn.Module]:
    """A network of one's own: two blocks and a head ending in a Linear."""
    c = input_shape[0]
    return [
        torch.nn.Sequential(torch.nn.Conv2d(c, 4, 3, padding=1), torch.nn.ReLU()),
        torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, stride=2), torch.nn.ReLU()),
        torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                            torch.nn.Linear(8, num_classes)),
    ]  # fmt: skip


def test_a_network_of_ones_own_is_seeded_and_cut_like_the_thesis_models() -> None:
    spec = make_spec("small", (1, 28, 28), 10, builders={"small": small_net})
    check_model(spec)
    a, b, c = (build_model(spec, seed=s) for s in (1, 1, 2))
    assert a.depth == 3 and list(a.names) == ["block1", "block2", "head"]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    reps, _ = a.representations(torch.rand(2, 1, 28, 28))
    assert [tuple(h.shape[1:]) for h in reps] == [(4, 28, 28), (8, 13, 13), (8,)]
    assert a.head.linear.in_features == 8  # NC3 uses these weights
    decoder = a.fresh_decoder(1, seed=5)
    assert torch.equal(decoder[0][0].weight, build_model(spec, seed=5).layers[1][0].weight)


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        (lambda s, c: [small_net(s, c)[0],
                       torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(5, c))],
         r"block 2 \(head, Head\) fails on input of shape \(2, 4, 28, 28\)"),
        (lambda s, c: [*small_net(s, c)[:2], torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1),
                       torch.nn.Flatten(), torch.nn.Linear(8, c + 1))],
         r"map a batch of 2 to shape \(2, 11\), expected \(2, 10\) logits"),
        (lambda s, c: [*small_net(s, c)[:2], torch.nn.Flatten()],
         "the last block must end in an nn.Linear"),
        (lambda s, c: ["not a module"], "the builder must return a non-empty list of nn.Module"),
        (lambda s, c: 1 / 0, "its builder failed: ZeroDivisionError: division by zero"),
    ],
)  # fmt: skip
def test_a_network_that_does_not_compose_is_one_line(builder, message: str) -> None:
    spec = make_spec("mine", (1, 28, 28), 10, builders={"mine": builder})
    with pytest.raises(ValueError, match=f"^model 'mine': .*{message}") as err:
        check_model(spec)
    assert "\n" not in str(err.value)
