"""𝒱-information: the relabelling, entropy baselines, closed-form cases and batched training."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raycompress.metrics.decoders import (
    DecoderConfig,
    Progress,
    StackedDecoders,
    batching_mode,
    score_heads,
    train_heads,
)
from raycompress.metrics.vinfo import (
    VInfoConfig,
    entropy_bits,
    measure_vinfo,
)
from raycompress.protocol import schedule_epochs
from raycompress.sampling import Split, num_digits, relabel
from raycompress.schema import Quantity, VInfoResult
from raycompress.stopping import Stop

SUFF, MIN = Quantity.SUFFICIENCY, Quantity.MINIMALITY


def test_relabelling_of_a_worked_example() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 3, 4, 4, 4, 4, 4, 4])
    digits = relabel(labels, 5)
    assert digits.dtype == torch.int64
    assert digits.T.tolist() == [
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 4, 0],
    ]


@pytest.mark.parametrize(("per_class", "base", "expected"), [
    (125, 5, 3), (126, 5, 4), (1000, 10, 3), (1001, 10, 4), (1024, 2, 10), (2, 10, 1), (1, 10, 0),
])  # fmt: skip
def test_digit_counts_at_exact_powers(per_class: int, base: int, expected: int) -> None:
    labels = torch.arange(base).repeat(per_class)
    assert relabel(labels, base).shape == (per_class * base, expected)
    assert num_digits(per_class - 1, base) == expected
    assert math.ceil(math.log(125, 5)) == 4  # why integers: the float logarithm overcounts


def test_relabelling_is_a_bijection_within_each_class() -> None:
    labels = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(0))
    for generator in (None, torch.Generator().manual_seed(5)):
        digits = relabel(labels, 4, generator)
        index = (digits * 4 ** torch.arange(digits.shape[1] - 1, -1, -1)).sum(1)
        for c in range(4):
            assert sorted(index[labels == c].tolist()) == list(range(int((labels == c).sum())))
    assert not torch.equal(relabel(labels, 4), relabel(labels, 4, torch.Generator().manual_seed(5)))


def test_entropy_of_a_non_uniform_leading_digit() -> None:
    # 12 samples per class in base 10: within-class indices 0..11, leading digit 0 (×10) or 1 (×2).
    labels = torch.arange(10).repeat(12)
    leading = relabel(labels, 10)[:, 0]
    expected = -(10 / 12 * math.log2(10 / 12) + 2 / 12 * math.log2(2 / 12))
    assert entropy_bits(leading, 10) == pytest.approx(expected, rel=1e-12)
    assert entropy_bits(leading, 10) < math.log2(10)
    assert entropy_bits(labels, 10) == pytest.approx(math.log2(10), rel=1e-12)


def mlp_decoder(dim: int, classes: int) -> callable:
    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, classes))

    return make


def features_split(features: torch.Tensor, labels: torch.Tensor) -> Split:
    return Split(features, labels)


FAST = DecoderConfig(protocol="thesis", lr=1e-2, batch_size=100, max_epochs=60, patience=5)


def test_sufficiency_of_one_hot_labels_is_the_label_entropy() -> None:
    labels = torch.tensor([0] * 150 + [1] * 100 + [2] * 50 + [3] * 100)
    features = nn.functional.one_hot(labels, 4).float()
    out = measure_vinfo(
        nn.Identity(), mlp_decoder(4, 4), Split(features, labels), 4, VInfoConfig(FAST)
    )
    h_y = entropy_bits(labels, 4)
    assert out.terms[SUFF].heads[0].entropy == pytest.approx(h_y)
    assert h_y < 2  # imbalanced: the baseline is not log C
    assert out.value(SUFF) == pytest.approx(h_y, abs=0.03)
    assert out.error == ""


def test_sufficiency_of_independent_features_is_zero_held_out() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(200)
    features = torch.randn(800, 8, generator=g)
    config = VInfoConfig(
        DecoderConfig(protocol="thesis", lr=1e-3, batch_size=100, max_epochs=30, patience=3),
        held_out=True,
    )
    out = measure_vinfo(nn.Identity(), mlp_decoder(8, 4), Split(features, labels), 4, config)
    held_out = out.terms[Quantity.HELD_OUT]
    assert held_out.raw == pytest.approx(0, abs=0.1)
    assert held_out.raw < out.terms[SUFF].raw  # in-sample fits noise
    assert held_out.protocol.startswith("held_out")


def test_minimality_of_memorisable_inputs_is_the_mean_digit_entropy() -> None:
    # Layer 0 (the identity encoder) on a small set that the decoder can memorise.
    labels = torch.arange(3).repeat(40)  # 40 per class in base 3: 4 digits, leading one skewed
    g = torch.Generator().manual_seed(1)
    x = torch.randn(120, 16, generator=g)
    config = VInfoConfig(
        DecoderConfig(protocol="thesis", lr=1e-2, batch_size=120, max_epochs=400, patience=50)
    )
    out = measure_vinfo(nn.Identity(), mlp_decoder(16, 3), Split(x, labels), 3, config)
    digits = relabel(labels, 3)
    mean_entropy = sum(entropy_bits(digits[:, j], 3) for j in range(4)) / 4
    assert out.num_digits == 4
    assert out.terms[MIN].heads[0].entropy < math.log2(3)
    assert out.value(MIN) == pytest.approx(mean_entropy, abs=0.03)


def test_batched_heads_match_heads_trained_one_at_a_time() -> None:
    g = torch.Generator().manual_seed(2)
    labels = torch.arange(5).repeat(40)
    x = torch.randn(200, 6, generator=g) + labels[:, None]
    targets = torch.cat([labels[:, None], relabel(labels, 5)], 1)  # (200, 4): y and 3 digits
    make = mlp_decoder(6, 5)
    config = DecoderConfig(
        protocol="thesis", lr=5e-3, batch_size=50, max_epochs=30, patience=2, min_delta=0.01
    )
    seeds = (10, 11, 12, 13)
    batched = StackedDecoders([make(s) for s in seeds])
    fits = train_heads(batched, x, targets, config, torch.Generator().manual_seed(3))
    together = score_heads(batched, x, targets, 50, seed=0)
    assert len({f.epochs for f in fits}) > 1  # heads stopped at different epochs
    for k, seed in enumerate(seeds):
        alone = StackedDecoders([make(seed)])
        fit = train_heads(alone, x, targets[:, k : k + 1], config, torch.Generator().manual_seed(3))
        assert fit[0].epochs == fits[k].epochs
        assert float(score_heads(alone, x, targets[:, k : k + 1], 50, seed=0)[0]) == pytest.approx(
            float(together[k]), rel=1e-4
        )


def test_head_stops_are_recorded() -> None:
    labels = torch.arange(2).repeat(50)
    x = nn.functional.one_hot(labels, 2).float()
    stack = StackedDecoders([mlp_decoder(2, 2)(0), mlp_decoder(2, 2)(1)])
    targets = torch.stack([labels, torch.randint(0, 2, (100,), generator=torch.Generator())], 1)
    fits = train_heads(
        stack,
        x,
        targets,
        DecoderConfig(protocol="thesis", lr=3e-2, batch_size=100, max_epochs=300, patience=10),
        torch.Generator(),
    )
    assert fits[0].stop is Stop.LOSS_THRESHOLD and fits[0].converged
    assert fits[1].stop is Stop.PLATEAU and fits[1].epochs < 300


def test_undefined_values_give_messages_not_crashes() -> None:
    make = mlp_decoder(3, 3)
    single = measure_vinfo(
        nn.Identity(),
        make,
        Split(torch.randn(20, 3), torch.zeros(20, dtype=torch.long)),
        3,
        VInfoConfig(FAST),
    )
    assert math.isnan(single.value(SUFF)) and "at least two" in single.error
    one_each = measure_vinfo(
        nn.Identity(), make, Split(torch.randn(3, 3), torch.arange(3)), 3, VInfoConfig(FAST)
    )
    assert one_each.num_digits == 0 and math.isnan(one_each.value(MIN))
    assert "N_D = 0" in one_each.error
    diverged = measure_vinfo(
        nn.Identity(), make, Split(torch.randn(60, 3), torch.arange(3).repeat(20)), 3,
        VInfoConfig(DecoderConfig(protocol="thesis", lr=1e30, batch_size=20, max_epochs=5)),
    )  # fmt: skip
    assert math.isnan(diverged.value(SUFF)) and "diverged" in diverged.error
    assert diverged.terms[SUFF].heads[0].fit.stop is Stop.DIVERGED


@pytest.mark.parametrize(("schedule", "expected"), [
    ("every", set(range(1, 51))),
    ("every:20", {20, 40}),
    ("log:5", {1, 3, 7, 19, 50}),
    ("none", set()),
    ("stop", {50}),  # and wherever training stops earlier (training.Run)
    ((1, 5, 9), {1, 5, 9}),
])  # fmt: skip
def test_schedules(schedule: str | tuple[int, ...], expected: set[int]) -> None:
    assert schedule_epochs(schedule, 50) == expected


@pytest.mark.parametrize("schedule", ["sometimes", "every:0", "log:x", (0, 3)])
def test_bad_schedules_fail_before_training(schedule: str | tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="schedul"):
        VInfoConfig(schedule=schedule)


def test_vmap_and_loop_batching_train_the_same_heads(device: str) -> None:
    g = torch.Generator().manual_seed(4)
    labels = torch.arange(3).repeat(30)
    x = (torch.randn(90, 5, generator=g) + labels[:, None]).to(device)
    targets = torch.cat([labels[:, None], relabel(labels, 3)], 1).to(device)
    make = mlp_decoder(5, 3)
    scores = {}
    for batching in ("vmap", "loop", "auto"):
        stack = StackedDecoders([make(s) for s in range(targets.shape[1])], device)
        config = DecoderConfig(
            protocol="thesis", lr=5e-3, batch_size=30, max_epochs=4, patience=100, batching=batching
        )
        train_heads(stack, x, targets, config, torch.Generator().manual_seed(0), device)
        scores[batching] = score_heads(stack, x, targets, 30, seed=0, device=device)
        assert stack.mode == {"auto": batching_mode("auto", device)}.get(batching, batching)
    torch.testing.assert_close(scores["vmap"], scores["loop"], rtol=1e-5, atol=1e-6)
    assert torch.equal(scores["auto"], scores[batching_mode("auto", device)])  # bit for bit
    assert batching_mode("auto", "cuda") == "vmap" and batching_mode("loop", "cuda") == "loop"
    with pytest.raises(ValueError, match="batching must be auto, vmap or loop"):
        DecoderConfig(protocol="thesis", batching="threads")


def test_decoders_with_running_statistics_keep_them_per_head() -> None:
    """torchvision-style batch norm: each head updates its own running statistics while it
    trains, and is scored in evaluation mode with them, exactly as the module would be."""

    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))

    g = torch.Generator().manual_seed(2)
    labels = torch.arange(3).repeat(40)
    x = torch.randn(120, 5, generator=g) + labels[:, None]
    targets = torch.stack([labels, labels.flip(0)], 1)
    stack = StackedDecoders([make(s) for s in (0, 1)])
    config = DecoderConfig(
        protocol="thesis", lr=1e-2, batch_size=30, max_epochs=3, patience=100, batching="vmap"
    )
    fits = train_heads(stack, x, targets, config, torch.Generator().manual_seed(0))
    assert stack.mode == "loop" and stack.running_stats  # in-place statistics cannot vmap
    mean = stack.buffers["1.running_mean"]
    assert not torch.equal(mean[0], mean[1]) and mean.abs().sum() > 0  # updated, per head
    assert stack.buffers["1.num_batches_tracked"].tolist() == [f.epochs * 4 for f in fits]
    ce = score_heads(stack, x, targets, 30, seed=0)
    for k in range(2):
        module = make(0).eval()
        module.load_state_dict({**{n: p[k] for n, p in stack.params.items()},
                                **{n: b[k] for n, b in stack.buffers.items()}})  # fmt: skip
        with torch.no_grad():
            expected = F.cross_entropy(module(x).double(), targets[:, k])
        assert float(ce[k]) == pytest.approx(float(expected), rel=1e-6)


def curve_case(
    budgets: tuple[int, ...] | None, max_epochs: int = 6, **overrides: float
) -> VInfoResult:
    """Layer 1 of a small convolutional f₋ on the demo subset (not affine: no optimum)."""
    from raycompress.data import load_dataset
    from raycompress.models import build_model, make_spec

    data = load_dataset("fashion-mnist-demo", train_size=300, test_size=300)
    model = build_model(make_spec("mnistnet", data.input_shape, 10, widths=(4, 8, 8)), seed=0)
    decoder = DecoderConfig(protocol="thesis",
        **{"batch_size": 100, "max_epochs": max_epochs, "patience": 100, "budgets": budgets,
           **overrides}
    )  # fmt: skip
    return measure_vinfo(
        model.encoder(1), lambda s: model.fresh_decoder(1, s), data.test, 10,
        VInfoConfig(decoder, held_out=True), seed=3,
    )  # fmt: skip


def test_budget_curves_leave_the_trained_values_unchanged_and_match_shorter_trainings() -> None:
    plain = curve_case((6,))  # the cap alone: no scoring before the end
    curved = curve_case((2, 4, 6))
    assert set(plain.terms) == set(curved.terms) == set(Quantity)
    for q, term in curved.terms.items():
        # the values and the heads do not depend on the budgets scored along the way
        assert (term.value, term.raw, term.heads) == (plain.terms[q].value, plain.terms[q].raw,
                                                      plain.terms[q].heads), q  # fmt: skip
        assert term.curve[6] == term.raw  # the cap is the reported value
        assert term.last_gain == term.curve[6] - term.curve[4]
        for budget in (2, 4):  # a point = a training that stopped at that budget, bit for bit
            assert term.curve[budget] == curve_case((budget,), budget).terms[q].raw
        assert list(plain.terms[q].curve) == [6] and plain.terms[q].last_gain is None


def test_a_head_that_stopped_early_keeps_its_value_at_later_budgets() -> None:
    term = curve_case((1, 2, 6), loss_threshold=2.2).terms[SUFF]  # below 2.2 at once
    fit = term.heads[0].fit
    assert fit.epochs < 6 and fit.stop is Stop.LOSS_THRESHOLD
    later = [b for b in (1, 2, 6) if b > fit.epochs]
    assert later and all(term.curve[b] == term.raw for b in later)


def test_default_budgets_and_bad_budgets() -> None:
    assert DecoderConfig(protocol="thesis").curve() == (5, 10, 20, 50)
    assert DecoderConfig(protocol="thesis", max_epochs=12).curve() == (5, 10, 12)
    assert DecoderConfig(protocol="thesis", max_epochs=3).curve() == (3,)
    assert DecoderConfig(protocol="thesis", budgets=(7,)).curve() == (7, 50)
    bad = {
        (10, 5): "decoder budgets must be increasing positive integers, e.g. [5, 10, 20, 50], "
        "got [10, 5]",
        (0, 5): "decoder budgets must be increasing positive integers",
        (5, 5): "decoder budgets must be increasing positive integers",
        (): "decoder budgets must be increasing positive integers",
        (5, 80): "decoder budget 80 is beyond the decoder epoch cap 50: raise decoder_epochs "
        "or drop the budget",
    }
    for budgets, message in bad.items():
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            DecoderConfig(protocol="thesis", budgets=budgets)


def test_progress_reports_every_interval_and_stays_quiet_in_short_runs() -> None:
    g = torch.Generator().manual_seed(4)
    labels = torch.arange(3).repeat(30)
    x = torch.randn(90, 5, generator=g) + labels[:, None]
    targets = torch.cat([labels[:, None], relabel(labels, 3)], 1)
    config = DecoderConfig(protocol="thesis", lr=5e-3, batch_size=30, max_epochs=4, patience=100)
    # the clock is read at the start, after each batch but an epoch's last, and after each
    # epoch (3 batches: 3 reads an epoch); 10 s pass between two reads
    ticks = iter(range(0, 1000, 10))
    lines: list[str] = []
    progress = Progress("𝒱-information l=1 train", every=30, clock=lambda: next(ticks),
                        write=lambda line, flush: lines.append(line))  # fmt: skip
    stack = StackedDecoders([mlp_decoder(5, 3)(s) for s in range(targets.shape[1])])
    train_heads(stack, x, targets, config, torch.Generator().manual_seed(0), progress=progress)
    heads = "heads training 0, 1, 2, 3, 4 of 0..4"
    assert lines == [  # reads at 10, 20, 30 s (epoch 1 done), 40, 50, 60 (epoch 2 done), …
        f"𝒱-information l=1 train: decoder epoch 1/4, {heads}, 30 s",
        f"𝒱-information l=1 train: decoder epoch 2/4, {heads}, 60 s",
        f"𝒱-information l=1 train: decoder epoch 3/4, {heads}, 90 s",
        "𝒱-information l=1 train: decoder epoch 4/4, heads training none of 0..4, 120 s",
    ]
    # an epoch longer than the interval reports from inside it, with the batch reached
    ticks = iter(range(0, 1000, 20))
    lines.clear()
    progress = Progress("𝒱-information l=1 train", every=30, clock=lambda: next(ticks),
                        write=lambda line, flush: lines.append(line))  # fmt: skip
    stack = StackedDecoders([mlp_decoder(5, 3)(s) for s in range(targets.shape[1])])
    train_heads(stack, x, targets, config, torch.Generator().manual_seed(0), progress=progress)
    assert lines[:3] == [  # reads at 20 (batch 1), 40 (batch 2), 60 (epoch 1 done), 80, …
        f"𝒱-information l=1 train: decoder epoch 1/4, batch 2/3, {heads}, 40 s",
        f"𝒱-information l=1 train: decoder epoch 2/4, batch 1/3, {heads}, 80 s",
        f"𝒱-information l=1 train: decoder epoch 2/4, {heads}, 120 s",
    ]
    quiet: list[str] = []
    progress = Progress("quiet", write=lambda line, flush: quiet.append(line))
    stack = StackedDecoders([mlp_decoder(5, 3)(s) for s in range(targets.shape[1])])
    train_heads(stack, x, targets, config, torch.Generator().manual_seed(0), progress=progress)
    assert quiet == []  # a measurement of under 20 s prints nothing
