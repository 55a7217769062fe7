"""The decoder families 𝒱: one setting names them, each is measured apart and recorded with its
family, a certified value at its ceiling is marked saturated, and bad input is one line."""

from __future__ import annotations

import pytest
import torch

from raycompress import plan
from raycompress.data import load_dataset
from raycompress.metrics import affine
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.families import LINEAR, MLP, MLP_WIDTH, Family, MLPDecoder, parse_families
from raycompress.metrics.vinfo import VInfoConfig, saturation, saturation_slack
from raycompress.models import build_model, make_spec
from raycompress.schema import Head, HeadFit, Quantity, Term
from raycompress.stopping import Stop
from raycompress.trial import Trial

CONVERGED = {"vinfo_protocol": "converged"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"decoder_family": "probe"}, "unknown decoder family 'probe': use network, linear, mlp"),
        ({"decoder_family": "mlp", "decoder_width": 0}, "setting 'decoder_width' takes null or"),
        ({"decoder_family": "linear", "decoder_width": 32},
         "decoder_width 32 sets the mlp family's hidden units, and decoder_family ['linear']"),
        ({"decoder_family": ["mlp", "mlp"]}, "decoder_family lists a family twice"),
        ({"decoder_family": [], **CONVERGED}, "decoder_family lists no family"),
        ({"decoder_family": "linear", "decoder_warm_start": True, "decoder_warm_optimizer": True,
          **CONVERGED}, "the linear family has none (L-BFGS solves it)"),
        ({"decoder_family": "linear", "vinfo_protocol": "thesis"},
         "use vinfo_protocol=converged with it"),
    ],
)  # fmt: skip
def test_a_bad_family_setting_is_one_line_before_anything_is_built(
    settings: dict, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        Trial.from_config(settings)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_family_is_named_with_its_width_and_defaults_to_the_documented_one() -> None:
    families = parse_families(["network", "mlp", "linear"])
    assert [f.label for f in families] == ["network", f"mlp-{MLP_WIDTH}", "linear"]
    assert parse_families("mlp", 16) == (Family(MLP, 16),)
    trial = Trial.from_config({"decoder_family": ["linear", "mlp"], **CONVERGED})
    assert [f.label for f in trial.vinfo.families] == ["linear", f"mlp-{MLP_WIDTH}"]


def test_each_familys_decoders_are_of_its_kind_and_seeded() -> None:
    model = build_model(make_spec("mnistnet", (1, 28, 28), 10), seed=0)
    linear = Family(LINEAR).decoder(model, 2)(5)
    assert [type(m).__name__ for m in linear.modules()][1:] == ["Flatten", "Linear"]
    assert linear.linear.in_features == 32 * 3 * 3  # h² of f₋, flattened
    mlp = Family(MLP, 12).decoder(model, 1)
    assert mlp(5)[1].out_features == 12 and mlp(5)[1].in_features == 16 * 9 * 9
    assert torch.equal(mlp(5)[1].weight, mlp(5)[1].weight)  # seeded ...
    assert not torch.equal(mlp(5)[1].weight, mlp(6)[1].weight)  # ... by its seed alone
    network = Family().decoder(model, 3)(5)
    assert len(network) == 1  # the network above h³: its head


def certified_term(raw: float, entropy: float, certified: bool | None = True) -> Term:
    fit = HeadFit(40, Stop.CERTIFIED, 0.05, certified, 0.0)
    return Term(Quantity.MINIMALITY, raw, raw, "", (Head("digit0", fit, entropy, raw),), {})


def test_saturation_marks_certified_values_within_the_certificates_slack_of_the_ceiling() -> None:
    slack = saturation_slack(DecoderConfig(protocol="converged"))
    assert slack == pytest.approx(0.01)  # the stopping loss is 0.01 bit's worth of nats
    assert saturation(certified_term(3.315, 3.32), slack).saturated is True
    assert saturation(certified_term(3.30, 3.32), slack).saturated is False
    assert saturation(certified_term(3.32, 3.32, certified=False), slack).saturated is None
    assert saturation(certified_term(3.32, 3.32, certified=None), slack).saturated is None


def test_a_family_that_memorises_is_marked_saturated_and_one_that_cannot_is_not() -> None:
    """200 images: every affine map of the 784 pixels separates any relabelling of them (the
    value at its ceiling: saturated); those of a 16-unit layer cannot (well below it: not)."""
    data = load_dataset("fashion-mnist-demo", train_size=200)
    spec = make_spec("mlp", data.input_shape, 10, widths=(64, 16))
    state = build_model(spec, seed=0).state_dict()
    config = VInfoConfig(DecoderConfig(batch_size=100, protocol="converged"),
                         families=(Family(LINEAR),))  # fmt: skip

    def minimality(layer: int) -> Term:
        m = plan.Measurement(layer, "train", Family(LINEAR), seed=1)
        return plan.measure_layer(spec, state, m, data.train, config).terms[Quantity.MINIMALITY]

    pixels, deep = minimality(0), minimality(2)
    assert pixels.certified and pixels.saturated is True
    assert pixels.entropy - pixels.raw <= saturation_slack(config.decoder)
    assert deep.certified and deep.saturated is False and deep.raw < deep.entropy - 0.1


def test_the_mlp_started_at_an_affine_map_computes_it_exactly_on_the_samples() -> None:
    """The embedding of `MLPDecoder.start_at` against the affine logits in float64, on
    samples whose logits are negative (the lift must keep every unit above zero) and from
    weights fitted on the standardised features (`affine.on_raw` back to the raw ones)."""
    generator = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(200, 2, 3, 5, generator=generator, dtype=torch.float64) - 4
    flat = z.flatten(1)
    standardised = affine.standardised(flat)
    weights = torch.randn(10, 31, generator=generator, dtype=torch.float64)  # (C, D + 1)
    w, b = affine.on_raw(weights, flat)
    expected = standardised @ weights[:, :-1].T + weights[:, -1]
    assert torch.allclose(flat @ w.T + b, expected, atol=1e-10)
    assert (expected < 0).any()
    mlp = MLPDecoder(30, 16, 10).double()
    mlp.start_at(w, b, expected.amin(0))
    with torch.no_grad():
        assert torch.allclose(mlp(z), expected, atol=1e-10)
    assert mlp[3].weight[:, 10:].abs().max() == 0  # the free units start with no say
    with pytest.raises(ValueError, match="width ≥ C"):
        MLPDecoder(30, 8, 10).start_at(w, b, expected.amin(0))


def test_the_mlp_family_reads_at_least_the_linear_optimum_it_contains() -> None:
    """Width 16 ≥ C holds every affine map, so its certified in-sample values are at least
    the linear family's on the same features, the embedded optimum being its start; a width
    below C has no such start and says nothing of one."""
    data = load_dataset("fashion-mnist-demo", train_size=200)
    spec = make_spec("mlp", data.input_shape, 10, widths=(64, 16))
    state = build_model(spec, seed=0).state_dict()
    decoder = DecoderConfig(batch_size=100, protocol="converged", max_epochs=48,
                            certify_from=3)  # fmt: skip

    def measured(family: Family) -> dict[Quantity, Term]:
        m = plan.Measurement(2, "train", family, seed=1)
        config = VInfoConfig(decoder, families=(family,))
        return plan.measure_layer(spec, state, m, data.train, config).terms

    linear, mlp, narrow = (
        measured(Family(LINEAR)),
        measured(Family(MLP, 16)),
        measured(Family(MLP, 4)),
    )
    for q in (Quantity.SUFFICIENCY, Quantity.MINIMALITY):
        assert linear[q].certified
        assert mlp[q].raw >= linear[q].raw - 1e-3, q
        assert "started at the linear family's optimum" in mlp[q].protocol
        assert "linear family's optimum" not in narrow[q].protocol
    assert mlp[Quantity.MINIMALITY].raw > narrow[Quantity.MINIMALITY].raw
