"""The thesis' networks: shapes, layer cuts, fresh decoders and seeded construction."""

from __future__ import annotations

import pytest
import torch

from raycompress.models import MODEL_NAMES, build_model, make_spec

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


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_encoder_then_decoder_is_the_network(name: str) -> None:
    model = build_model(make_spec(name, (1, 28, 28), 10), seed=3)
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
    with pytest.raises(ValueError, match="widths must be positive"):
        make_spec("mlp", (3, 32, 32), 10, widths=(0,))
