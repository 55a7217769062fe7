"""What explains f₊'s accuracy gap to the thesis (91.0 %)? Each convention of the thesis' code
against ours, over seeds. Not a test.

    python benchmarks/accuracy_conventions.py [--seeds 0 1 2] [--models cifarnet mnistnet]
        [--conventions ours thesis ...] [--threads 2] [--data-dir DIR] [--out FILE.json]
    python benchmarks/accuracy_conventions.py --summarise FILE.json ...   (train nothing)

Conventions: the thesis' code differs from ours in three ways, tried alone and in every
combination ("+" joins them; "thesis" is all three), each through the trial setting that
offers it:
    ours        float32 training, pixels in [0, 1], eager (the defaults)
    pixels255   pixels left in 0..255 (`input_scale: 255`)
    bf16        bfloat16 autocast, float32 master weights (`precision: bf16`; not the thesis')
    bf16-true   weights, gradients and AdamW state in bfloat16, as the thesis' code trains
                (`precision: bf16-true`)
    compile     torch.compile (inductor) on the training forward (`compile: true`)
    thesis      pixels255+bf16-true+compile, the thesis' code's whole recipe
                (`trial.THESIS_RECIPE`; `python -m raycompress.run --thesis-recipe`)

Each run: real Fashion-MNIST, the seed's 10 000-image training subset (as a trial draws it)
and the 10 000 test images; the thesis' protocol (AdamW 2e-3, batch 400, until the epoch's
mean step loss ≤ 0.02 or 50 epochs), channels_last; test accuracy at the stopping epoch from
the product's measurement pass (float32, the class-mixed batch order). Raw results in
benchmarks/out/accuracy_conventions.json; figures in docs/reproduction.md.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import statistics
import time
from pathlib import Path

import torch

from raycompress.compute import float32
from raycompress.metrics.collapse import measure_collapse
from raycompress.stopping import stop_reason
from raycompress.training import Run, train_epoch
from raycompress.trial import THESIS_RECIPE, Trial

OUT = Path(__file__).resolve().parent / "out" / "accuracy_conventions.json"
PARTS = {  # each convention of the thesis' code as the trial setting that offers it
    "pixels255": {"input_scale": 255},
    "bf16": {"precision": "bf16"},
    "bf16-true": {"precision": "bf16-true"},
    "compile": {"compile": True},
}
CONVENTIONS = (
    "ours", "pixels255", "bf16", "bf16-true", "compile", "pixels255+bf16-true",
    "pixels255+compile", "bf16-true+compile", "thesis",
)  # fmt: skip


def parts(convention: str) -> frozenset[str]:
    """The conventions `convention` joins: "ours" none, "thesis" those `THESIS_RECIPE` holds."""
    if convention == "thesis":
        return frozenset(p for p, kv in PARTS.items() if kv.items() <= THESIS_RECIPE.items())
    named = frozenset() if convention == "ours" else frozenset(convention.split("+"))
    if unknown := named - set(PARTS):
        raise SystemExit(f"unknown convention part(s) {sorted(unknown)}: use {', '.join(PARTS)}")
    return named


def settings(convention: str) -> dict:
    """The trial settings of `convention` (the defaults for "ours")."""
    return {name: value for part in parts(convention) for name, value in PARTS[part].items()}


def effects(runs: list[dict], model: str) -> dict[str, list[float]]:
    """Each of the thesis' conventions' main effect on `model`'s test accuracy, per seed that
    ran all 8 combinations of the three: the mean over the other two's 4 combinations of
    accuracy with it minus accuracy without it (paired: same seed, same other settings)."""
    recipe = parts("thesis")
    cells = {(r["seed"], parts(r["convention"])): r["test_accuracy"]
             for r in runs if r["model"] == model}  # fmt: skip
    combos = [frozenset(c) for n in range(4) for c in itertools.combinations(sorted(recipe), n)]
    seeds = sorted({s for s, _ in cells if all((s, c) in cells for c in combos)})
    return {
        part: [
            statistics.mean(cells[s, c | {part}] - cells[s, c] for c in combos if part not in c)
            for s in seeds
        ]
        for part in sorted(recipe)
    }


def one_run(model_name: str, convention: str, seed: int, data_dir: str) -> dict:
    """Train as a trial with `convention`'s settings would, without its per-epoch measurement;
    measure the test split once, at the stopping epoch."""
    trial = Trial.from_config({
        "dataset": "fashion-mnist", "model": model_name, "data_dir": data_dir,
        "download": False, "train_size": 10_000, "seed": seed, **settings(convention),
    })  # fmt: skip
    data, model = trial.build("cpu")
    run, config = Run(model, data, trial.train), trial.train
    start = time.perf_counter()
    for epoch in range(1, config.max_epochs + 1):
        loss = train_epoch(model, run.optimizer, data.train, config.batch_size, run.generator,
                           config.compute, run.forward)  # fmt: skip
        reason = stop_reason(loss, epoch, loss_threshold=config.loss_threshold,
                             max_epochs=config.max_epochs)  # fmt: skip
        if reason:
            break
    seconds = time.perf_counter() - start
    report = measure_collapse(float32(model), data.test, data.num_classes)
    return {
        "model": model_name, "convention": convention, "seed": seed, "epochs": epoch,
        "stop": reason, "last_step_loss": loss, "test_accuracy": report.accuracy,
        "test_loss": report.loss, "train_s": seconds, "compile_fallback": run.forward.fallback,
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
    p.add_argument(
        "--summarise", type=Path, nargs="+", metavar="JSON",
        help="train nothing: summarise the runs these files hold, with the main effects",
    )  # fmt: skip
    args = p.parse_args()
    if args.summarise:
        summarise([r for f in args.summarise for r in json.loads(f.read_text())["runs"]])
        return
    torch.set_num_threads(args.threads)
    for convention in args.conventions:
        settings(convention)  # a misspelt convention fails here, before hours of training
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    runs = []
    for model_name in args.models:
        for seed in args.seeds:
            for convention in args.conventions:
                runs.append(one_run(model_name, convention, seed, args.data_dir))
                print(json.dumps(runs[-1]), flush=True)
                write(args.out, started, runs)  # each finished run kept, however far it gets
    write(args.out, started, runs)
    summarise(runs)


def summarise(runs: list[dict]) -> None:
    """Print mean ± sd per (model, convention), then each convention's main effect."""
    for key, s in summary(runs).items():
        print(f"{key:30s} {100 * s['mean']:.2f} ± {100 * s['sd']:.2f} % (n = {s['n']})")
    for model in dict.fromkeys(r["model"] for r in runs):
        for part, by_seed in effects(runs, model).items():
            if len(by_seed) > 1:
                mean, sd = 100 * statistics.mean(by_seed), 100 * statistics.stdev(by_seed)
                each = ", ".join(f"{100 * e:+.2f}" for e in by_seed)
                print(f"{model} main effect of {part:10s} {mean:+.2f} ± {sd:.2f} points "
                      f"(sd over {len(by_seed)} seeds: {each})")  # fmt: skip


def summary(runs: list[dict]) -> dict[str, dict]:
    """Mean, sd and count of the test accuracy per (model, convention)."""
    out = {}
    for key in dict.fromkeys(f"{r['model']} {r['convention']}" for r in runs):
        accs = [r["test_accuracy"] for r in runs if f"{r['model']} {r['convention']}" == key]
        sd = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        out[key] = {"mean": statistics.mean(accs), "sd": sd, "n": len(accs)}
    return out


def write(out: Path, started: str, runs: list[dict]) -> None:
    """Write the runs and their summary (`summary`) to `out`."""
    out.parent.mkdir(exist_ok=True)
    record = {"started": started, "torch": torch.__version__, "runs": runs,
              "summary": summary(runs)}  # fmt: skip
    out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
