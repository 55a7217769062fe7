"""What explains f₊'s accuracy gap to the thesis (91.0 %)? Each convention of the thesis' code
against ours, over seeds. Not a test.

    python benchmarks/accuracy_conventions.py [--seeds 0 1 2] [--models cifarnet mnistnet]
        [--data-dir DIR] [--out FILE.json]

Conventions: the thesis' code differs from ours in three ways, tried alone and in every
combination ("+" joins them; "thesis" is all three):
    ours        float32 training, pixels in [0, 1], eager
    pixels255   pixels left in 0..255
    bf16        bfloat16 autocast, float32 master weights (`precision: bf16`; not the thesis')
    bf16-true   weights, gradients and AdamW state in bfloat16, as the thesis' code trains
    compile     torch.compile (inductor) on the training forward
    thesis      pixels255+bf16-true+compile, the thesis' code's whole recipe

Each run: real Fashion-MNIST, the seed's 10 000-image training subset (as a trial draws it)
and the 10 000 test images; the thesis' protocol (AdamW 2e-3, batch 400, until the epoch's
mean step loss ≤ 0.02 or 50 epochs), channels_last; test accuracy at the stopping epoch from
the product's measurement pass (float32, the class-mixed batch order). Raw results in
benchmarks/out/accuracy_conventions.json; figures in docs/reproduction.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import torch

from raycompress.compute import Compiled, Compute, prepare
from raycompress.data import Split, load_dataset
from raycompress.metrics.collapse import measure_collapse
from raycompress.models import build_model, make_spec
from raycompress.stopping import stop_reason
from raycompress.training import TrainConfig, make_optimizer, train_epoch

OUT = Path(__file__).resolve().parent / "out" / "accuracy_conventions.json"
PARTS = ("pixels255", "bf16", "bf16-true", "compile")
CONVENTIONS = (
    "ours", "pixels255", "bf16", "bf16-true", "compile", "pixels255+bf16-true",
    "pixels255+compile", "bf16-true+compile", "thesis",
)  # fmt: skip


def parts(convention: str) -> set[str]:
    """The conventions `convention` combines: "thesis" is the thesis' three, "ours" none."""
    if convention == "thesis":
        return {"pixels255", "bf16-true", "compile"}
    named = set() if convention == "ours" else set(convention.split("+"))
    if unknown := named - set(PARTS):
        raise SystemExit(f"unknown convention part(s) {sorted(unknown)}: use {', '.join(PARTS)}")
    return named


def one_run(model_name: str, convention: str, seed: int, data_dir: str) -> dict:
    data = load_dataset("fashion-mnist", data_dir, download=False, train_size=10_000,
                        subset_seed=seed)  # fmt: skip
    used = parts(convention)
    scale = 255.0 if "pixels255" in used else 1.0
    train = Split(data.train.x * scale, data.train.y)
    test = Split(data.test.x * scale, data.test.y)
    how = Compute("bf16" if "bf16" in used else "fp32", compile="compile" in used)
    spec = make_spec(model_name, data.input_shape, data.num_classes)
    model = prepare(build_model(spec, seed=seed), how)
    if "bf16-true" in used:
        model = model.to(torch.bfloat16)
        train = Split(train.x.to(torch.bfloat16), train.y)
    config = TrainConfig(seed=seed)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    forward = Compiled(model, how.compile)
    start = time.perf_counter()
    for epoch in range(1, config.max_epochs + 1):
        loss = train_epoch(model, optimizer, train, config.batch_size, generator, how, forward)
        reason = stop_reason(loss, epoch, loss_threshold=config.loss_threshold,
                             max_epochs=config.max_epochs)  # fmt: skip
        if reason:
            break
    seconds = time.perf_counter() - start
    report = measure_collapse(model.float(), test, data.num_classes)
    return {
        "model": model_name, "convention": convention, "seed": seed, "epochs": epoch,
        "stop": reason, "last_step_loss": loss, "test_accuracy": report.accuracy,
        "test_loss": report.loss, "train_s": seconds, "compile_fallback": forward.fallback,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", default=["cifarnet", "mnistnet"])
    p.add_argument("--conventions", nargs="+", default=list(CONVENTIONS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for convention in args.conventions:
        parts(convention)  # a misspelt convention fails here, before hours of training
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    runs = []
    for model_name in args.models:
        for seed in args.seeds:
            for convention in args.conventions:
                runs.append(one_run(model_name, convention, seed, args.data_dir))
                print(json.dumps(runs[-1]), flush=True)
                write(args.out, started, runs)  # each finished run kept, however far it gets
    for key, s in write(args.out, started, runs).items():
        print(f"{key:30s} {100 * s['mean']:.2f} ± {100 * s['sd']:.2f} % (n = {s['n']})")


def write(out: Path, started: str, runs: list[dict]) -> dict:
    """Write the runs and their mean ± sd test accuracy per (model, convention) to `out`;
    return that summary."""
    summary = {}
    for key in dict.fromkeys(f"{r['model']} {r['convention']}" for r in runs):
        accs = [r["test_accuracy"] for r in runs if f"{r['model']} {r['convention']}" == key]
        sd = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        summary[key] = {"mean": statistics.mean(accs), "sd": sd, "n": len(accs)}
    out.parent.mkdir(exist_ok=True)
    record = {"started": started, "torch": torch.__version__, "runs": runs, "summary": summary}
    out.write_text(json.dumps(record, indent=1))
    return summary


if __name__ == "__main__":
    main()
