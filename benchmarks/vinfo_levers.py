"""What reaches the 𝒱-information supremum fastest? The decoder levers, side by side.

    python benchmarks/vinfo_levers.py [--layers 1,2,3] [--model mnistnet] [--out FILE.json]

One encoder for every variant: f₋ (or --model) trained with the thesis' recipe on the real
Fashion-MNIST (10 000 training images, the whole test split; seed 0) for --epochs epochs;
every variant measures its train split at each of --layers (in-sample sufficiency and
minimality, `measure_vinfo`, one thread pair: this CPU's 2 threads). Variants:

    thesis          the thesis' recipe as the product runs it (AdamW 2e-3 constant, batch 400,
                    ≤ 50 epochs with its loss-threshold and plateau stops)
    const_2e-3 …    constant lr (2e-3 to 2e-2: a range test), no early stop, scored at 5, 10,
                    20, 30, 40, 50 epochs: bits against decoder epochs
    cosine_1e-2     a 5 % linear warm-up, then a cosine decay (to 0 one epoch after the 50th)
    batch100        lr 2e-3 at batch 100 (encoding and scoring in batches of 100 too)
    train100 …      only the decoders' training batch smaller: 100 (lr 2e-3 or 5e-3) or 50;
                    encoded and scored in the network's batches of 400
    converged …     the converged protocol, fresh: certified or capped at 200 epochs (lr 2e-3,
                    5e-3 or 1e-2; training batch 400, 100 or 50)
    warm …          the converged protocol continuing, on this encoder, the decoders that the
                    previous epoch's encoder trained for 50 epochs (certify from 2 epochs, cap 64)

Each variant records its value and curve, whether each head was certified, its epochs, and
the CPU seconds (`time.process_time`: both threads) and wall seconds of its measurement (the
warm variant's previous measurement is timed apart: a run pays it at the measurement before).
Figures in docs/benchmarks.md; raw: benchmarks/out/vinfo_levers.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raycompress.data import load_dataset  # noqa: E402
from raycompress.metrics.decoders import DecoderConfig  # noqa: E402
from raycompress.metrics.vinfo import VInfoConfig, measure_vinfo  # noqa: E402
from raycompress.models import build_model, make_spec  # noqa: E402
from raycompress.protocol import CONVERGED  # noqa: E402
from raycompress.schema import HEADLINE, VInfoResult  # noqa: E402
from raycompress.seeds import Stream, derive_seed  # noqa: E402
from raycompress.training import Run, TrainConfig  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "vinfo_levers.json"
CURVE = (5, 10, 20, 30, 40, 50)
NO_STOP = {"loss_threshold": 0.0, "patience": 10**6, "budgets": CURVE}
VARIANTS: dict[str, DecoderConfig] = {
    "thesis": DecoderConfig(protocol="thesis"),
    "const_2e-3": DecoderConfig(protocol="thesis", **NO_STOP),
    "const_5e-3": DecoderConfig(protocol="thesis", lr=5e-3, **NO_STOP),
    "const_1e-2": DecoderConfig(protocol="thesis", lr=1e-2, **NO_STOP),
    "const_2e-2": DecoderConfig(protocol="thesis", lr=2e-2, **NO_STOP),
    "cosine_1e-2": DecoderConfig(protocol="thesis", lr=1e-2, lr_schedule="cosine", **NO_STOP),
    "batch100": DecoderConfig(protocol="thesis", batch_size=100, **NO_STOP),
    "train100": DecoderConfig(protocol="thesis", train_batch_size=100, **NO_STOP),
    "train100_5e-3": DecoderConfig(protocol="thesis", lr=5e-3, train_batch_size=100, **NO_STOP),
    "train50": DecoderConfig(protocol="thesis", train_batch_size=50, **NO_STOP),
    "converged": DecoderConfig(protocol=CONVERGED, max_epochs=200),
    "converged_5e-3": DecoderConfig(lr=5e-3, protocol=CONVERGED, max_epochs=200),
    "converged_1e-2": DecoderConfig(lr=1e-2, protocol=CONVERGED, max_epochs=200),
    "converged_t100": DecoderConfig(train_batch_size=100, protocol=CONVERGED, max_epochs=200),
    "converged_t50": DecoderConfig(train_batch_size=50, protocol=CONVERGED, max_epochs=200),
}
PREVIOUS = DecoderConfig(protocol=CONVERGED, max_epochs=50)  # 25 → 50: ≈ the thesis' 50
WARMS = {  # the warm variants: their continuing decoders
    "warm": DecoderConfig(protocol=CONVERGED, certify_from=2, max_epochs=64),
    "warm_5e-3": DecoderConfig(lr=5e-3, protocol=CONVERGED, certify_from=2, max_epochs=64),
}


def encoders(model_name: str, epochs: int) -> tuple[dict, dict, object]:
    """The network's weights after epochs − 1 and after `epochs` epochs, and the data."""
    data = load_dataset(
        "fashion-mnist", ROOT.parent / "shared" / "data", download=False, train_size=10_000
    )
    spec = make_spec(model_name, data.input_shape, data.num_classes)
    model = build_model(spec, seed=derive_seed(0, Stream.MODEL_INIT))  # as a run of seed 0
    run = Run(model, data, TrainConfig(seed=0))
    states = []
    for _ in range(epochs):
        run.step()
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return states[-2], states[-1], data


