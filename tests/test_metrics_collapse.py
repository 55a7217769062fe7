"""Neural collapse of a whole network: every path, the batch order, and the reported loss."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from reference import dense_reference

from raycompress.metrics import CollapseConfig, measure_collapse
from raycompress.metrics.collapse import choose_paths
from raycompress.models import build_model, make_spec
from raycompress.sampling import Split, batch_indices

BATCH = 64


@pytest.fixture(scope="module")
def setup() -> tuple:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(80)  # class-sorted on purpose
    x = (torch.rand(len(y), 1, 28, 28, generator=g) + 0.3 * y[:, None, None, None]).clamp(0, 1)
    model = build_model(make_spec("mnistnet", (1, 28, 28), 4), seed=1)
    return model, Split(x, y)


def measure(setup: tuple, **kwargs) -> object:
    model, split = setup
    return measure_collapse(model, split, 4, CollapseConfig(batch_size=BATCH, **kwargs))


def test_every_path_gives_the_same_values(setup: tuple) -> None:
    # The two-pass path re-runs the network; the features path reuses pass 1's representations.
    # Under batch-statistics batch norm they agree only if both passes see identical batches.
    methods = ("two_pass", "features", "scatter", "auto")
    reports = {m: measure(setup, method=m, scatter_max_dim=2048) for m in methods}
    base = reports["two_pass"].layers
    for method, report in reports.items():
        assert {s.path for s in report.layers.values()} <= {
            method,
            "features",
            "scatter",
            "two_pass",
        }
        for layer, stats in report.layers.items():
            assert stats.nc_trace == pytest.approx(base[layer].nc_trace, rel=1e-9), (method, layer)
            assert stats.nc_within_trace == pytest.approx(base[layer].nc_within_trace, rel=1e-9)
            assert stats.nc_rank == base[layer].nc_rank == 3
    assert reports["features"].layers[2].nc_ncc_agreement == base[2].nc_ncc_agreement


def test_matches_dense_reference_in_the_same_batch_order(setup: tuple, device: str) -> None:
    model, split = copy.deepcopy(setup[0]).to(device), setup[1].to(device)
    report = measure((model, split))
    order = batch_indices(len(split), BATCH, torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = [model.representations(split.x[i.to(device)]) for i in order]
    y = torch.cat([split.y[i] for i in order]).cpu()
    logits = torch.cat([out[1] for out in outputs]).cpu()
    for layer, stats in report.layers.items():
        h = torch.cat([out[0][layer - 1].flatten(1) for out in outputs]).cpu()
        ref = dense_reference(h, y, 4)
        assert stats.nc_trace == pytest.approx(ref["nc_trace"], rel=1e-8)
        assert stats.dim == h.shape[1]
        means = torch.stack([h[y == c].double().mean(0) for c in range(4)])
        nearest = torch.cdist(h.double(), means).argmin(1)
        assert stats.nc_ncc_agreement == pytest.approx(
            float((nearest == logits.argmax(1)).double().mean())
        )
    assert report.loss == pytest.approx(float(F.cross_entropy(logits.double(), y)), rel=1e-12)
    assert report.accuracy == float((logits.argmax(1) == y).double().mean())
    assert report.layers[4].nc_self_duality >= 0
    assert all(math.isnan(report.layers[layer].nc_self_duality) for layer in (1, 2, 3))


def test_batch_order_matters_under_batch_statistics(setup: tuple) -> None:
    # Why the order is fixed: another order changes the representations, hence the value.
    a, b = measure(setup, seed=0), measure(setup, seed=1)
    assert a.layers[1].nc_trace != pytest.approx(b.layers[1].nc_trace, rel=1e-6)
    assert measure(setup, seed=0).layers[1].nc_trace == a.layers[1].nc_trace


def test_measurement_batches_are_class_mixed(setup: tuple) -> None:
    _, split = setup
    for index in batch_indices(len(split), BATCH, torch.Generator().manual_seed(0)):
        assert split.y[index].unique().numel() == 4


def test_measurement_restores_training_mode_and_weights(setup: tuple) -> None:
    model, _ = setup
    before = [p.clone() for p in model.parameters()]
    model.train()
    measure(setup)
    assert model.training
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))


def test_automatic_choice() -> None:
    config = CollapseConfig(feature_budget_bytes=1000 * 300 * 4, scatter_max_dim=200)
    # Deepest first: 64 and 128 fit the budget (108 dims left), 120 does not but is small enough
    # for the scatter, 4096 needs the second pass.
    assert choose_paths([4096, 120, 128, 64], 1000, 4, config) == [
        "two_pass", "scatter", "features", "features",
    ]  # fmt: skip
    # A shallow layer under a two-pass layer rides on that second pass instead of the budget.
    assert choose_paths([4096, 16, 4096, 32], 1000, 4, config) == [
        "two_pass", "two_pass", "two_pass", "features",
    ]  # fmt: skip
    assert choose_paths([10, 10], 10, 4, CollapseConfig(method="scatter")) == ["scatter"] * 2
    with pytest.raises(ValueError, match="D = 4096 > scatter_max_dim = 1024"):
        choose_paths([4096, 10], 10, 4, CollapseConfig(method="scatter"))
    with pytest.raises(ValueError, match="over feature_budget_bytes"):
        choose_paths([4096, 10], 1000, 4, CollapseConfig(method="features", feature_budget_bytes=1))


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="unknown NC method 'svd'"):
        CollapseConfig(method="svd")
    model = build_model(make_spec("mlp", (1, 4, 4), 3, widths=(5,)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        measure_collapse(model, Split(torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 3, 0, 1])), 3)


@pytest.fixture(scope="module")
def running() -> tuple:
    """torchvision's ResNet-18 on 4×4 inputs, its running statistics moved by a few training
    batches: batch norm in evaluation mode, as such networks are measured."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(4).repeat_interleave(60)
    x = (torch.rand(len(y), 1, 4, 4, generator=g) + 0.3 * y[:, None, None, None]).clamp(0, 1)
    model = build_model(make_spec("torchvision:resnet18", (1, 4, 4), 4), seed=1)
    with torch.no_grad():
        for index in batch_indices(len(y), BATCH, g):
            model(x[index])  # training mode: the running statistics move
    return model, Split(x, y)


