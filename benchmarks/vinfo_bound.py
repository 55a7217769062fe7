"""How fast could one 𝒱-information measurement of f₋ be on this CPU? A floating-point bound.

    python benchmarks/vinfo_bound.py [--ours benchmarks/out/vinfo_speed_auto.json]

The goal is ≥ 10× less time per measurement than the thesis' protocol (encoder re-run at
every decoder step, 4 heads each trained a fixed 50 epochs). Caching removes the encoder's
work; what is left is the decoders' own training, which both protocols must do. This script
counts that work and asks what the best possible time would be.

1. FLOPs, counted by `torch.utils.flop_counter.FlopCounterMode` (matrix products and
   convolutions, forward and backward; batch norm, pooling and the optimiser are not counted,
   so every figure below is a lower bound of the work) for f₋ (`mnistnet`, 1×28×28, 10
   classes) at N = 10 000 samples per split, batch 400 (25 steps per epoch):
     reference, per (layer, split): 4 heads × (50 epochs × 25 × (encoder forward + decoder
       step) + scoring: 25 × (encoder + decoder forward));
     ours, per (layer, split): the encoder once + Σ_heads epochs × 25 × decoder step + scoring,
       with each head's epochs as our default configuration ran them (from part "ours" of
       vinfo_speed.py: --ours JSON).
2. The machine's best rate: the median of 5 float32 2048×2048 matrix products with 2 threads.
3. Bound: ours' FLOPs ÷ that rate = the least time our measurement could take here with
   perfect kernels; against the reference's time extrapolated from its measured epochs
   (vinfo_speed.py part "budget") = the largest speed-up reachable at these decoder epochs.

Layer 0 (measured once per run and reused) is left out, as in the recorded comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from raycompress.metrics.vinfo import head_seeds
from raycompress.models import build_model, make_spec
from raycompress.seeds import BenchmarkStream, Stream, derive_seed

OUT = Path(__file__).resolve().parent / "out"
N, BATCH, REFERENCE_EPOCHS, HEADS = 10_000, 400, 50, 4
STEPS = N // BATCH
SEED = 0  # every stream below is derived from it by name (`seeds`)


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def per_batch(layer: int) -> dict[str, int]:
    """FLOPs of one batch: encoder forward, decoder training step, decoder forward."""
    spec = make_spec("mnistnet", (1, 28, 28), 10)
    model = build_model(spec, seed=derive_seed(SEED, Stream.MODEL_INIT))
    generator = torch.Generator().manual_seed(derive_seed(SEED, BenchmarkStream.SYNTHETIC))
    x = torch.randn(BATCH, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (BATCH,), generator=generator)
    encoder, decoder = model.encoder(layer), model.fresh_decoder(layer, head_seeds(1, SEED)[0])
    with torch.no_grad():
        h = encoder(x)

    def step() -> None:
        F.cross_entropy(decoder(h), y).backward()

    def forward() -> None:
        with torch.no_grad():
            decoder(h)

    def encode() -> None:
        with torch.no_grad():
            encoder(x)

    return {"encode": flops(encode), "step": flops(step), "forward": flops(forward)}


def reference_seconds(budgets: list[Path]) -> float:
    """The reference protocol's time without layer 0, extrapolated as vinfo_speed.py does:
    per (layer, split), (c)'s seconds per epoch × 50 + (c)'s scoring; a split not measured
    takes the train split's cost."""
    cells = {}
    for path in budgets:
        for row in json.loads(path.read_text())["budget"]["rows"]:
            c = row["c"]
            cells[row["layer"], row["split"]] = c["per_epoch_s"] * REFERENCE_EPOCHS + c["score_s"]
    layers = {layer for layer, _ in cells if layer > 0}
    return sum(
        cells.get((layer, split), cells[layer, "train"])
        for layer in layers
        for split in ("train", "test")
    )


def gemm_rate(size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of float32 size×size matrix products: this CPU's practical peak."""
    generator = torch.Generator().manual_seed(derive_seed(SEED, BenchmarkStream.SYNTHETIC))
    a, b = (torch.randn(size, size, generator=generator) for _ in range(2))
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ours", type=Path, default=OUT / "vinfo_speed_auto.json")
    p.add_argument(
        "--budget", type=Path, nargs="+",
        default=[OUT / "vinfo_speed_budget.json", OUT / "vinfo_speed_budget_l1.json"],
        help="part-budget JSONs of vinfo_speed.py; a later file's layers replace an earlier's",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=OUT / "vinfo_bound.json")
    args = p.parse_args()
    torch.set_num_threads(2)
    ours_rows = json.loads(args.ours.read_text())["ours"]["rows"]
    reference_s = reference_seconds(args.budget)
    rate = gemm_rate()
    rows, ref_total, ours_total = [], 0, 0
    for row in ours_rows:
        cost = per_batch(row["layer"])
        scoring = STEPS * (cost["encode"] + cost["forward"])
        ref = HEADS * (REFERENCE_EPOCHS * STEPS * (cost["encode"] + cost["step"]) + scoring)
        ours = (
            STEPS * cost["encode"]
            + sum(row["head_epochs"]) * STEPS * cost["step"]
            + HEADS * STEPS * cost["forward"]
        )
        ref_total, ours_total = ref_total + ref, ours_total + ours
        rows.append({**{k: row[k] for k in ("layer", "split", "head_epochs", "seconds")},
                     "per_batch_flops": cost, "reference_gflop": ref / 1e9,
                     "ours_gflop": ours / 1e9, "ours_bound_s": ours / rate,
                     "ours_achieved_gflops": ours / row["seconds"] / 1e9})  # fmt: skip
        print(
            f"l={row['layer']} {row['split']:5s} step {cost['step'] / 1e9:.3f} GFLOP, encode "
            f"{cost['encode'] / 1e9:.3f}; reference {ref / 1e12:.2f} TFLOP, ours "
            f"{ours / 1e12:.2f} TFLOP ({row['seconds']:.0f} s measured = "
            f"{ours / row['seconds'] / 1e9:.0f} GFLOP/s)",
            flush=True,
        )
    summary = {
        "gemm_gflops": rate / 1e9,
        "reference_tflop": ref_total / 1e12,
        "ours_tflop": ours_total / 1e12,
        "flop_ratio_reference_over_ours": ref_total / ours_total,
        "ours_bound_s": ours_total / rate,
        "reference_extrapolated_s": reference_s,
        "largest_speedup_at_peak": reference_s / (ours_total / rate),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
