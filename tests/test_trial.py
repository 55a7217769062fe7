"""A trial's settings: one source for the protocol's defaults, types checked in one line."""

from __future__ import annotations

import dataclasses

import pytest

from raycompress import protocol, run
from raycompress import trial as trial_module
from raycompress.compute import Compute
from raycompress.metrics.collapse import CollapseConfig
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import make_spec
from raycompress.protocol import Optimisation
from raycompress.schema import NETWORK
from raycompress.training import TrainConfig
from raycompress.trial import DEFAULTS, SETTINGS, Trial, check_types


def test_every_default_comes_from_the_protocol() -> None:
    train, decoder = TrainConfig(), DecoderConfig()
    cli = vars(run.parser().parse_args([]))
    for value, *copies in [
        (protocol.LR, train.lr, decoder.lr, DEFAULTS["lr"], cli["lr"]),
        (protocol.BATCH_SIZE, train.batch_size, decoder.batch_size, DEFAULTS["batch_size"],
         cli["batch_size"]),
        (protocol.MAX_EPOCHS, train.max_epochs, decoder.max_epochs, DEFAULTS["epochs"],
         DEFAULTS["decoder_epochs"], cli["epochs"], cli["decoder_epochs"]),
        (protocol.LOSS_THRESHOLD, train.loss_threshold, decoder.loss_threshold,
         DEFAULTS["loss_threshold"], cli["loss_threshold"]),
        (protocol.WEIGHT_DECAY, train.weight_decay, decoder.weight_decay,
         DEFAULTS["weight_decay"]),
        (protocol.DECODER_PATIENCE, decoder.patience, DEFAULTS["decoder_patience"]),
    ]:  # fmt: skip
        assert copies == [value] * len(copies)
    trial = Trial.from_config({})
    assert trial.train == TrainConfig() and trial.vinfo.decoder == DecoderConfig()


def test_a_trial_without_settings_is_every_configuration_at_its_own_defaults() -> None:
    """The settings table restates no default: a trial of no settings holds each library
    configuration as that configuration's own defaults make it (a trial derives the seeds)."""
    trial = Trial.from_config({})
    assert trial.train.compute == Compute() and trial.vinfo.decoder.compute == Compute()
    collapse = dataclasses.replace(trial.collapse, seed=CollapseConfig().seed)
    assert collapse == CollapseConfig()
    vinfo = dataclasses.replace(trial.vinfo, halves_seed=VInfoConfig().halves_seed)
    assert vinfo == VInfoConfig() and trial.baselines is False
    assert issubclass(TrainConfig, Optimisation) and issubclass(DecoderConfig, Optimisation)
    assert DecoderConfig().protocol == protocol.CONVERGED == DEFAULTS["vinfo_protocol"]
    assert [f.label for f in vinfo.families] == [NETWORK] == [DEFAULTS["decoder_family"]]


def test_the_model_spec_is_built_once_on_a_trials_way(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = []
    monkeypatch.setattr(
        trial_module, "make_spec", lambda *a: specs.append(make_spec(*a)) or specs[-1]
    )
    built = Trial.from_config({"train_size": 100, "test_size": 100})
    _, model = built.build()
    assert len(specs) == 1 and built.spec is specs[0]
    assert model.depth == len(specs[0].widths) + 1


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("lr", "abc", "setting 'lr' takes a positive number, got 'abc'"),
        ("lr", 0, "setting 'lr' takes a positive number, got 0"),
        ("epochs", -1, "setting 'epochs' takes a positive integer, got -1"),
        ("decoder_epochs", 0, "setting 'decoder_epochs' takes a positive integer, got 0"),
        ("batch_size", 2.5, "setting 'batch_size' takes a positive integer, got 2.5"),
        ("weight_decay", -0.1, "setting 'weight_decay' takes a number ≥ 0, got -0.1"),
        ("monte_carlo", -1, "setting 'monte_carlo' takes an integer ≥ 0, got -1"),
        ("baselines", "yes", "setting 'baselines' takes true or false, got 'yes'"),
        ("seed", True, "setting 'seed' takes an integer, got True"),
        ("widths", [16, "8"], "setting 'widths' takes null or a list of integers, got [16, '8']"),
        ("vinfo_schedule", 3, "setting 'vinfo_schedule' takes a schedule"),
        ("lrr", 1, "unknown trial setting 'lrr': known settings are dataset, model"),
        ("input_scale", 0, "setting 'input_scale' takes a positive number, got 0"),
        ("input_scale", float("inf"), "setting 'input_scale' takes a positive number, got inf"),
    ],
)
def test_bad_settings_are_one_line(setting: str, value: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        check_types({setting: value})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_every_default_has_its_own_type() -> None:
    check_types(DEFAULTS)  # the defaults pass their own checks
    assert set(SETTINGS) == set(DEFAULTS)
    check_types({"lr": 1, "widths": (8, 4), "vinfo_schedule": [1, 5], "train_size": None})


def test_the_feature_budget_default_is_collapse_configs() -> None:
    mib = DEFAULTS["nc_feature_budget_mib"]
    assert isinstance(mib, int) and mib * 2**20 == CollapseConfig().feature_budget_bytes
    assert (
        Trial.from_config({}).collapse.feature_budget_bytes == CollapseConfig().feature_budget_bytes
    )


def test_the_decoders_learning_rate_is_the_runs_unless_set() -> None:
    assert Trial.from_config({}).vinfo.decoder.lr == protocol.LR
    trial = Trial.from_config({"decoder_lr": 1e-2})
    assert trial.vinfo.decoder.lr == 1e-2 and trial.train.lr == protocol.LR
    with pytest.raises(ValueError, match="setting 'decoder_lr' takes null or a positive number"):
        Trial.from_config({"decoder_lr": 0})


def test_the_decoders_batch_size_is_the_runs_unless_set() -> None:
    assert Trial.from_config({"batch_size": 200}).vinfo.decoder.train_batch == 200
    decoder = Trial.from_config({"decoder_batch_size": 100}).vinfo.decoder
    # only the optimiser's: features are still encoded and scored in the network's batches
    assert decoder.train_batch == 100 and decoder.batch_size == protocol.BATCH_SIZE
    assert "batch 100" in decoder.recipe(warm=False)
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="'decoder_batch_size' takes null or a positive int"):
            Trial.from_config({"decoder_batch_size": bad})


def test_a_layer_the_network_lacks_is_one_line_before_training() -> None:
    trial = Trial.from_config({"vinfo_layers": [-1, 4], "train_size": 100, "test_size": 100})
    with pytest.raises(ValueError) as err:
        trial.build()
    assert "vinfo_layers [-1, 4]: this network has 𝒱-information layers 0..3" in str(err.value)
    assert "\n" not in str(err.value)
    assert Trial.from_config({"vinfo_layers": [-1]}).vinfo.layers == (-1,)