def test_running_statistics_match_the_dense_reference_in_any_batch_order(running: tuple) -> None:
    model, split = running
    reports = [
        measure_collapse(model, split, 4, CollapseConfig(batch_size=BATCH, seed=s, method=m))
        for s, m in ((0, "auto"), (1, "two_pass"), (2, "features"))
    ]
    with torch.no_grad():
        reps, logits = model.eval().representations(split.x)  # all at once: no batches at all
    model.train()
    for layer, h in enumerate(reps, 1):
        ref = dense_reference(h, split.y, 4)
        for report in reports:  # a representation no longer depends on its batch
            assert report.layers[layer].nc_trace == pytest.approx(ref["nc_trace"], rel=1e-6)
            assert report.layers[layer].nc_within_trace == pytest.approx(
                ref["within_trace"], rel=1e-6
            )
    assert reports[0].loss == pytest.approx(
        float(F.cross_entropy(logits.double(), split.y)), rel=1e-6
    )
    assert len(reports[0].layers) == 6 and reports[0].layers[1].dim == 64 * 4 * 4


def test_a_model_that_changes_between_the_passes_is_caught(setup: tuple) -> None:
    """The two-pass path re-runs the network for pass 2: a model that moved in between (here a
    hook that nudges the first weights on every forward) must not give a number."""
    model, split = setup
    changing = copy.deepcopy(model)
    weight = next(changing.parameters())

    def nudge(*_: object) -> None:
        with torch.no_grad():
            weight.add_(1e-2)

    changing.layers[0].register_forward_pre_hook(nudge)
    config = CollapseConfig(batch_size=BATCH, method="two_pass")
    with pytest.raises(RuntimeError, match="changed between the passes"):
        measure_collapse(changing, split, 4, config)
    assert measure_collapse(model, split, 4, config).layers[1].nc_trace > 0  # a fixed one passes
