"""What precision, channels_last and torch.compile buy: training steps, epochs and whole
𝒱-information measurements of f₊ (cifarnet) and f₋ (mnistnet), each lever against today's
path (fp32, default memory format, eager) in the same run. Not a test.

    python benchmarks/precision.py --part steps         training: per step and per epoch
    python benchmarks/precision.py --part vinfo-f-      f₋: one whole measurement per variant
    python benchmarks/precision.py --part vinfo-f+      f₊: every head 2 decoder epochs
    python benchmarks/precision.py --part vinfo-f+full  f₊: one whole measurement, bf16+cl
    python benchmarks/precision.py --part numbers       what bf16 does to the numbers
    python benchmarks/precision.py --part budgets       f₋: the cost of the budget curves
        [--data-dir DIR] [--checkpoint run.pt] [--variants V …] [--layers L …] [--threads T]

Real Fashion-MNIST, 10 000 training (a seeded subset) and 10 000 test images, batch 400,
torch.set_num_threads(2), wall time by time.perf_counter. Variants run round-robin, so that
the machine's drift falls on all of them alike; each ratio is today's time over the variant's.
Every random stream comes from seed 0 by name (`seeds`): initialisations and training orders as
a run of seed 0 draws them, each timed epoch's order from `BenchmarkStream.TIMED_ORDER`.

A 𝒱-information measurement: layers 1–3 on both splits (layer 0 is measured once per run and
skipped here), the default `VInfoConfig` (every head ≤ 50 decoder epochs, stopping on its loss
threshold or a plateau), seeds as in a run (`plan.measurement_seed`, run seed 0, epoch 2),
on a network trained 2 epochs in fp32 — or the weights of `--checkpoint` (a run's `run.pt`).
Only the decoders' compute differs between variants, so the values differ by rounding, and the
script prints by how many bits. Compile time is inside the measured time.

Part "budgets" times the f₋ measurement (bf16 + channels_last) with the decoders scored at the
cap only and at the default budgets (5, 10, 20, 50): the cost of the budget curves.

Part "numbers" trains f₋ and f₊ from seed 0 to the protocol's stop twice, in fp32 and in bf16
(both channels_last, the default), and reports test accuracy, tr(Σ_W Σ_B⁺) of every layer,
and 𝒱-information at the stopping epoch with decoders in the same precision: layers 1–3 of f₋
and layer 3 of f₊ (f₊'s layers 1–2 cost over an hour in fp32 here), both splits. Figures in
docs/benchmarks.md ("Precision"); raw output in benchmarks/out/precision_<part>.json.
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

from raycompress.compute import Compiled, Compute, prepare
from raycompress.data import Dataset, load_dataset
from raycompress.metrics.decoders import DecoderConfig
from raycompress.metrics.vinfo import VInfoConfig
from raycompress.models import LayeredNet, build_model, make_spec
from raycompress.plan import Measurement, measure_layer, measurement_seed
from raycompress.record import STATE_FILE
from raycompress.sampling import Split
from raycompress.schema import HEADLINE, Quantity
from raycompress.seeds import BenchmarkStream, Stream, derive_seed
from raycompress.training import TrainConfig, make_optimizer, run_epochs, train_epoch

OUT = Path(__file__).resolve().parent / "out"
SEED = 0  # the run seed every stream here is derived from
TODAY = "fp32"
VARIANTS = {
    TODAY: Compute("fp32", channels_last=False),
    "fp32+cl": Compute("fp32", channels_last=True),
    "bf16": Compute("bf16", channels_last=False),
    "bf16+cl": Compute("bf16", channels_last=True),
    "bf16+cl+compile": Compute("bf16", channels_last=True, compile=True),
}
MODELS = {"f+": "cifarnet", "f-": "mnistnet"}


def fresh(
    name: str, data: Dataset, how: Compute
) -> tuple[LayeredNet, torch.optim.Optimizer, Compiled]:
    """A freshly initialised network prepared for `how`, its optimiser and its forward."""
    spec = make_spec(name, data.input_shape, data.num_classes)
    model = prepare(build_model(spec, seed=derive_seed(SEED, Stream.MODEL_INIT)), how)
    return model, make_optimizer(model, TrainConfig()), Compiled(model, how.compile)


def steps(data: Dataset, repeats: int) -> dict:
    """Per step: the median of `repeats` single-batch epochs after one warm-up (which holds
    the compilation); per epoch: the median of `repeats` whole epochs, round-robin."""
    batch = Split(data.train.x[:400], data.train.y[:400])
    out: dict = {}
    for short, name in MODELS.items():
        setups = {v: fresh(name, data, how) for v, how in VARIANTS.items()}
        times: dict[str, dict[str, list[float]]] = {v: {"step": [], "epoch": []} for v in VARIANTS}
        first = {}
        for kind, split, count in (("step", batch, repeats + 1), ("epoch", data.train, repeats)):
            for i in range(count):
                for v, how in VARIANTS.items():
                    model, optimizer, forward = setups[v]
                    order = derive_seed(SEED, BenchmarkStream.TIMED_ORDER, i)
                    generator = torch.Generator().manual_seed(order)
                    start = time.perf_counter()
                    train_epoch(model, optimizer, split, 400, generator, how, forward)
                    seconds = time.perf_counter() - start
                    if kind == "step" and i == 0:
                        first[v] = seconds  # warm-up: compilation, allocator
                    else:
                        times[v][kind].append(seconds)
        base = {kind: statistics.median(times[TODAY][kind]) for kind in ("step", "epoch")}
        out[short] = {
            v: {
                "first_step_s": first[v],
                **{f"{kind}_s": statistics.median(t) for kind, t in times[v].items()},
                **{
                    f"{kind}_speedup": base[kind] / statistics.median(t)
                    for kind, t in times[v].items()
                },
                "compile_fallback": setups[v][2].fallback,
            }
            for v in VARIANTS
        }
        for v, row in out[short].items():
            print(f"{short} {v:16s} " + json.dumps(row), flush=True)
    return out


def trained(name: str, data: Dataset, checkpoint: Path | None) -> LayeredNet:
    spec = make_spec(name, data.input_shape, data.num_classes)
    model = build_model(spec, seed=derive_seed(SEED, Stream.MODEL_INIT))
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        return model
    optimizer = make_optimizer(model, TrainConfig())
    generator = torch.Generator().manual_seed(derive_seed(SEED, Stream.TRAIN_ORDER))
    for _ in range(2):
        train_epoch(model, optimizer, data.train, 400, generator)
    return model


def measurement(
    model: LayeredNet,
    data: Dataset,
    decoder: DecoderConfig,
    variants: list[str],
    layers: tuple[int, ...] = (1, 2, 3),
) -> dict:
    """One measurement (`layers`, both splits) per variant; values and head epochs. Seeds as in
    a run's measurement at epoch 2 (`plan.measurement_seed`, run seed 0)."""
    splits = {"train": data.train, "test": data.test}
    state = {k: v.detach() for k, v in model.state_dict().items()}
    out = {}
    for v in variants:
        how = VARIANTS[v]
        config = VInfoConfig(DecoderConfig(**{**decoder.__dict__, "compute": how}))
        start = time.perf_counter()
        planned = [
            Measurement(layer, split, measurement_seed(SEED, 2, layer, split))
            for layer, split in itertools.product(layers, splits)
        ]
        values = {
            (m.layer, m.split): measure_layer(model.spec, state, m, splits[m.split], config)
            for m in planned
        }
        seconds = time.perf_counter() - start
        rows = {
            f"{layer}/{split}": {
                **{q.value: result.value(q) for q in HEADLINE},
                # the sufficiency head, then one minimality head per relabelling digit
                "head_epochs": [
                    h.fit.epochs
                    for q in HEADLINE
                    if q in result.terms
                    for h in result.terms[q].heads
                ],
                "decoder_compute": result.decoders.compute if result.decoders else None,
            }
            for (layer, split, _), result in values.items()
        }
        out[v] = {"seconds": seconds, "rows": rows}
        print(f"{v:16s} {seconds:8.1f} s " + json.dumps(rows), flush=True)
    base = out[variants[0]]
    for v in variants[1:]:
        out[v]["speedup"] = base["seconds"] / out[v]["seconds"]
        out[v]["max_abs_bits_vs_" + variants[0]] = max(
            abs(out[v]["rows"][key][term] - row[term])
            for key, row in base["rows"].items()
            for term in (q.value for q in HEADLINE)
        )
    return out


