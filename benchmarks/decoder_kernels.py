"""Where an f₋ decoder step spends its time, and what bf16 can buy there: the bound behind the
whole f₋ measurement's ratio in bf16 + channels_last. Not a test.

    python benchmarks/decoder_kernels.py [--repeats 15]

f₋'s layer-1 decoders (blocks 2–3 and the head: a 5×5 convolution 16→32 on 9×9 maps, one
32→64 on 3×3, batch norm, max-pooling), four heads as a measurement trains them (sufficiency
and three minimality digits; `decoders.StackedDecoders`, the CPU's loop), batch 400, random
features of the layer-1 shape. For each compute variant (fp32, fp32 + channels_last, bf16,
bf16 + channels_last) and for 1 and 2 threads:

- the whole decoder step (forward, backward, AdamW), median of `--repeats`;
- the four heads' two convolutions alone, forward and backward (the first needs no input
  gradient), one after another as the loop runs them;
- the same convolutions with the four heads merged: one 16→128 convolution on the shared input,
  then a grouped (4 groups) 32→64 one — the kernel-level form of batching the heads.

Variants run round-robin. Ratios are today's time (fp32, default memory format, the heads'
convolutions one after another) over the variant's, per thread count.
Raw: benchmarks/out/decoder_kernels.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from raycompress.compute import Compute, autocast, memory_format
from raycompress.metrics.decoders import StackedDecoders
from raycompress.metrics.vinfo import head_seeds
from raycompress.models import build_model, make_spec
from raycompress.seeds import BenchmarkStream, Stream, derive_seed

OUT = Path(__file__).resolve().parent / "out" / "decoder_kernels.json"
VARIANTS = {
    "fp32": Compute("fp32", channels_last=False),
    "fp32+cl": Compute("fp32", channels_last=True),
    "bf16": Compute("bf16", channels_last=False),
    "bf16+cl": Compute("bf16", channels_last=True),
}
HEADS, BATCH, LAYER = 4, 400, 1
SEED = 0  # every stream below is derived from it by name (`seeds`)


def decoder_step(how: Compute) -> Callable[[], None]:
    """One training step of the four layer-1 decoders, as `decoders.train_heads` runs it."""
    spec = make_spec("mnistnet", (1, 28, 28), 10)
    model = build_model(spec, seed=derive_seed(SEED, Stream.MODEL_INIT))
    generator = torch.Generator().manual_seed(derive_seed(SEED, BenchmarkStream.SYNTHETIC))
    with torch.no_grad():
        x = torch.rand(BATCH, 1, 28, 28, generator=generator)
        h = memory_format(model.encoder(LAYER)(x), how)
    y = torch.randint(0, 10, (BATCH, HEADS), generator=generator)
    seeds = head_seeds(HEADS, SEED)  # as a measurement of seed SEED initialises its decoders
    stack = StackedDecoders([model.fresh_decoder(LAYER, seed) for seed in seeds])
    stack.mode = "loop"
    stack.train()
    optimizer = torch.optim.AdamW(stack.params.values(), lr=2e-3)
    heads = torch.arange(HEADS)

    def step() -> None:
        with autocast(how, "cpu"):
            logits = stack(h, heads)
        losses = F.cross_entropy(logits.float().permute(1, 2, 0), y, reduction="none").mean(0)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()

    return step


def convolutions(how: Compute, merged: bool) -> Callable[[], None]:
    """The four heads' two convolutions, forward and backward: per head, or merged."""
    dtype = torch.bfloat16 if how.precision == "bf16" else torch.float32
    generator = torch.Generator().manual_seed(derive_seed(SEED, BenchmarkStream.SYNTHETIC))

    def tensor(*shape: int, grad: bool = False) -> torch.Tensor:
        drawn = torch.randn(*shape, dtype=dtype, generator=generator)
        return memory_format(drawn, how).requires_grad_(grad)

    x1 = tensor(BATCH, 16, 9, 9)  # the frozen features: no input gradient
    x2 = tensor(BATCH, 32 * HEADS if merged else 32, 3, 3, grad=True)
    copies = 1 if merged else HEADS
    w1 = [tensor(32 * HEADS // copies, 16, 5, 5, grad=True) for _ in range(copies)]
    w2 = [tensor(64 * HEADS // copies, 32, 5, 5, grad=True) for _ in range(copies)]
    groups = HEADS if merged else 1

    def run() -> None:
        out = [F.conv2d(x1, w, padding=2) for w in w1]
        out += [F.conv2d(x2, w, padding=2, groups=groups) for w in w2]
        torch.stack([o.float().sum() for o in out]).sum().backward()

    return run


def timed(cases: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per case, round-robin after two warm-up calls each."""
    for fn in cases.values():
        fn(), fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result: dict = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        cases = {}
        for v, how in VARIANTS.items():
            cases[f"{v} step"] = decoder_step(how)
            cases[f"{v} convs"] = convolutions(how, merged=False)
            cases[f"{v} convs merged"] = convolutions(how, merged=True)
        seconds = timed(cases, args.repeats)
        rows = {}
        for v in VARIANTS:
            rows[v] = {  # merged convolutions against today's: fp32, one head after another
                kind: {"ms": 1e3 * seconds[f"{v} {kind}"],
                       "ratio": seconds[f"fp32 {base}"] / seconds[f"{v} {kind}"]}
                for kind, base in (("step", "step"), ("convs", "convs"), ("convs merged", "convs"))
            }  # fmt: skip
            rows[v]["conv_share_of_step"] = seconds[f"{v} convs"] / seconds[f"{v} step"]
            print(f"threads {threads} {v:8s} " + json.dumps(rows[v]), flush=True)
        result[f"{threads} threads"] = rows
    record = {"started": started, "torch": torch.__version__, "repeats": args.repeats,
              "result": result}  # fmt: skip
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