def measured(result: VInfoResult, cpu: float, wall: float) -> dict:
    out: dict = {"cpu_s": cpu, "wall_s": wall, "error": result.error}
    for q in HEADLINE:
        term = result.terms[q]
        out[q] = {
            "value": term.value, "curve": term.curve, "certified": term.certified,
            "epochs": [h.fit.epochs for h in term.heads],
            "stops": [str(h.fit.stop) for h in term.heads],
            "gains": [h.fit.last_gain for h in term.heads], "entropy": term.entropy,
        }  # fmt: skip
    return out


def timed(
    encoder, make_decoder, split, config: VInfoConfig, warm=None
) -> tuple[VInfoResult, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = measure_vinfo(encoder, make_decoder, split, 10, config, seed=1, warm=warm)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnistnet")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--layers", default="1,2,3")
    p.add_argument("--variants", default=",".join([*VARIANTS, *WARMS]))
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    before, after, data = encoders(args.model, args.epochs)
    spec = make_spec(args.model, data.input_shape, data.num_classes)
    model, previous = build_model(spec), build_model(spec)
    model.load_state_dict(after)
    previous.load_state_dict(before)
    results: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    for layer in map(int, args.layers.split(",")):
        decoder = lambda seed, layer=layer: model.fresh_decoder(layer, seed)  # noqa: E731
        for name in args.variants.split(","):
            key = f"{args.model}/l{layer}/{name}"
            if name in WARMS:
                config = VInfoConfig(PREVIOUS, warm_start=True)
                prior, cpu0, wall0 = timed(previous.encoder(layer), decoder, data.train, config)
                config = VInfoConfig(WARMS[name], warm_start=True)
                got, cpu, wall = timed(
                    model.encoder(layer), decoder, data.train, config, prior.decoder_state
                )
                results[key] = measured(got, cpu, wall) | {"previous": measured(prior, cpu0, wall0)}
            else:
                config = VInfoConfig(VARIANTS[name])
                got, cpu, wall = timed(model.encoder(layer), decoder, data.train, config)
                results[key] = measured(got, cpu, wall)
            results[key]["config"] = dataclasses.asdict(config.decoder) | {"compute": None}
            row = results[key]
            print(
                f"{key}: suff {row['v_suff']['value']:.3f} min {row['v_min']['value']:.3f} "
                f"certified {row['v_suff']['certified']}/{row['v_min']['certified']} "
                f"cpu {cpu:.0f} s wall {wall:.0f} s",
                flush=True,
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"threads {torch.get_num_threads()}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