def numbers(data: Dataset) -> dict:
    """The same seed in fp32 and in bf16: what the run reports at its stopping epoch."""
    out: dict = {}
    for short, name, layers in (("f-", "mnistnet", (1, 2, 3)), ("f+", "cifarnet", (3,))):
        for precision in ("fp32", "bf16"):
            how = Compute(precision)
            spec = make_spec(name, data.input_shape, data.num_classes)
            model = build_model(spec, seed=derive_seed(SEED, Stream.MODEL_INIT))
            start = time.perf_counter()
            last = list(run_epochs(model, data, TrainConfig(seed=SEED, compute=how)))[-1]
            trained_s = time.perf_counter() - start
            splits = {"train": data.train, "test": data.test}
            config = VInfoConfig(DecoderConfig(protocol="thesis", compute=how))
            state = {k: v.detach() for k, v in model.state_dict().items()}
            vinfo = {}
            for layer, split in itertools.product(layers, splits):
                m = Measurement(layer, split, measurement_seed(SEED, last.epoch, layer, split))
                v = measure_layer(model.spec, state, m, splits[split], config)
                vinfo[f"{layer}/{split}"] = [
                    v.value(Quantity.SUFFICIENCY),
                    v.value(Quantity.MINIMALITY),
                ]
            row = {
                "epochs": last.epoch, "stop": last.stop_reason, "train_s": trained_s,
                "test_accuracy": last.test.accuracy, "train_accuracy": last.train.accuracy,
                "nc_trace": {f"{layer}/{split}": getattr(last, split).layers[layer].nc_trace
                             for layer in last.train.layers for split in splits},
                "vinfo": vinfo,
            }  # fmt: skip
            out[f"{short} {precision}"] = row
            print(f"{short} {precision} " + json.dumps(row), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--part",
        required=True,
        choices=("steps", "vinfo-f-", "vinfo-f+", "vinfo-f+full", "numbers", "budgets"),
    )
    p.add_argument(
        "--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    p.add_argument("--checkpoint", type=Path, help=f"a run's {STATE_FILE} to measure instead")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS),
        help="parts vinfo-f- (default: all but fp32+cl) and vinfo-f+full (default: bf16+cl)",
    )  # fmt: skip
    p.add_argument(
        "--layers", nargs="+", type=int, default=[1, 2, 3], help="parts vinfo-f- and vinfo-f+full"
    )
    p.add_argument("--suffix", default="", help="appended to the output file's name")
    p.add_argument("--threads", type=int, default=2, help="torch threads (a sweep's tasks: 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    layers = tuple(args.layers)
    data = load_dataset("fashion-mnist", args.data_dir, download=False, train_size=10_000)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    if args.part == "steps":
        result = steps(data, args.repeats)
    elif args.part == "vinfo-f-":
        model = trained("mnistnet", data, args.checkpoint)
        variants = args.variants or ["fp32", "bf16", "bf16+cl", "bf16+cl+compile"]
        result = measurement(model, data, DecoderConfig(protocol="thesis"), variants, layers)
    elif args.part == "vinfo-f+":
        capped = DecoderConfig(protocol="thesis", max_epochs=2, loss_threshold=0.0, patience=10**6)
        model = trained("cifarnet", data, args.checkpoint)
        result = measurement(model, data, capped, ["fp32", "bf16", "bf16+cl", "bf16+cl+compile"])
    elif args.part == "budgets":
        model = trained("mnistnet", data, args.checkpoint)
        how = VARIANTS["bf16+cl"]
        budgets = {"cap only": (50,), "default budgets": None}
        result = {name: [] for name in budgets}
        for _ in range(2):  # alternated, so that the machine's drift falls on both alike
            for name, points in budgets.items():
                config = DecoderConfig(protocol="thesis", compute=how, budgets=points)
                result[name].append(measurement(model, data, config, ["bf16+cl"])["bf16+cl"])
        seconds = {name: statistics.median(r["seconds"] for r in runs)
                   for name, runs in result.items()}  # fmt: skip
        result["overhead"] = seconds["default budgets"] / seconds["cap only"] - 1
        print(f"budget curves cost {100 * result['overhead']:.1f} % of a measurement", flush=True)
    elif args.part == "vinfo-f+full":
        model = trained("cifarnet", data, args.checkpoint)
        result = measurement(
            model, data, DecoderConfig(protocol="thesis"), args.variants or ["bf16+cl"], layers
        )
    else:
        result = numbers(data)
    record = {
        "started": started, "part": args.part, "checkpoint": str(args.checkpoint or ""),
        "layers": list(layers),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "result": result,
    }  # fmt: skip
    OUT.mkdir(exist_ok=True)
    name = args.part.replace("+", "plus").replace("-", "_")
    (OUT / f"precision_{name}{args.suffix}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
