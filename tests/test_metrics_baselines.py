"""The baseline generalisation measures on cases computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from raycompress.metrics import baselines
from raycompress.sampling import Split
from raycompress.schema import Baseline


def _linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias))
    return layer


def test_norms_of_the_weight_matrices() -> None:
    conv = nn.Conv2d(1, 2, 2, bias=True)  # kernel (2, 1, 2, 2) read as a 2 × 4 matrix
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[3.0, 0], [0, 0]]], [[[0, 0], [0, 1.0]]]]))
        conv.bias.fill_(7.0)  # not a W_k
    net = nn.Sequential(conv, nn.Flatten(), _linear([[2.0, 0], [0, -0.5]], [5.0, 5.0]))
    assert baselines.sum_squared_weights(net) == pytest.approx(9 + 1 + 4 + 0.25)
    # spectral norms 3 and 2: log 9 + log 4
    assert baselines.log_spectral_product(net) == pytest.approx(math.log(9) + math.log(4))


def test_distance_from_initialisation_counts_every_parameter() -> None:
    net = _linear([[1.0, 2.0]], [0.5])
    initial = {name: p.detach().clone() for name, p in net.named_parameters()}
    with torch.no_grad():
        net.weight += torch.tensor([[3.0, 0.0]])
        net.bias += 4.0
    assert baselines.distance_from_init(net, initial) == pytest.approx(5.0)


def test_path_norm_of_a_relu_network() -> None:
    # squared: first layer [[1, 4], [9, 0]] with biases [1, 0] on (1, 1) gives (6, 9); the
    # second [[1, 4]] with bias 4 gives 6 + 36 + 4
    net = nn.Sequential(
        _linear([[1.0, -2.0], [3.0, 0.0]], [-1.0, 0.0]), nn.ReLU(), _linear([[1.0, 2.0]], [-2.0])
    )
    x = torch.randn(8, 2)
    assert baselines.path_norm(net, x, 4, torch.Generator().manual_seed(0)) == pytest.approx(46.0)


def test_path_norm_freezes_a_batch_statistics_norm_at_the_samples_statistics() -> None:
    norm = nn.BatchNorm1d(1, track_running_stats=False, affine=True)
    with torch.no_grad():
        norm.weight.fill_(2.0)
        norm.bias.fill_(0.5)
    net = nn.Sequential(_linear([[1.0]]), norm)
    x = torch.tensor([[1.0], [3.0], [5.0], [7.0]])  # one batch: mean 4, variance 5 (biased)
    value = baselines.path_norm(net, x, 4, torch.Generator().manual_seed(0))
    # squared network: 1 · 1 = 1, then 2² (1 − 4)/√(5 + eps) + 0.5²
    expected = 4 * (1 - 4) / math.sqrt(5 + norm.eps) + 0.25
    assert value == pytest.approx(expected)
    assert not net[1].track_running_stats  # the measured network is left as it was


def test_margins_and_their_tenth_percentile() -> None:
    out = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 2.5], [1.0, 1.0, 4.0]])
    y = torch.tensor([0, 1, 2])
    assert baselines.margins(out, y).tolist() == [2.0, -0.5, 3.0]
    torch.manual_seed(0)
    logits = torch.randn(1000, 4)
    labels = torch.randint(0, 4, (1000,))
    split = Split(logits, labels)
    value = baselines.margin_p10(nn.Identity(), split, 64, torch.Generator().manual_seed(1))
    reference = torch.quantile(baselines.margins(logits, labels), 0.1)
    assert value == pytest.approx(float(reference))  # every batch lands in its own rows


def test_magnitude_aware_flatness_of_a_one_weight_classifier() -> None:
    """logits (0, w·x) with w = 1 on x > 0, all labelled 1: noise w(1 + σz) flips every
    prediction when 1 + σz < 0, so the mean accuracy drop is Φ(−1/σ) and the drop of 0.1 is
    met at σ = 1/Φ⁻¹(0.9) = 0.780 (the other row's weight is 0: noise ε only)."""
    net = _linear([[0.0], [1.0]])
    split = Split(torch.rand(40, 1) + 0.5, torch.ones(40, dtype=torch.int64))
    found = baselines.pac_bayes_flatness(
        net, split, 40, torch.Generator().manual_seed(0), steps=12, draws=1000
    )
    sigma = 1 / torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.9)).item()
    assert found.clean_accuracy == 1.0
    assert found.sigma == pytest.approx(sigma, abs=0.06)
    assert found.value == pytest.approx(1 / found.sigma**2)
    assert torch.equal(net.weight, torch.tensor([[0.0], [1.0]]))  # the network is untouched


def test_every_baseline_is_measured_and_seeded() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), _linear([[1.0, -1.0], [0.5, 2.0]], [0.0, 0.1]))
    initial = {name: p.detach().clone() + 0.1 for name, p in net.named_parameters()}
    split = Split(torch.randn(300, 2), torch.randint(0, 2, (300,)))
    first = baselines.measure_baselines(net, initial, split, 100, seed=3)
    assert set(first) == set(Baseline)
    assert all(math.isfinite(value) for value, _ in first.values())
    assert "bisection" in first[Baseline.PAC_BAYES_FLATNESS][1]
    assert baselines.measure_baselines(net, initial, split, 100, seed=3) == first
