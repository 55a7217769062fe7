"""The converged 𝒱-information protocol: certification, its bad settings, warm starts, the
affine optimum without trained decoders, and the early-stopped held-out sufficiency."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch
from torch import nn

from raycompress.metrics.decoders import (
    DecoderConfig,
    HeadStopping,
    InSample,
    Progress,
    StackedDecoders,
    train_heads,
)
from raycompress.metrics.vinfo import (
    IN_SAMPLE_STATE,
    VInfoConfig,
    measure_vinfo,
)
from raycompress.sampling import Split, held_out_parts
from raycompress.schema import Quantity, VInfoResult
from raycompress.stopping import Stop
from raycompress.trial import Trial

CONVERGED = DecoderConfig(
    lr=1e-2, batch_size=50, max_epochs=8, certify_from=1, protocol="converged", loss_threshold=0
)


def linear_stack(heads: int, dim: int = 4, classes: int = 3) -> StackedDecoders:
    decoders = []
    for seed in range(heads):
        torch.manual_seed(seed)
        decoders.append(nn.Linear(dim, classes))
    return StackedDecoders(decoders)


def scripted(values: dict[int, list[float]]):
    """An at_budget that returns head k's next scripted value at each budget."""
    calls: list[tuple[int, list[int]]] = []

    def at_budget(epoch: int, heads: torch.Tensor) -> torch.Tensor:
        calls.append((epoch, heads.tolist()))
        return torch.tensor([values[k].pop(0) for k in heads.tolist()], dtype=torch.float64)

    return at_budget, calls


def data(n: int = 100, dim: int = 4, heads: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, dim, generator=g), torch.randint(0, 3, (n, heads), generator=g)


def test_a_rising_head_is_not_certified_and_a_flat_one_is() -> None:
    """Budgets at 1, 2, 4, 8: head 0 keeps gaining 0.5 bit a doubling and ends at the cap
    uncertified with its last gain over a quadrupling (2 → 8: 1 bit); head 1 gains 0.006 bit
    from 1 to 4 epochs and is certified there; the budgets score only the heads still
    training."""
    x, t = data()
    at_budget, calls = scripted({0: [1.0, 1.5, 2.0, 2.5], 1: [1.0, 1.004, 1.006]})
    fits = train_heads(
        linear_stack(2), x, t, CONVERGED, torch.Generator().manual_seed(0), at_budget=at_budget
    )
    assert calls == [(1, [0, 1]), (2, [0, 1]), (4, [0, 1]), (8, [0])]
    rising, flat = fits
    assert (rising.epochs, rising.stop, rising.certified) == (8, Stop.MAX_EPOCHS, False)
    assert rising.last_gain == pytest.approx(1.0)
    assert (flat.epochs, flat.stop, flat.certified) == (4, Stop.CERTIFIED, True)
    assert flat.last_gain == pytest.approx(0.006)
    assert flat.converged and not rising.converged


def test_a_plateau_that_one_doubling_does_not_lift_is_not_certified() -> None:
    """Budgets at 1, 2, …, 32: the head climbs to 2.0 bits at 2 epochs, gains only 0.005 bit
    from 2 to 4 (one flat doubling: what the one-doubling rule certified), then climbs to 2.5 at
    8; it is certified only once two doublings in a row are flat (8 → 32: 0.009 bit)."""
    x, t = data(heads=1)
    config = dataclasses.replace(CONVERGED, max_epochs=32)
    at_budget, calls = scripted({0: [1.0, 2.0, 2.005, 2.5, 2.505, 2.509]})
    (fit,) = train_heads(
        linear_stack(1), x, t, config, torch.Generator().manual_seed(0), at_budget=at_budget
    )
    assert [epoch for epoch, _ in calls] == [1, 2, 4, 8, 16, 32]
    assert (fit.epochs, fit.stop, fit.certified) == (32, Stop.CERTIFIED, True)
    assert fit.last_gain == pytest.approx(0.009)


