"""Does bfloat16 decoder training pay on this CPU? One 𝒱-information measurement of f₋.

    python benchmarks/vinfo_bf16.py [--data-dir /path/with/FashionMNIST]

The same measurement as part "ours" of `vinfo_speed.py` (f₋ on Fashion-MNIST 10 000 + 10 000,
trained 2 epochs, seed 0; layers 1–3 of both splits, layer 0 skipped as on every measurement
after a run's first; default VInfoConfig, same seeds) with the decoders trained under bfloat16
autocast in the default memory format (`DecoderConfig(compute=Compute("bf16",
channels_last=False))`, what `DecoderConfig(precision="bf16")` was; the thesis' protocol).
Compare its wall time and values with part "ours" of `vinfo_speed.py` (fp32). Writes
benchmarks/out/vinfo_bf16.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from raycompress.compute import Compute
from raycompress.data import load_dataset
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import build_model, make_spec
from raycompress.plan import measure_in_process
from raycompress.schema import HEADLINE, NETWORK, VInfoResult
from raycompress.seeds import Stream, derive_seed
from raycompress.training import TrainConfig, run_epochs

OUT = Path(__file__).resolve().parent / "out" / "vinfo_bf16.json"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    args = p.parse_args()
    torch.set_num_threads(2)
    data = load_dataset("fashion-mnist", args.data_dir, download=False)
    spec = make_spec("mnistnet", data.input_shape, 10)
    model = build_model(spec, seed=derive_seed(0, Stream.MODEL_INIT))  # as a run of seed 0
    losses = [r.train_step_loss for r in run_epochs(model, data, TrainConfig(seed=0, max_epochs=2))]
    skip = {(s, NETWORK): VInfoResult() for s in ("train", "test")}  # layer 0 "measured"
    config = VInfoConfig(
        DecoderConfig(protocol="thesis", compute=Compute("bf16", channels_last=False))
    )
    start = time.perf_counter()
    splits = {"train": data.train, "test": data.test}
    out = measure_in_process(model, splits, config, run_seed=0, epoch=2, layer0=skip)
    total = time.perf_counter() - start
    rows = {
        f"{layer}/{split}": {q.value: v.value(q) for q in HEADLINE}
        for (layer, split, _), v in out.items()
        if layer
    }
    result = {"total_s": total, "rows": rows, "setup_losses": losses}
    print(json.dumps(result, indent=1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
