"""Does the converged protocol certify every term of a stopping-epoch measurement, and does it
ever fall below the thesis' recipe? Both protocols on one encoder, side by side.

    python benchmarks/vinfo_certified.py [--layers 1,2,3,0] [--splits train,test]
        [--protocols thesis,converged] [--families network,linear,mlp]

The encoder: f₋ (or --model, at --precision: f₊ in bf16 as thesis_fmnist trains it) trained
with the thesis' protocol on the real Fashion-MNIST (10 000 training images, the whole test
split; seed 0) until it stops (training loss ≤ 0.02 or 50 epochs), its weights kept in
benchmarks/out/ for a rerun. At each layer and split, the thesis' recipe
(`DecoderConfig(protocol="thesis")`) and the converged protocol (fresh decoders, `--cap` epochs
at most) measure in-sample sufficiency and minimality with the same measurement
seed; each result records every term's value, certification, decoder epochs and CPU and wall
seconds. Goals: (i) every converged term certified; (ii) none below the thesis'
value by more than 0.01 bit. With --families, each decoder family (`metrics.families`; the
default mlp width) is measured under each protocol that it admits (linear: converged only),
and each value also records whether it is saturated. Raw: benchmarks/out/vinfo_certified.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raycompress.compute import Compute  # noqa: E402
from raycompress.data import load_dataset  # noqa: E402
from raycompress.metrics.decoders import DecoderConfig  # noqa: E402
from raycompress.metrics.families import LINEAR, parse_families  # noqa: E402
from raycompress.metrics.vinfo import VInfoConfig, measure_vinfo  # noqa: E402
from raycompress.models import build_model, make_spec  # noqa: E402
from raycompress.schema import HEADLINE, NETWORK  # noqa: E402
from raycompress.seeds import Stream, derive_seed  # noqa: E402
from raycompress.training import Run, TrainConfig  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "vinfo_certified.json"


def stopped_encoder(model_name: str, data, weights: Path, how: Compute) -> tuple[dict, int]:
    """The network's weights where the thesis' protocol stops it, and that epoch (cached)."""
    if weights.exists():
        saved = torch.load(weights, weights_only=True)
        return saved["model"], saved["epoch"]
    spec = make_spec(model_name, data.input_shape, data.num_classes)
    model = build_model(spec, seed=derive_seed(0, Stream.MODEL_INIT))  # as a run of seed 0
    run = Run(model, data, TrainConfig(seed=0, compute=how))
    while (record := run.step()).stop_reason is None:
        print(f"epoch {record.epoch}: step loss {record.train_step_loss:.4f}", flush=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "epoch": record.epoch}, weights)
    return state, record.epoch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnistnet")
    p.add_argument("--layers", default="1,2,3,0")
    p.add_argument("--splits", default="train,test")
    p.add_argument("--cap", type=int, default=400)
    p.add_argument("--precision", default="fp32", help="training and decoders (f₊: bf16)")
    p.add_argument("--protocols", default="thesis,converged")
    p.add_argument("--families", default=NETWORK, help="e.g. network,linear,mlp")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    data = load_dataset(
        "fashion-mnist", ROOT.parent / "shared" / "data", download=False, train_size=10_000
    )
    weights = args.out.with_name(f"{args.out.stem}_{args.model}_weights.pt")
    how = Compute(args.precision)
    state, epoch = stopped_encoder(args.model, data, weights, how)
    model = build_model(make_spec(args.model, data.input_shape, data.num_classes))
    model.load_state_dict(state)
    decoders = {
        "thesis": DecoderConfig(protocol="thesis", compute=how.for_decoders()),
        "converged": DecoderConfig(
            protocol="converged", max_epochs=args.cap, compute=how.for_decoders()
        ),
    }
    protocols = {  # "converged" names the thesis' family alone, as before families were
        name if family.name == NETWORK else f"{name}/{family.label}": (decoders[name], family)
        for family in parse_families(args.families.split(","))
        for name in args.protocols.split(",")
        if not (family.name == LINEAR and name == "thesis")
    }
    results: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    for layer in map(int, args.layers.split(",")):
        for split in args.splits.split(","):
            for name, (decoder, family) in protocols.items():
                key = f"{args.model}/epoch{epoch}/l{layer}/{split}/{name}"
                if key in results:
                    continue
                cpu, wall = time.process_time(), time.perf_counter()
                got = measure_vinfo(
                    model.encoder(layer), family.decoder(model, layer), getattr(data, split),
                    data.num_classes, VInfoConfig(decoder, families=(family,)), seed=1,
                    label=key,
                )  # fmt: skip
                row: dict = {
                    "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                    "error": got.error, "result": got.to_json(),  # as the history holds it
                }  # fmt: skip
                for q in HEADLINE:
                    term = got.terms[q]
                    row[q] = {
                        "value": term.value, "certified": term.certified,
                        "epochs": [h.fit.epochs for h in term.heads],
                        "stops": [str(h.fit.stop) for h in term.heads],
                        "gains": [h.fit.last_gain for h in term.heads],
                        "entropy": term.entropy, "protocol": term.protocol,
                        "saturated": term.saturated,
                    }  # fmt: skip
                results[key] = row
                print(
                    f"{key}: suff {row['v_suff']['value']:.3f} ({row['v_suff']['certified']}) "
                    f"min {row['v_min']['value']:.3f} ({row['v_min']['certified']}) "
                    f"cpu {row['cpu_s']:.0f} s wall {row['wall_s']:.0f} s",
                    flush=True,
                )
                args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