def judged(stopping: HeadStopping, bits: list[float], losses: list[float]) -> list[int]:
    """Head 0 through epochs 1..4 with these epoch losses, scored at 1, 2 and 4; the epochs
    at which it stops."""
    stops = []
    for epoch, loss in enumerate(losses, 1):
        if epoch in (1, 2, 4):
            stopping.scored(epoch, torch.tensor([0]), torch.tensor([bits[epoch.bit_length() - 1]]))
        if stopping.update(epoch, torch.tensor([0]), torch.tensor([loss])):
            stops.append(epoch)
    return stops


FLAT = [0.3, 0.3, 0.3, 0.3]  # epoch losses that no longer fall


@pytest.mark.parametrize(
    ("bits", "losses", "start", "certified"),
    [
        ([3.0, 3.2, 2.5], FLAT, None, False),  # a spike at the certifying budget: fell 0.5 bit
        ([3.0, 3.2, 2.995], FLAT, None, True),  # fell within the tolerance
        ([3.0, 3.1, 2.9], FLAT, 3.3, True),  # fell, but every score is below its start
        ([3.0, 3.1, 2.9], FLAT, 2.95, False),  # fell from a score above its start
        ([3.0, 3.0, 3.005], [0.5, 0.5, 0.4, 0.3], None, False),  # its loss still falls
        ([3.0, 3.0, 3.005], [0.3, 0.3, 0.299, 0.296], None, True),  # … by ≤ 0.0069 nats
    ],
)  # fmt: skip
def test_in_sample_a_quadrupling_certifies_only_a_head_that_is_neither_falling_nor_learning(
    bits: list[float], losses: list[float], start: float | None, certified: bool
) -> None:
    """The audit's failures: heads certified on a loss spike (their score fell over the
    quadrupling) and heads whose score was flat at two budgets while their loss still fell. A
    decoder scored on another set (held-out) may fall: that is over-fitting, its best kept."""
    in_sample = InSample(torch.tensor([3.32]), None if start is None else torch.tensor([start]))
    config = dataclasses.replace(CONVERGED, max_epochs=100)
    assert judged(HeadStopping(1, config, in_sample), bits, losses) == ([4] if certified else [])
    held_out = judged(HeadStopping(1, config), bits, losses)
    assert held_out == ([4] if bits[2] - bits[0] <= config.tolerance else [])


def test_in_sample_the_loss_threshold_stops_a_head_only_within_the_tolerance_of_its_ceiling() -> (
    None
):
    """Both heads meet the stopping loss at epoch 1. Head 0 scores 3.315 bits of its 3.32
    (within 0.01): it stops, certified. Head 1 scores 3.30: it trains on with its threshold
    halved, and stops at epoch 3, where its loss meets that and it scores 3.312."""
    config = DecoderConfig(lr=1e-2, batch_size=50, max_epochs=8, certify_from=2,
                           protocol="converged")  # fmt: skip
    stopping = HeadStopping(2, config, InSample(torch.tensor([3.32, 3.32])))
    scores = iter([[3.315, 3.30], [3.312]])
    asked: list[tuple[int, list[int]]] = []

    def score(epoch: int, heads: torch.Tensor) -> torch.Tensor:
        asked.append((epoch, heads.tolist()))
        return torch.tensor(next(scores), dtype=torch.float64)

    half = config.stop_loss / 2
    for epoch, losses in enumerate([[0.005, 0.005], [None, half * 1.5], [None, half * 0.9]], 1):
        heads = stopping.training()
        loss = torch.tensor([losses[k] for k in heads.tolist()])
        stopping.confirmed(epoch, stopping.update(epoch, heads, loss), score)
    assert asked == [(1, [0, 1]), (3, [1])]
    first, second = stopping.fits()
    assert (first.epochs, first.stop, first.certified) == (1, Stop.LOSS_THRESHOLD, True)
    assert (second.epochs, second.stop, second.certified) == (3, Stop.LOSS_THRESHOLD, True)


