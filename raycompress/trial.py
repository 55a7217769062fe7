"""A trial's configuration: the flat dictionary a sweep sweeps over, validated into the
library's typed configurations before anything is loaded or trained."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from raycompress import compute, protocol
from raycompress.compute import Compute
from raycompress.data import (
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
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import (
    THESIS_MODELS,
    Builder,
    LayeredNet,
    build_model,
    check_model,
    make_spec,
)
from raycompress.plan import measured_layers
from raycompress.seeds import Stream, derive_seed
from raycompress.training import TrainConfig


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _number(value) and math.isfinite(value) and value > 0


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _integers(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(map(_integer, value))


@dataclass(frozen=True)
class Setting:
    """One trial setting: its default and the values it takes (`takes`, in words)."""

    default: Any
    takes: str
    accepts: Callable[[Any], bool]


# Every setting a trial understands, with its default: the thesis' protocol.
SETTINGS: dict[str, Setting] = {
    "dataset": Setting("fashion-mnist-demo", "a dataset name", _text),
    "model": Setting("mnistnet", "a model name", _text),
    "widths": Setting(None, "null or a list of integers", _optional(_integers)),  # None: thesis'
    "data_dir": Setting(None, "null or a folder path", _optional(_text)),
    "download": Setting(True, "true or false", lambda v: isinstance(v, bool)),
    "train_size": Setting(None, "null or an integer", _optional(_integer)),  # None: test size
    "test_size": Setting(None, "null or an integer", _optional(_integer)),  # None: all of it
    "imbalance": Setting(None, "null or PROFILE:RATIO, e.g. step:0.1", _optional(_text)),
    "seed": Setting(0, "an integer", _integer),
    "lr": Setting(protocol.LR, "a number", _number),
    "batch_size": Setting(protocol.BATCH_SIZE, "an integer", _integer),
    "epochs": Setting(protocol.MAX_EPOCHS, "an integer", _integer),
    "loss_threshold": Setting(protocol.LOSS_THRESHOLD, "a number", _number),
    "weight_decay": Setting(protocol.WEIGHT_DECAY, "a number", _number),
    "input_scale": Setting(1, "a positive number", _positive),  # 255: the thesis' code's pixels
    "precision": Setting("fp32", "fp32, bf16 or bf16-true", _text),  # see `compute`
    "channels_last": Setting(True, "true or false", lambda v: isinstance(v, bool)),
    "compile": Setting(False, "true or false", lambda v: isinstance(v, bool)),
    "nc_method": Setting("auto", "a method name", _text),
    "nc_feature_budget_mib": Setting(
        CollapseConfig.feature_budget_bytes // 2**20, "a number", _number
    ),
    "vinfo_schedule": Setting(
        "every",
        "a schedule (every, every:K, log:N, none) or a list of epochs",
        lambda v: _text(v) or _integers(v),
    ),
    # None: every layer l = 0..L−1; negative counts from L (−1: the last hidden layer)
    "vinfo_layers": Setting(None, "null or a list of integers", _optional(_integers)),
    "decoder_epochs": Setting(protocol.MAX_EPOCHS, "an integer", _integer),
    "decoder_patience": Setting(protocol.DECODER_PATIENCE, "an integer", _integer),
    # None: protocol.DECODER_BUDGETS below the cap, and the cap
    "decoder_budgets": Setting(None, "null or a list of increasing integers", _optional(_integers)),
    "held_out": Setting(False, "true or false", lambda v: isinstance(v, bool)),
    # thesis: the thesis' fixed recipe; converged: decoders train until certified (protocol)
    "vinfo_protocol": Setting("thesis", " or ".join(protocol.VINFO_PROTOCOLS), _text),
    "decoder_tolerance": Setting(protocol.CERTIFY_TOLERANCE, "a number (bits)", _number),
    "decoder_certify_from": Setting(protocol.CERTIFY_FROM, "an integer", _integer),
    "decoder_warm_certify_from": Setting(protocol.WARM_CERTIFY_FROM, "an integer", _integer),
    "decoder_warm_start": Setting(False, "true or false", lambda v: isinstance(v, bool)),
    # with decoder_warm_start: the decoders' optimiser continues too (its AdamW moments)
    "decoder_warm_optimizer": Setting(False, "true or false", lambda v: isinstance(v, bool)),
    "decoder_lr": Setting(None, "null or a positive number", _optional(_positive)),  # None: lr
    "decoder_batch_size": Setting(  # the decoders' training batch; None: batch_size
        None, "null or a positive integer", _optional(lambda v: _integer(v) and v > 0)
    ),
    "monte_carlo": Setting(0, "an integer", _integer),
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
    models: dict[str, Builder] = field(default_factory=dict)  # a sweep's own networks

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
        shape, classes = info or ((1, 1, 1), 2)
        spec = make_spec(c["model"], shape, classes, c["widths"], models)
        if info and spec.name not in THESIS_MODELS:
            check_model(spec)
        how = Compute(c["precision"], c["channels_last"], c["compile"])
        train = TrainConfig(
            lr=c["lr"], batch_size=c["batch_size"], max_epochs=c["epochs"],
            loss_threshold=c["loss_threshold"], weight_decay=c["weight_decay"], seed=c["seed"],
            compute=how,
        )  # fmt: skip
        collapse = CollapseConfig(
            batch_size=c["batch_size"], seed=derive_seed(c["seed"], Stream.NC_ORDER),
            method=c["nc_method"],
            feature_budget_bytes=int(c["nc_feature_budget_mib"] * 2**20),
        )  # fmt: skip
        decoder_lr = c["lr"] if c["decoder_lr"] is None else c["decoder_lr"]
        decoder = DecoderConfig(
            lr=decoder_lr, batch_size=c["batch_size"], train_batch_size=c["decoder_batch_size"],
            max_epochs=c["decoder_epochs"],
            patience=c["decoder_patience"], weight_decay=c["weight_decay"],
            compute=how.for_decoders(),
            budgets=None if c["decoder_budgets"] is None else tuple(c["decoder_budgets"]),
            protocol=c["vinfo_protocol"], tolerance=c["decoder_tolerance"],
            certify_from=c["decoder_certify_from"],
            warm_certify_from=c["decoder_warm_certify_from"],
        )  # fmt: skip
        converged = decoder.converged  # its held-out halves stay fixed for the run
        vinfo = VInfoConfig(
            decoder, schedule=c["vinfo_schedule"], held_out=bool(c["held_out"]),
            layers=None if c["vinfo_layers"] is None else tuple(c["vinfo_layers"]),
            monte_carlo=int(c["monte_carlo"]), warm_start=c["decoder_warm_start"],
            warm_optimizer=c["decoder_warm_optimizer"],
            halves_seed=derive_seed(c["seed"], Stream.HALVES) if converged else None,
        )  # fmt: skip
        return cls(c, parse_imbalance(c["imbalance"]), train, collapse, vinfo, dict(models or {}))

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
        data = self.load_data().to(device)
        c = self.config
        spec = make_spec(c["model"], data.input_shape, data.num_classes, c["widths"], self.models)
        initialised = derive_seed(self.train.seed, Stream.MODEL_INIT)
        model = build_model(spec, seed=initialised)
        measured_layers(self.vinfo.layers, model.depth)  # a layer it lacks: one line, now
        return data, model.to(device)
