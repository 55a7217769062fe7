"""Does the batching mode change a 𝒱-information value? vmap against the loop, same seed.

    python benchmarks/vinfo_batching.py [--layer 1] [--seed 5]

f₋ (`mnistnet`) trained 2 epochs on the bundled demo subset, then one measurement of
`--layer` on the train split with the default decoder configuration, three times: batching
"vmap", "loop", and "loop" again. The two modes compute the same update up to rounding; this
prints how far the values and the heads' stopping epochs end up apart, and whether a repeat of
the same mode is bit-identical. Raw results: benchmarks/out/vinfo_batching.json.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch

from raycompress.data import load_dataset
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.vinfo import VInfoConfig, measure_vinfo
from raycompress.models import build_model, make_spec
from raycompress.schema import Quantity
from raycompress.seeds import Stream, derive_seed
from raycompress.training import Run, TrainConfig

OUT = Path(__file__).resolve().parent / "out" / "vinfo_batching.json"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layer", type=int, default=1)
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(2)
    data = load_dataset("fashion-mnist-demo")
    spec = make_spec("mnistnet", data.input_shape, data.num_classes)
    model = build_model(spec, seed=derive_seed(0, Stream.MODEL_INIT))  # as a run of seed 0
    run = Run(model, data, TrainConfig(seed=0, max_epochs=2))
    run.step(), run.step()
    rows = []
    for batching in ("vmap", "loop", "loop"):
        start = time.perf_counter()
        out = measure_vinfo(
            model.encoder(args.layer), partial(model.fresh_decoder, args.layer), data.train,
            data.num_classes, VInfoConfig(DecoderConfig(protocol="thesis", batching=batching)),
            seed=args.seed,
        )  # fmt: skip
        suff, digits = (out.terms[q].heads for q in (Quantity.SUFFICIENCY, Quantity.MINIMALITY))
        row = {
            "batching": batching, "seconds": time.perf_counter() - start,
            "v_suff": out.value(Quantity.SUFFICIENCY), "v_min": out.value(Quantity.MINIMALITY),
            "v_min_digits": [h.bits for h in digits],
            "epochs": [h.fit.epochs for h in (*suff, *digits)],
        }  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    vmap, loop, again = rows
    summary = {
        "layer": args.layer, "seed": args.seed, "rows": rows,
        "max_abs_diff_vmap_loop_bits": max(
            abs(a - b) for a, b in zip(
                [vmap["v_suff"], vmap["v_min"], *vmap["v_min_digits"]],
                [loop["v_suff"], loop["v_min"], *loop["v_min_digits"]], strict=True,
            )
        ),
        "loop_repeat_identical": {k: v for k, v in loop.items() if k != "seconds"}
        == {k: v for k, v in again.items() if k != "seconds"},
    }  # fmt: skip
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
