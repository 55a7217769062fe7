"""A trial's configuration: the flat dictionary a sweep sweeps over, validated into the
library's typed configurations before anything is loaded or trained."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from raycompress.data import Dataset, Imbalance, check_dataset_name, load_dataset
from raycompress.decoders import DecoderConfig
from raycompress.metrics.collapse import CollapseConfig
from raycompress.models import LayeredNet, build_model, make_spec
from raycompress.training import TrainConfig
from raycompress.vinfo import VInfoConfig

# Every key a trial understands, with its default (the thesis' protocol).
DEFAULTS: dict[str, Any] = {
    "dataset": "fashion-mnist-demo",
    "model": "mnistnet",
    "widths": None,  # None: the thesis' widths for the model
    "data_dir": None,
    "download": True,
    "train_size": None,  # None: the test split's size
    "imbalance": None,  # e.g. "step:0.1" or "exponential:0.01"
    "seed": 0,
    "lr": 2e-3,
    "batch_size": 400,
    "epochs": 50,
    "loss_threshold": 0.02,
    "weight_decay": 0.01,
    "nc_method": "auto",
    "nc_feature_budget_mib": 1024,
    "vinfo_schedule": "every",
    "decoder_epochs": 50,
    "decoder_patience": 5,
    "decoder_precision": "fp32",
    "held_out": False,
    "monte_carlo": 0,
}


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

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Trial:
        unknown = sorted(set(config) - set(DEFAULTS))
        if unknown:
            raise ValueError(
                f"unknown trial setting {unknown[0]!r}: known settings are {', '.join(DEFAULTS)}"
            )
        c = {**DEFAULTS, **config}
        check_dataset_name(c["dataset"])
        make_spec(c["model"], (1, 1, 1), 2, c["widths"])
        train = TrainConfig(
            lr=c["lr"], batch_size=c["batch_size"], max_epochs=c["epochs"],
            loss_threshold=c["loss_threshold"], weight_decay=c["weight_decay"], seed=c["seed"],
        )  # fmt: skip
        collapse = CollapseConfig(
            batch_size=c["batch_size"], method=c["nc_method"],
            feature_budget_bytes=int(c["nc_feature_budget_mib"] * 2**20),
        )  # fmt: skip
        decoder = DecoderConfig(
            lr=c["lr"], batch_size=c["batch_size"], max_epochs=c["decoder_epochs"],
            patience=c["decoder_patience"], precision=c["decoder_precision"],
            weight_decay=c["weight_decay"],
        )  # fmt: skip
        vinfo = VInfoConfig(
            decoder, schedule=c["vinfo_schedule"], held_out=bool(c["held_out"]),
            monte_carlo=int(c["monte_carlo"]),
        )  # fmt: skip
        return cls(c, parse_imbalance(c["imbalance"]), train, collapse, vinfo)

    def load_data(self) -> Dataset:
        c = self.config
        return load_dataset(
            c["dataset"], c["data_dir"], download=c["download"], train_size=c["train_size"],
            subset_seed=c["seed"], imbalance=self.imbalance,
        )  # fmt: skip

    def build(self, device: torch.device | str = "cpu") -> tuple[Dataset, LayeredNet]:
        """The data (on `device`) and the freshly initialised model of this trial."""
        data = self.load_data().to(device)
        c = self.config
        spec = make_spec(c["model"], data.input_shape, data.num_classes, c["widths"])
        return data, build_model(spec, seed=self.train.seed).to(device)
