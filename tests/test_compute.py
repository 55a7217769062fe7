"""How training arithmetic runs (`compute`): bf16 autocast with float32 master weights,
the thesis' bf16-true, channels_last, compilation shared across fresh decoders, and one-line
refusals."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounter

from raycompress import compute, run
from raycompress.compute import Compute
from raycompress.data import load_dataset
from raycompress.metrics import decoders
from raycompress.metrics import vinfo as vinfo_module
from raycompress.metrics.collapse import measure_collapse
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.vinfo import VInfoConfig, encode, measure_vinfo
from raycompress.models import LayeredNet, build_model, make_spec
from raycompress.sampling import Split
from raycompress.schema import Quantity
from raycompress.training import Run, TrainConfig, train_epoch
from raycompress.trial import THESIS_RECIPE, Trial

SUFFICIENCY, MINIMALITY = Quantity.SUFFICIENCY, Quantity.MINIMALITY

# Without ray: benchmarks/gpu_check.py runs these tests on a GPU machine that may not have it.
NO_BF16 = "precision 'bf16' cannot run here: this CPU has no native bfloat16 (AVX-512 BF16 or AMX)"


@pytest.fixture(scope="module")
def small():
    return load_dataset("fashion-mnist-demo", train_size=400, test_size=400)


def mnistnet(data, seed: int = 0) -> LayeredNet:
    return build_model(make_spec("mnistnet", data.input_shape, data.num_classes), seed=seed)


class Watch:
    """Records the dtype and memory format of every convolution output while attached."""

    def __init__(self, model: nn.Module) -> None:
        self.seen: list[tuple[torch.dtype, bool]] = []
        self.handles = [
            m.register_forward_hook(self.hook) for m in model.modules() if isinstance(m, nn.Conv2d)
        ]

    def hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.seen.append((output.dtype, output.is_contiguous(memory_format=torch.channels_last)))

    def take(self) -> set[tuple[torch.dtype, bool]]:
        seen, self.seen = set(self.seen), []
        return seen


def test_bf16_autocasts_the_forward_and_keeps_float32_master_weights(small, device) -> None:
    model = compute.prepare(mnistnet(small).to(device), Compute("bf16"))
    watch = Watch(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    before = [p.detach().clone() for p in model.parameters()]
    batch = Split(small.train.x[:100], small.train.y[:100]).to(device)
    train_epoch(model, optimizer, batch, 100, torch.Generator().manual_seed(0), Compute("bf16"))
    assert watch.take() == {(torch.bfloat16, True)}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    state = [s for group in optimizer.state.values() for s in group.values() if s.dim()]
    assert state and all(s.dtype == torch.float32 for s in state)
    # Updates a bfloat16 weight would round away ("bf16-true") are kept by the fp32 master copy.
    w0 = torch.cat([p.flatten() for p in before])
    w1 = torch.cat([p.detach().flatten() for p in model.parameters()])
    kept = (w1 != w0) & (w1.bfloat16() == w0.bfloat16())
    assert kept.float().mean() > 0.5


def test_measurement_passes_run_in_float32_after_bf16_training(small, device) -> None:
    model, data = mnistnet(small).to(device), small.to(device)
    trained = Run(model, data, TrainConfig(batch_size=100, max_epochs=1, compute=Compute("bf16")))
    watch = Watch(model)
    trained.step()
    assert (torch.bfloat16, True) in watch.take()  # the training steps, then ...
    report = measure_collapse(model, data.test, data.num_classes)
    assert watch.take() == {(torch.float32, True)}  # ... the NC pass alone
    assert report.layers[1].nc_trace > 0


def test_bf16_true_trains_bfloat16_weights_and_state_and_measures_them_in_float32(
    small, device
) -> None:
    model, data = mnistnet(small).to(device), small.to(device)
    config = TrainConfig(batch_size=100, max_epochs=1, lr=1e-5, compute=Compute("bf16-true"))
    encoders = []

    def measure_vinfo(encoder, *args) -> dict:  # what the 𝒱-information tasks would get
        encoders.append(encoder)
        return {}

    vinfo = VInfoConfig(DecoderConfig(protocol="thesis"), schedule=[1])
    before = torch.cat([p.detach().flatten().bfloat16() for p in model.parameters()])
    trained = Run(model, data, config, vinfo=vinfo, measure_vinfo=measure_vinfo)
    record = trained.step()
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    state = [s for group in trained.optimizer.state.values() for s in group.values() if s.dim()]
    assert state and all(s.dtype == torch.bfloat16 for s in state)
    # As in the thesis' code, an update below a weight's bfloat16 spacing is lost (autocast's
    # float32 master weights keep most of these: the bf16 test above).
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after == before).float().mean() > 0.5
    # Every measurement is the float32 evaluation of exactly these bfloat16 weights.
    exact = copy.deepcopy(model).float()
    reference = measure_collapse(exact, data.test, data.num_classes, trained.collapse)
    assert record.test.loss == reference.loss and record.test.accuracy == reference.accuracy
    for layer, stats in reference.layers.items():
        assert record.test.layers[layer].nc_trace == stats.nc_trace
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())  # measuring copied
    (encoder,) = encoders
    for ours, theirs in zip(encoder.parameters(), exact.parameters(), strict=True):
        assert ours.dtype == torch.float32 and torch.equal(ours, theirs)
    assert trained.describe_compute().startswith("bf16-true (bf16 weights and optimiser state)")


def test_float32_is_the_model_itself_or_an_exact_float32_copy(small) -> None:
    model = mnistnet(small)
    assert compute.float32(model) is model
    compute.prepare(model, Compute("bf16-true"))
    view = compute.float32(model)
    assert view is not model and next(model.parameters()).dtype == torch.bfloat16
    for ours, theirs in zip(view.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs.float() if theirs.is_floating_point() else theirs)
        assert not ours.is_floating_point() or ours.dtype == torch.float32


def test_channels_last_gives_the_same_values_up_to_rounding(small, device) -> None:
    records, formats, runs = [], [], []
    data = small.to(device)
    for channels_last in (False, True):
        model = mnistnet(small).to(device)
        watch = Watch(model)
        how = Compute(channels_last=channels_last)
        runs.append(Run(model, data, TrainConfig(batch_size=100, compute=how)))
        records.append(runs[-1].step())
        formats.append(watch.take())
    assert formats == [{(torch.float32, False)}, {(torch.float32, True)}]
    # Training amplifies rounding (AdamW's first steps are nearly sign steps) ...
    plain, nhwc = records
    assert nhwc.train_step_loss == pytest.approx(plain.train_step_loss, rel=1e-3)
    # ... while the same weights measure the same up to rounding.
    same = compute.prepare(copy.deepcopy(runs[0].model), Compute(channels_last=True))
    measured = measure_collapse(same, data.test, data.num_classes, runs[0].collapse)
    # float32 convolutions summed in another order: 1.6e-6 apart seen with one thread
    assert measured.loss == pytest.approx(plain.test.loss, rel=1e-5)
    for layer, stats in plain.test.layers.items():
        # tr(Σ_W Σ_B⁺) amplifies float32 rounding by Σ_B's conditioning: 5e-5 seen at one layer
        assert measured.layers[layer].nc_trace == pytest.approx(stats.nc_trace, rel=2e-4)


def fixed_budget(how: Compute, epochs: int = 3) -> VInfoConfig:
    """Every head trains exactly `epochs` epochs: no stopping test that rounding could move."""
    decoder = DecoderConfig(
        protocol="thesis",
        batch_size=100,
        max_epochs=epochs,
        loss_threshold=0.0,
        patience=100,
        compute=how,
    )
    return VInfoConfig(decoder)


def vinfo(data, layer: int, how: Compute, seed: int = 0, device: str = "cpu") -> dict:
    model = mnistnet(data)
    return measure_vinfo(
        model.encoder(layer), lambda s: model.fresh_decoder(layer, s), data.test,
        data.num_classes, fixed_budget(how), seed=seed, device=device,
    )  # fmt: skip


def test_decoders_train_in_bf16_on_float32_channels_last_features_and_score_in_float32(
    small, monkeypatch, device
) -> None:
    model = mnistnet(small)
    features = encode(model.encoder(1), small.test.x, 100, 0, device, 2**30, Compute("bf16"))
    assert features.dtype == torch.float32
    assert features.is_contiguous(memory_format=torch.channels_last)
    watches: list[Watch] = []
    shared = decoders.shared_forward

    def watched(decoder: nn.Module, compile: bool):
        base, forward = shared(decoder, compile)
        watches.append(Watch(base))
        return base, forward

    monkeypatch.setattr(decoders, "shared_forward", watched)
    phases: dict[str, set] = {"step": set(), "score_heads": set()}

    def attributed(phase: str, run_phase):  # what the convolutions saw inside each call
        def wrapped(*args, **kwargs):
            watches[-1].take()
            out = run_phase(*args, **kwargs)
            phases[phase] |= watches[-1].take()
            return out

        return wrapped

    monkeypatch.setattr(decoders.Steps, "step", attributed("step", decoders.Steps.step))
    scoring = attributed("score_heads", decoders.score_heads)  # budgets and the end
    monkeypatch.setattr(decoders, "score_heads", scoring)
    monkeypatch.setattr(vinfo_module, "score_heads", scoring)
    values = vinfo(small, 1, Compute("bf16"), device=device)
    assert phases == {"step": {(torch.bfloat16, True)}, "score_heads": {(torch.float32, True)}}
    assert values.decoders.compute == "bf16 autocast, channels_last"


def test_channels_last_decoders_give_the_same_bits_up_to_rounding(small, device) -> None:
    plain = vinfo(small, 1, Compute(channels_last=False), device=device)
    nhwc = vinfo(small, 1, Compute(channels_last=True), device=device)
    for term in (SUFFICIENCY, MINIMALITY):
        assert nhwc.value(term) == pytest.approx(plain.value(term), abs=1e-3)
    assert nhwc.decoders.compute == "fp32, channels_last"
    assert plain.decoders.compute == "fp32"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> CompileCounter:
    """torch.compile with a backend that counts compilations and runs the captured graph."""
    counter, real = CompileCounter(), torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **_: real(fn, backend=counter))
    monkeypatch.setattr(decoders, "_SHARED", {})
    torch._dynamo.reset()
    yield counter
    torch._dynamo.reset()


def test_fresh_decoders_of_one_architecture_reuse_one_compilation(small, counted, device) -> None:
    eager = vinfo(small, 2, Compute(), device=device)
    first = vinfo(small, 2, Compute(compile=True), device=device)
    compiled = counted.frame_count
    assert compiled >= 1
    again = vinfo(small, 2, Compute(compile=True), seed=1, device=device)  # fresh decoders
    assert counted.frame_count == compiled
    vinfo(small, 1, Compute(compile=True), device=device)  # another architecture: compiles
    assert counted.frame_count > compiled
    assert first.value(SUFFICIENCY) == pytest.approx(eager.value(SUFFICIENCY), abs=1e-4)
    assert again.value(SUFFICIENCY) != first.value(SUFFICIENCY)
    assert first.decoders.compute == "fp32, channels_last, compiled"


def test_a_model_that_fails_to_compile_runs_eagerly_and_says_so(small, monkeypatch) -> None:
    def broken(fn, **_):
        def fail(*args, **kwargs):
            raise RuntimeError("no C++ compiler found\nmore detail")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(decoders, "_SHARED", {})
    values = vinfo(small, 2, Compute(compile=True))
    eager = vinfo(small, 2, Compute())
    assert values.value(SUFFICIENCY) == eager.value(SUFFICIENCY)
    assert values.decoders.compute == (
        "fp32, channels_last, compiled; "
        "compile failed, ran eagerly: RuntimeError: no C++ compiler found"
    )
    model = mnistnet(small)
    trained = Run(model, small, TrainConfig(batch_size=100, compute=Compute(compile=True)))
    assert trained.step().train_step_loss > 0
    assert trained.describe_compute().endswith("ran eagerly: RuntimeError: no C++ compiler found")


def test_the_trial_settings_reach_training_and_decoders() -> None:
    trial = Trial.from_config({"precision": "bf16", "channels_last": False, "compile": True})
    expected = Compute("bf16", channels_last=False, compile=True)
    assert trial.train.compute == expected and trial.vinfo.decoder.compute == expected
    assert Trial.from_config({}).train.compute == Compute("fp32", channels_last=True)
    # Decoders, the measuring instrument, never hold bfloat16 weights: autocast for bf16-true.
    thesis = Trial.from_config(THESIS_RECIPE)
    assert thesis.train.compute == Compute("bf16-true", compile=True)
    assert thesis.vinfo.decoder.compute == Compute("bf16", compile=True)


@pytest.mark.parametrize(("settings", "message"), [
    ({"precision": "fp16"}, "unknown precision 'fp16': choose one of fp32, bf16, bf16-true"),
    ({"compile": "yes"}, "setting 'compile' takes true or false, got 'yes'"),
    ({"channels_last": 1}, "setting 'channels_last' takes true or false, got 1"),
])  # fmt: skip
def test_bad_compute_settings_are_one_line(settings, message) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        Trial.from_config(settings)


def test_bf16_on_hardware_without_it_is_refused_before_any_data_loads(monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(Trial, "load_data", lambda self: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match=f"^{re.escape(NO_BF16)}; use precision 'fp32'$"):
        Trial.from_config({"precision": "bf16"}).build("cpu")
    with pytest.raises(ValueError, match="this GPU has no bfloat16 support"):
        compute.check(Compute("bf16"), "cuda")
    with pytest.raises(ValueError, match=r"^precision 'bf16-true' cannot run here: this CPU"):
        compute.check(Compute("bf16-true"), "cpu")
    assert run.main(["--precision", "bf16", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and NO_BF16 in err