def test_in_sample_a_start_within_the_tolerance_of_its_ceiling_is_certified_untrained() -> None:
    """Head 0 starts 0.004 bit below its ceiling: certified at epoch 0, its loss there that
    shortfall in nats, its weights untouched by the SGD that head 1 (0.5 bit short) goes
    through; head 1 alone is scored at the budgets."""
    x, t = data()
    stack = linear_stack(2)
    before = stack.head_state(0)
    at_budget, calls = scripted({1: [2.0, 2.5, 3.0, 3.2]})
    bits = torch.tensor([[3.32, 3.32], [3.316, 2.82]], dtype=torch.float64)
    in_sample = InSample(*bits)
    fits = train_heads(stack, x, t, CONVERGED, torch.Generator().manual_seed(0),
                       at_budget=at_budget, in_sample=in_sample)  # fmt: skip
    assert [heads for _, heads in calls] == [[1]] * 4
    start, trained = fits
    assert (start.epochs, start.stop, start.certified) == (0, Stop.CERTIFIED, True)
    assert start.train_loss == pytest.approx(0.004 * math.log(2))
    assert trained.epochs == 8
    after = stack.head_state(0)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not torch.equal(
        stack.head_state(1)["params.weight"], linear_stack(2).head_state(1)["params.weight"]
    )


def test_in_sample_every_start_at_its_ceiling_trains_no_epoch() -> None:
    x, t = data()
    at_budget, calls = scripted({})
    in_sample = InSample(torch.tensor([3.32, 1.0]), torch.tensor([3.32, 0.995]))
    fits = train_heads(linear_stack(2), x, t, CONVERGED, torch.Generator().manual_seed(0),
                       at_budget=at_budget, in_sample=in_sample)  # fmt: skip
    assert calls == [] and [f.epochs for f in fits] == [0, 0]
    assert all(f.certified for f in fits)


def test_only_a_quadrupling_certifies_and_a_cap_that_ends_none_is_scored_too() -> None:
    """Cap 12 with budgets at 1, 2, 4, 8 and 12: the head is flat from 4 to 12, but 3 → 12 is
    not a quadrupling of budgets, so it ends at the cap uncertified, its last gain that of
    2 → 8."""
    x, t = data(heads=1)
    config = dataclasses.replace(CONVERGED, max_epochs=12)
    assert config.curve() == (1, 2, 4, 8, 12)
    at_budget, calls = scripted({0: [1.0, 1.5, 2.0, 2.0, 2.0]})
    (fit,) = train_heads(
        linear_stack(1), x, t, config, torch.Generator().manual_seed(0), at_budget=at_budget
    )
    assert [epoch for epoch, _ in calls] == [1, 2, 4, 8, 12]
    assert (fit.epochs, fit.stop, fit.certified) == (12, Stop.MAX_EPOCHS, False)
    assert fit.last_gain == pytest.approx(0.5)


def test_a_warm_start_certifies_from_its_own_first_budget() -> None:
    config = DecoderConfig(protocol="converged", max_epochs=400)
    assert config.curve() == (12, 24, 48, 96, 192, 384, 400)
    assert config.warm().curve() == (2, 4, 8, 16, 32, 64, 128, 256, 400)


def test_the_converged_stopping_loss_is_the_tolerance_in_nats_at_most() -> None:
    assert DecoderConfig(protocol="converged").stop_loss == pytest.approx(0.01 * math.log(2))
    assert DecoderConfig(protocol="converged", loss_threshold=0.001).stop_loss == 0.001
    assert DecoderConfig(protocol="thesis").stop_loss == 0.02  # the thesis' own


def test_a_head_that_meets_the_loss_threshold_is_certified() -> None:
    x, t = data()
    config = DecoderConfig(
        lr=1e-2, batch_size=50, max_epochs=8, certify_from=1, protocol="converged",
        loss_threshold=100.0, tolerance=200.0,  # stop_loss: min(100, 200 · ln 2) nats
    )  # fmt: skip
    at_budget, _ = scripted({0: [1.0], 1: [1.0]})
    fits = train_heads(
        linear_stack(2), x, t, config, torch.Generator().manual_seed(0), at_budget=at_budget
    )
    assert all(f.stop is Stop.LOSS_THRESHOLD and f.certified and f.epochs == 1 for f in fits)
    assert all(f.last_gain is None for f in fits)  # one budget only: no gain measured


