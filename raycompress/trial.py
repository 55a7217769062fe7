"""A trial's configuration: the flat dictionary a sweep sweeps over, validated into the
library's typed configurations before anything is loaded or trained."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from raycompress import compute, protocol
from raycompress.compute import Compute
from raycompress.data import (
    DEMO,
    IMAGE_FOLDER,
    DataNotFoundError,
    Dataset,
    Imbalance,
    check_available,
    check_dataset_name,
    dataset_info,
    default_data_dir,
    image_folder_root,
    load_dataset,
)
from raycompress.metrics.collapse import CollapseConfig
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.families import FAMILIES, parse_families
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import (
    THESIS_MODELS,
    Builder,
    LayeredNet,
    ModelSpec,
    build_model,
    check_model,
    make_spec,
)
from raycompress.plan import measured_layers
from raycompress.schema import NETWORK
from raycompress.seeds import Stream, derive_seed
from raycompress.training import TrainConfig


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _number(value) and math.isfinite(value) and value > 0


def _positive_integer(value: Any) -> bool:
    return _integer(value) and value > 0


def _non_negative(value: Any) -> bool:
    return _number(value) and math.isfinite(value) and value >= 0


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _integers(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(map(_integer, value))


def default(config: type, name: str) -> Any:
    """The default of field `name` of the dataclass `config`: the settings table reads every
    default that a library configuration owns from that configuration."""
    found = {f.name: f for f in dataclasses.fields(config)}[name]
    return found.default if found.default is not dataclasses.MISSING else found.default_factory()


@dataclass(frozen=True)
class Setting:
    """One trial setting: its default and the values it takes (`takes`, in words)."""

    default: Any
    takes: str
    accepts: Callable[[Any], bool]


# Every setting a trial understands, with its default (the thesis' protocol): read from the
# configuration that owns it, or owned here where only a trial has it.
SETTINGS: dict[str, Setting] = {
    "dataset": Setting(DEMO, "a dataset name", _text),
    "model": Setting("mnistnet", "a model name", _text),
    "widths": Setting(None, "null or a list of integers", _optional(_integers)),  # None: thesis'
    "data_dir": Setting(None, "null or a folder path", _optional(_text)),
    "download": Setting(True, "true or false", _flag),
    "train_size": Setting(None, "null or an integer", _optional(_integer)),  # None: test size
    "test_size": Setting(None, "null or an integer", _optional(_integer)),  # None: all of it
    "imbalance": Setting(None, "null or PROFILE:RATIO, e.g. step:0.1", _optional(_text)),
    "seed": Setting(default(TrainConfig, "seed"), "an integer", _integer),
    "lr": Setting(default(TrainConfig, "lr"), "a positive number", _positive),
    "batch_size": Setting(
        default(TrainConfig, "batch_size"), "a positive integer", _positive_integer
    ),
    "epochs": Setting(default(TrainConfig, "max_epochs"), "a positive integer", _positive_integer),
    "loss_threshold": Setting(
        default(TrainConfig, "loss_threshold"), "a number ≥ 0 (nats)", _non_negative
    ),
    "weight_decay": Setting(default(TrainConfig, "weight_decay"), "a number ≥ 0", _non_negative),
    "input_scale": Setting(1, "a positive number", _positive),  # 255: the thesis' code's pixels
    "precision": Setting(default(Compute, "precision"), " or ".join(compute.PRECISIONS), _text),
    "channels_last": Setting(default(Compute, "channels_last"), "true or false", _flag),
    "compile": Setting(default(Compute, "compile"), "true or false", _flag),
    "nc_method": Setting(default(CollapseConfig, "method"), "a method name", _text),
    "nc_feature_budget_mib": Setting(
        default(CollapseConfig, "feature_budget_bytes") // 2**20, "a number", _number
    ),
    # the generalisation literature's baseline measures where training stops (`baselines`)
    "baselines": Setting(False, "true or false", _flag),
    "vinfo_schedule": Setting(
        default(VInfoConfig, "schedule"),
        "a schedule (every, every:K, log:N, none) or a list of epochs",
        lambda v: _text(v) or _integers(v),
    ),
    # None: every layer l = 0..L−1; negative counts from L (−1: the last hidden layer)
    "vinfo_layers": Setting(
        default(VInfoConfig, "layers"), "null or a list of integers", _optional(_integers)
    ),
    "decoder_epochs": Setting(
        default(DecoderConfig, "max_epochs"), "a positive integer", _positive_integer
    ),
    "decoder_patience": Setting(
        default(DecoderConfig, "patience"), "a positive integer", _positive_integer
    ),
    # None: protocol.DECODER_BUDGETS below the cap, and the cap
    "decoder_budgets": Setting(
        default(DecoderConfig, "budgets"),
        "null or a list of increasing integers",
        _optional(_integers),
    ),
    # the decoder families 𝒱 (metrics.families): a name or a list, each measured
    "decoder_family": Setting(
        NETWORK,
        f"a family ({', '.join(FAMILIES)}) or a list of them",
        lambda v: _text(v) or (isinstance(v, list) and all(map(_text, v))),
    ),
    # the mlp family's hidden units; None: families.MLP_WIDTH
    "decoder_width": Setting(None, "null or a positive integer", _optional(_positive_integer)),
    "held_out": Setting(default(VInfoConfig, "held_out"), "true or false", _flag),
    # thesis: the thesis' fixed recipe; converged: decoders train until certified (protocol)
    "vinfo_protocol": Setting(
        default(DecoderConfig, "protocol"), " or ".join(protocol.VINFO_PROTOCOLS), _text
    ),
    "decoder_tolerance": Setting(
        default(DecoderConfig, "tolerance"), "a positive number (bits)", _positive
    ),
    "decoder_certify_from": Setting(
        default(DecoderConfig, "certify_from"), "a positive integer", _positive_integer
    ),
    "decoder_warm_certify_from": Setting(
        default(DecoderConfig, "warm_certify_from"), "a positive integer", _positive_integer
    ),
    "decoder_warm_start": Setting(default(VInfoConfig, "warm_start"), "true or false", _flag),
    # with decoder_warm_start: the decoders' optimiser continues too (its AdamW moments)
    "decoder_warm_optimizer": Setting(
        default(VInfoConfig, "warm_optimizer"), "true or false", _flag
    ),
    "decoder_lr": Setting(None, "null or a positive number", _optional(_positive)),  # None: lr
    "decoder_batch_size": Setting(  # the decoders' training batch; None: batch_size
        default(DecoderConfig, "train_batch_size"),
        "null or a positive integer",
        _optional(_positive_integer),
    ),
    "monte_carlo": Setting(
        default(VInfoConfig, "monte_carlo"), "an integer ≥ 0", lambda v: _integer(v) and v >= 0
    ),
}
DEFAULTS: dict[str, Any] = {name: setting.default for name, setting in SETTINGS.items()}
# How the thesis' code trains: raw 0..255 pixels, bfloat16 weights, a compiled forward. What it
# does to accuracy, against the defaults: docs/reproduction.md, "Seeds".
THESIS_RECIPE: dict[str, Any] = {"input_scale": 255, "precision": "bf16-true", "compile": True}


def check_types(config: Mapping[str, Any]) -> None:
    """One-line ValueError for an unknown setting or a value of the wrong type."""
    for name, value in config.items():
        setting = SETTINGS.get(name)
        if setting is None:
            raise ValueError(
                f"unknown trial setting {name!r}: known settings are {', '.join(SETTINGS)}"
            )
        if not setting.accepts(value):
            raise ValueError(f"setting {name!r} takes {setting.takes}, got {value!r}")


def parse_imbalance(text: str | None) -> Imbalance | None:
    """'step:0.1' or 'exponential:0.01' → Imbalance; None or 'none' → None."""
    if text is None or text == "none":
        return None
    profile, sep, ratio = str(text).partition(":")
    try:
        value = float(ratio) if sep else math.nan
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise ValueError(f"imbalance must look like PROFILE:RATIO (e.g. step:0.1), got {text!r}")
    return Imbalance(profile, value)


@dataclass(frozen=True)
class Trial:
    """One run's validated configuration."""

    config: dict[str, Any]  # the full flat configuration, defaults filled in
    imbalance: Imbalance | None
    train: TrainConfig
    collapse: CollapseConfig
    vinfo: VInfoConfig
    spec: ModelSpec | None  # None: the dataset is not on this machine (an image folder)
    baselines: bool = False  # measure the generalisation baselines where training stops

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], models: Mapping[str, Builder] | None = None
    ) -> Trial:
        """Validate `config` (settings → values); `models` are a sweep's own networks (its
        MODELS), valid values of `model` besides the built-in ones. A model that is not the
        thesis' is built once on the dataset's input shape to check that its blocks compose
        (skipped for an image folder that is not on this machine)."""
        check_types(config)
        c = {**DEFAULTS, **config}
        check_dataset_name(c["dataset"])
        try:
            info = dataset_info(c["dataset"])
        except DataNotFoundError:
            info = None  # an image folder on other machines: checked where it is loaded
        # the model's spec on the dataset's shape; without the data, a spec on a stand-in
        # shape still checks the model's name and widths
        spec = make_spec(c["model"], *(info or ((1, 1, 1), 2)), c["widths"], models)
        if info and spec.name not in THESIS_MODELS:
            check_model(spec)
        how = Compute(c["precision"], c["channels_last"], c["compile"])
        shared = {"batch_size": c["batch_size"], "weight_decay": c["weight_decay"]}
        train = TrainConfig(
            lr=c["lr"], max_epochs=c["epochs"], loss_threshold=c["loss_threshold"],
            seed=c["seed"], compute=how, **shared,
        )  # fmt: skip
        collapse = CollapseConfig(
            batch_size=c["batch_size"], seed=derive_seed(c["seed"], Stream.NC_ORDER),
            method=c["nc_method"],
            feature_budget_bytes=int(c["nc_feature_budget_mib"] * 2**20),
        )  # fmt: skip
        decoder_lr = c["lr"] if c["decoder_lr"] is None else c["decoder_lr"]
        decoder = DecoderConfig(
            lr=decoder_lr, train_batch_size=c["decoder_batch_size"],
            max_epochs=c["decoder_epochs"], patience=c["decoder_patience"],
            compute=how.for_decoders(),
            budgets=None if c["decoder_budgets"] is None else tuple(c["decoder_budgets"]),
            protocol=c["vinfo_protocol"], tolerance=c["decoder_tolerance"],
            certify_from=c["decoder_certify_from"],
            warm_certify_from=c["decoder_warm_certify_from"], **shared,
        )  # fmt: skip
        converged = decoder.converged  # its held-out halves stay fixed for the run
        vinfo = VInfoConfig(
            decoder, schedule=c["vinfo_schedule"], held_out=bool(c["held_out"]),
            layers=None if c["vinfo_layers"] is None else tuple(c["vinfo_layers"]),
            monte_carlo=int(c["monte_carlo"]), warm_start=c["decoder_warm_start"],
            families=parse_families(c["decoder_family"], c["decoder_width"]),
            warm_optimizer=c["decoder_warm_optimizer"],
            halves_seed=derive_seed(c["seed"], Stream.HALVES) if converged else None,
        )  # fmt: skip
        imbalance = parse_imbalance(c["imbalance"])
        return cls(c, imbalance, train, collapse, vinfo, spec if info else None, c["baselines"])

    def data_dir(self) -> Path:
        """Where the dataset's files are: an image folder's root, else the data directory."""
        if self.config["dataset"].startswith(IMAGE_FOLDER):
            return image_folder_root(self.config["dataset"])
        return Path(self.config["data_dir"] or default_data_dir()).expanduser()

    def check_data(self) -> None:
        """Raise a one-line DataNotFoundError when the dataset's files are missing here and
        may not be downloaded: before anything is loaded or started."""
        check_available(self.config["dataset"], self.data_dir(), self.config["download"])

    def load_data(self) -> Dataset:
        c = self.config
        return load_dataset(
            c["dataset"], self.data_dir(), download=c["download"], train_size=c["train_size"],
            test_size=c["test_size"],
            subset_seed=c["seed"], imbalance=self.imbalance, input_scale=c["input_scale"],
        )  # fmt: skip

    def build(self, device: torch.device | str = "cpu") -> tuple[Dataset, LayeredNet]:
        """The data (on `device`) and the freshly initialised model of this trial; first a
        one-line ValueError when the trial's precision cannot run on `device`."""
        compute.check(self.train.compute, device)
        if self.spec is None:
            self.check_data()  # the image folder is not here: one line, before any loading
        data = self.load_data().to(device)
        initialised = derive_seed(self.train.seed, Stream.MODEL_INIT)
        model = build_model(self.spec, seed=initialised)
        measured_layers(self.vinfo.layers, model.depth)  # a layer it lacks: one line, now
        return data, model.to(device)