def test_the_thesis_protocol_judges_nothing() -> None:
    x, t = data()
    fits = train_heads(
        linear_stack(2), x, t, DecoderConfig(protocol="thesis", batch_size=50, max_epochs=3),
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert all(f.certified is None and f.last_gain is None for f in fits)


def test_progress_lines_say_which_heads_are_certified() -> None:
    x, t = data()
    ticks = iter(range(0, 10_000, 100))
    lines: list[str] = []
    progress = Progress("l=1 train", every=30, clock=lambda: next(ticks),
                        write=lambda line, flush: lines.append(line))  # fmt: skip
    at_budget, _ = scripted({0: [1.0, 1.5, 2.0, 2.5], 1: [1.0, 1.0, 1.0]})
    generator = torch.Generator().manual_seed(0)
    train_heads(linear_stack(2), x, t, CONVERGED, generator, at_budget=at_budget, progress=progress)
    assert "heads training 0, 1 of 0..1, certified none" in lines[0]  # after epoch 1
    assert "heads training 0 of 0..1, certified 1," in lines[-2]
    assert "heads training none of 0..1, certified 1," in lines[-1]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"vinfo_protocol": "best"}, "unknown 𝒱-information protocol 'best': use thesis or "
         "converged"),
        ({"vinfo_protocol": "converged", "decoder_tolerance": 0}, "setting "
         "'decoder_tolerance' takes a positive number (bits), got 0"),
        ({"vinfo_protocol": "converged", "decoder_epochs": 40}, "the decoder epoch cap 40 is "
         "below the first quadrupling (48 epochs: two doublings), where a decoder can first be "
         "certified: raise decoder_epochs or lower decoder_certify_from"),
        ({"vinfo_protocol": "converged", "decoder_epochs": 50, "decoder_certify_from": 5,
          "decoder_warm_certify_from": 15}, "cap 50 is below the first quadrupling (60 epochs"),
        ({"vinfo_protocol": "converged", "decoder_budgets": [5, 50]}, "decoder budgets belong "
         "to the thesis protocol"),
        ({"vinfo_protocol": "thesis", "decoder_warm_start": True},
         "warm starts belong to the converged protocol"),
        ({"vinfo_protocol": "converged", "decoder_warm_optimizer": True}, "decoder_warm_optimizer "
         "continues a warm start's optimiser: set decoder_warm_start=true"),
        ({"vinfo_protocol": "converged", "decoder_certify_from": 0}, "setting "
         "'decoder_certify_from' takes a positive integer, got 0"),
    ],
)  # fmt: skip
def test_bad_converged_settings_are_one_line_before_training(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        Trial.from_config(settings)
    assert "\n" not in str(caught.value)


def test_a_converged_trial_fixes_its_held_out_halves_for_the_run() -> None:
    trial = Trial.from_config({"vinfo_protocol": "converged", "seed": 3, "held_out": True})
    again = Trial.from_config({"vinfo_protocol": "converged", "seed": 3, "held_out": True})
    assert trial.vinfo.decoder.converged and trial.vinfo.halves_seed is not None
    assert trial.vinfo.halves_seed == again.vinfo.halves_seed
    thesis = Trial.from_config({"seed": 3, "vinfo_protocol": "thesis"})
    assert thesis.vinfo.halves_seed is None  # thesis: per measurement


def mnistnet_case(config: VInfoConfig, seed: int = 3, warm=None, layer: int = 1) -> VInfoResult:
    """Layer `layer` of a small f₋ on 300 demo test images."""
    from raycompress.data import load_dataset
    from raycompress.models import build_model, make_spec

    data = load_dataset("fashion-mnist-demo", train_size=300, test_size=300)
    model = build_model(make_spec("mnistnet", data.input_shape, 10, widths=(4, 8, 8)), seed=0)
    return measure_vinfo(
        model.encoder(layer), lambda s: model.fresh_decoder(layer, s), data.test, 10, config,
        seed=seed, warm=warm,
    )  # fmt: skip


SMALL = DecoderConfig(batch_size=100, max_epochs=8, certify_from=2, protocol="converged")


def test_every_converged_value_says_whether_it_is_certified_and_how_it_was_trained() -> None:
    out = mnistnet_case(VInfoConfig(SMALL, held_out=True))
    for q, term in out.terms.items():
        assert term.certified is not None, q
        assert all(h.fit.certified == (h.fit.stop in (Stop.CERTIFIED, Stop.LOSS_THRESHOLD))
                   for h in term.heads)  # fmt: skip
        assert "fresh, AdamW lr 0.002 constant" in term.protocol
        assert sorted(term.curve) == [b for b in (2, 4, 8) if b <= max(term.curve)]
    suff, mini = out.terms[Quantity.SUFFICIENCY], out.terms[Quantity.MINIMALITY]
    assert "converged: each decoder trained until certified" in suff.protocol
    # each decoder is kept at its best budget: no value below a point of its curve
    assert suff.raw == max(suff.curve.values())
    assert mini.raw >= max(mini.curve.values()) - 1e-12
    rows = out.rows((1, "test", 1, "network"))
    certified = [r for r in rows if r[4] == Quantity.MINIMALITY.certified]
    assert len(certified) == 1 and certified[0][6] == float(
        out.terms[Quantity.MINIMALITY].certified
    )
    assert VInfoResult.from_json(out.to_json()).terms == out.terms  # certified, gains kept
    assert out.decoder_state is None  # no warm starts asked for: nothing carried


def test_a_warm_start_continues_the_previous_decoders() -> None:
    """The second measurement starts from the first one's decoders: its heads' values start
    where the first ones ended (a budget of 2 epochs beats 2 fresh epochs), and the same state
    gives the same values bit for bit."""
    config = VInfoConfig(SMALL, warm_start=True)
    first = mnistnet_case(config)
    assert set(first.decoder_state) == {IN_SAMPLE_STATE}
    warm = mnistnet_case(config, seed=4, warm=first.decoder_state)
    again = mnistnet_case(config, seed=4, warm=first.decoder_state)
    fresh = mnistnet_case(config, seed=4)
    suff = Quantity.MINIMALITY
    assert warm.terms == again.terms  # bit-exact from the same state
    assert warm.terms[suff].curve[2] > fresh.terms[suff].curve[2]
    assert "warm (continued from the previous measurement's decoders)" in warm.terms[suff].protocol
    with pytest.raises(ValueError, match="a warm start's decoder state is of other decoders"):
        mnistnet_case(config, warm=first.decoder_state, layer=2)


def test_a_restored_optimizer_continues_adamw_bit_exactly() -> None:
    """Two epochs, then two more in the same optimiser, equal two more in a new stack and
    optimiser restored from the state after the first two (weights and AdamW moments); a
    fresh optimiser on the restored weights goes elsewhere."""
    from raycompress.metrics.decoders import OPTIMIZER_STATE, make_optimizer

    x, t = data()
    config = DecoderConfig(
        protocol="thesis", lr=1e-2, batch_size=50, max_epochs=2, loss_threshold=0
    )
    straight, generator = linear_stack(2), torch.Generator().manual_seed(1)
    optimizer = make_optimizer(straight, config)
    train_heads(straight, x, t, config, generator, optimizer=optimizer)
    state = straight.state(optimizer)
    assert {k.split(".")[1] for k in state if k.startswith(OPTIMIZER_STATE)} == {
        "step", "exp_avg", "exp_avg_sq"
    }  # fmt: skip
    order = generator.get_state()
    train_heads(straight, x, t, config, generator, optimizer=optimizer)

    def continued(moments: bool) -> dict[str, torch.Tensor]:
        stack = linear_stack(2, classes=3)
        again = make_optimizer(stack, config)
        assert stack.load(state, again if moments else None) is moments
        generator = torch.Generator()
        generator.set_state(order)
        train_heads(stack, x, t, config, generator, optimizer=again)
        return stack.params

    restored, fresh = continued(moments=True), continued(moments=False)
    assert all(torch.equal(p, restored[n]) for n, p in straight.params.items())
    assert not all(torch.equal(p, fresh[n]) for n, p in straight.params.items())
    assert not straight.load(straight.state(), optimizer)  # none in it


def test_a_warm_start_can_continue_the_optimizer_too() -> None:
    """With warm_optimizer the decoder state carries AdamW's moments, the warm measurement
    says so, the same state gives the same values bit for bit, and they are not the values
    of a warm start without the moments."""
    config = VInfoConfig(SMALL, warm_start=True, warm_optimizer=True)
    first = mnistnet_case(config)
    assert any(k.startswith("adamw.") for k in first.decoder_state[IN_SAMPLE_STATE])
    warm = mnistnet_case(config, seed=4, warm=first.decoder_state)
    assert warm.terms == mnistnet_case(config, seed=4, warm=first.decoder_state).terms
    without = mnistnet_case(
        VInfoConfig(SMALL, warm_start=True), seed=4, warm=first.decoder_state
    )  # the same weights, a fresh optimiser
    mini = Quantity.MINIMALITY
    assert warm.terms[mini].raw != without.terms[mini].raw
    assert "previous measurement's decoders and their AdamW state" in warm.terms[mini].protocol
    assert "AdamW state" not in without.terms[mini].protocol


def test_the_affine_layer_needs_no_trained_decoders_under_converged() -> None:
    out = mnistnet_case(VInfoConfig(SMALL), layer=3)  # the head alone: affine
    thesis = mnistnet_case(
        VInfoConfig(DecoderConfig(protocol="thesis", batch_size=100, max_epochs=4)), layer=3
    )
    for q in (Quantity.SUFFICIENCY, Quantity.MINIMALITY):
        term = out.terms[q]
        assert term.certified and all(h.fit.epochs == 0 for h in term.heads)
        assert all(h.fit.last_gain is None or h.fit.last_gain <= SMALL.tolerance
                   for h in term.heads)  # fmt: skip
        assert "no SGD decoders" in term.protocol and term.curve == {}
        # the optimum the thesis protocol reports (it also trains decoders beside it), or
        # within the doubling rule's tolerance of it where the doubling rule stopped first
        assert abs(term.raw - thesis.terms[q].raw) <= SMALL.tolerance


def test_the_affine_optima_continue_from_the_previous_measurement() -> None:
    config = VInfoConfig(SMALL, warm_start=True)
    first = mnistnet_case(config, layer=3)
    warm = mnistnet_case(config, seed=4, warm=first.decoder_state, layer=3)
    assert warm.terms == mnistnet_case(config, seed=4, warm=first.decoder_state, layer=3).terms
    suff = warm.terms[Quantity.SUFFICIENCY]
    assert suff.certified and "started from the previous measurement's optima" in suff.protocol
    assert suff.raw >= first.terms[Quantity.SUFFICIENCY].raw - SMALL.tolerance  # same encoder
    with pytest.raises(ValueError, match="a warm start's decoder state is of other decoders"):
        mnistnet_case(config, warm=first.decoder_state, layer=2)


def test_held_out_parts_are_disjoint_stratified_and_fixed_by_their_seed() -> None:
    y = torch.arange(4).repeat(50)
    fit, validation, scored = held_out_parts(y, 7, validation=True)
    assert fit.numel() + validation.numel() + scored.numel() == y.numel()
    assert len(set(fit.tolist()) | set(validation.tolist()) | set(scored.tolist())) == y.numel()
    assert validation.numel() == 20 and scored.numel() == 100
    assert torch.bincount(y[validation]).tolist() == [5] * 4  # stratified
    again = held_out_parts(y, 7, validation=True)
    assert all(torch.equal(a, b) for a, b in zip(again, (fit, validation, scored), strict=True))
    half, none, rest = held_out_parts(y, 7, validation=False)  # the thesis' halves
    assert none.numel() == 0 and torch.equal(rest, scored)
    assert sorted(half.tolist()) == sorted(fit.tolist() + validation.tolist())


def test_the_held_out_decoder_never_sees_the_half_it_is_scored_on() -> None:
    """Replacing the scored half's features with noise changes the score, not the training."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(100)
    x = torch.randn(400, 6, generator=g) + 2 * nn.functional.one_hot(labels, 6)
    decoder = DecoderConfig(lr=1e-2, batch_size=50, max_epochs=16, certify_from=2,
                            protocol="converged")  # fmt: skip
    config = VInfoConfig(decoder, held_out=True, halves_seed=5)

    def held_out(features: torch.Tensor):
        def make(seed: int) -> nn.Module:
            torch.manual_seed(seed)
            return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))

        out = measure_vinfo(nn.Identity(), make, Split(features, labels), 4, config, seed=1)
        return out.terms[Quantity.HELD_OUT]

    _, _, scored = held_out_parts(labels, 5, validation=True)
    noisy = x.clone()
    noisy[scored] = torch.randn(scored.numel(), 6, generator=g)
    clean, spoiled = held_out(x), held_out(noisy)
    assert clean.heads[0].fit == spoiled.heads[0].fit  # the same training, epoch for epoch
    assert clean.curve == spoiled.curve  # early stopping saw only the validation part
    assert clean.raw > 0.5 and spoiled.raw < clean.raw - 0.5
    assert math.isfinite(clean.heads[0].fit.last_gain or math.nan)
    assert "early-stopped on the other 20%" in clean.protocol


def test_the_cosine_schedule_warms_up_then_decays_to_zero_at_the_cap() -> None:
    config = DecoderConfig(
        protocol="thesis", lr=1e-2, max_epochs=40, lr_schedule="cosine"
    )  # warm-up: 2 epochs
    assert [config.lr_at(e) for e in (1, 2)] == [5e-3, 1e-2]
    assert config.lr_at(21) == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 19 / 39)))
    assert config.lr_at(40) == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 38 / 39)))
    assert all(config.lr_at(e) > config.lr_at(e + 1) for e in range(2, 40))
    assert DecoderConfig(protocol="thesis", lr=3e-3).lr_at(17) == 3e-3  # constant: the thesis'
    with pytest.raises(ValueError, match="lr_schedule must be constant or cosine, got 'step'"):
        DecoderConfig(protocol="thesis", lr_schedule="step")
    with pytest.raises(ValueError, match="a cosine schedule needs a fixed horizon"):
        DecoderConfig(lr_schedule="cosine", protocol="converged")


def test_a_head_that_stops_between_budgets_keeps_its_final_weights_when_they_score_best() -> None:
    """Budgets at 2, 4, 8; the threshold stops the head at epoch 6, between two of them: the
    converged value is that of its final weights (what the thesis' protocol reports for the
    same training), not the lower one of its last budget."""
    from raycompress.metrics.vinfo import fit_and_score

    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat(30)
    x = nn.functional.one_hot(y, 3).float() + 0.3 * torch.randn(90, 3, generator=g)

    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Linear(3, 3)

    shared = {"lr": 0.05, "batch_size": 30, "max_epochs": 8, "loss_threshold": 0.5}  # ≤ 1 bit
    converged = DecoderConfig(certify_from=2, protocol="converged", tolerance=1.0, **shared)
    thesis = DecoderConfig(protocol="thesis", budgets=(2, 4, 8), patience=100, **shared)
    split = (x, y[:, None])
    ours = fit_and_score(make, split, split, 3, VInfoConfig(converged), 0, "cpu", select=split)
    recipe = fit_and_score(make, split, split, 3, VInfoConfig(thesis), 0, "cpu")
    assert ours.fits[0].epochs == recipe.fits[0].epochs == 6  # not a budget
    assert ours.fits[0].stop is Stop.LOSS_THRESHOLD and ours.fits[0].certified
    assert ours.bits == recipe.bits and ours.bits[0] > ours.curves[4][0]


def test_the_training_batch_is_only_the_optimisers(monkeypatch: pytest.MonkeyPatch) -> None:
    """train_batch_size sets the steps of a decoder epoch (100 samples in batches of 25: 4);
    the scored and encoded batches stay batch_size (recorded: the recipe names the former)."""
    from raycompress.metrics import decoders

    steps: list[int] = []
    original = decoders.Steps.step

    def counted(self, x, y, heads):
        steps.append(x.shape[0])
        return original(self, x, y, heads)

    monkeypatch.setattr(decoders.Steps, "step", counted)
    x, t = data(heads=1)
    config = DecoderConfig(
        protocol="thesis", batch_size=50, train_batch_size=25, max_epochs=2, loss_threshold=0
    )
    train_heads(linear_stack(1), x, t, config, torch.Generator().manual_seed(0))
    assert steps == [25] * 8 and config.train_batch == 25
    assert "batch 25" in config.recipe(warm=False)
    with pytest.raises(ValueError, match="decoder train_batch must be positive"):
        DecoderConfig(protocol="thesis", train_batch_size=0)
