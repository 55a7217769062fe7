"""Auditing the converged certificate: does a certified value stay put when its decoder trains
four times longer? (docs/benchmarks.md, "Auditing the certificate").

    OMP_NUM_THREADS=1 nohup nice -n 10 python benchmarks/vinfo_audit.py --family network \
        --epochs 4 --heads 40 > benchmarks/out/vinfo_audit.log 2>&1 &

f₋ (`vinfo_whole_run.py`'s trial: Fashion-MNIST, 10 000 training images, mnistnet, seed 0,
fp32, converged, warm-started, cap 400) is trained here by `training.Run` for `--epochs`
epochs, its 𝒱-information measured every epoch at the family's SGD layers (network: 1–2; the
affine layer 3 has no SGD decoders), both splits — the library's own measurement, under the
rule of `decoders.HeadStopping`. A measured value is the mean of heads (sufficiency: one head;
minimality: one per digit), so the audit is of heads: a seeded sample (`sample_slots`, the
stream `BenchmarkStream.AUDIT_SAMPLE`) of (epoch, layer, split, head) is drawn before the run;
at each sampled measurement the model's weights and the warm decoder state it started from
are kept. Once the run's measurements are done, each sampled head that was certified is
trained again alone (a stack of 1: the heads of a stack share nothing but their batches), from
the same start, on the same features, targets and batch order, with 4× the epochs it used and
no early stop, scored at the budgets of both rules and where its loss first meets the
stopping loss (the ceiling check of `decoders.HeadStopping.confirmed`); shortfall = that
re-run's value (the best of its scores, as the protocol keeps a head) − the certified value.
The re-run also says what the previous rule (the quadrupling without the in-sample conditions)
would have certified on the same trajectory, and at what cost in epochs.

Reduced to fit ≈ 90 minutes of one core, stated in the output's "reduced": the encoder's first
`--epochs` epochs only (a whole run is 26), layers 1–2 (not layer 0: measured once, fresh,
1 500 CPU s), `--heads` sampled heads in sample order until the process is stopped. Raw:
benchmarks/out/vinfo_audit.json (rewritten after every measurement and every re-run) and .log.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raycompress import plan, protocol  # noqa: E402
from raycompress.metrics import decoders, vinfo  # noqa: E402
from raycompress.metrics.decoders import (  # noqa: E402
    DecoderConfig,
    StackedDecoders,
    doublings,
    score_heads,
    train_heads,
)
from raycompress.metrics.families import MLP  # noqa: E402
from raycompress.metrics.vinfo import (  # noqa: E402
    LN2,
    encode,
    entropy_bits,
    head_seeds,
    targets,
)
from raycompress.models import build_model  # noqa: E402
from raycompress.schema import Quantity  # noqa: E402
from raycompress.seeds import BenchmarkStream, Stream, derive_seed  # noqa: E402
from raycompress.stopping import Stop  # noqa: E402
from raycompress.training import Run  # noqa: E402
from raycompress.trial import Trial  # noqa: E402

SEED = 0
HEADS = 4  # a measurement's in-sample heads: sufficiency, then the relabelling's 3 digits
SGD_LAYERS = {"network": (1, 2), "mlp": (0, 1, 2, 3)}  # the layers whose decoders SGD trains
GROWTH = 4  # a re-run trains the head 4× the epochs it used


@dataclass(frozen=True)
class Slot:
    """One decoder of one measurement: head 0 the sufficiency, 1.. the minimality digits."""

    epoch: int
    layer: int
    split: str
    head: int


def sample_slots(
    epochs: int, layers: tuple[int, ...], count: int, seed: int, first: int = 1
) -> list[Slot]:
    """`count` slots of epochs `first`..`epochs` × `layers` × both splits × the heads, in a
    seeded random order (the order in which they are re-run); the same seed gives the same
    sample."""
    slots = [  # layer 0 (x) is measured once, at epoch 1 (`plan.Layer0`)
        Slot(epoch, layer, split, head)
        for epoch in range(first, epochs + 1)
        for layer in layers
        if layer > 0 or epoch == 1
        for split in ("train", "test")
        for head in range(HEADS)
    ]
    generator = torch.Generator().manual_seed(derive_seed(seed, BenchmarkStream.AUDIT_SAMPLE))
    return [slots[i] for i in torch.randperm(len(slots), generator=generator)[:count].tolist()]


@dataclass
class Captured:
    """What a sampled measurement started from and what it certified."""

    spec: Any
    state: dict[str, torch.Tensor]
    measurement: plan.Measurement
    split: Any
    config: Any
    warm: dict[str, dict[str, torch.Tensor]] | None
    start: dict[str, torch.Tensor]  # the in-sample stack as its training began (`vinfo._begin`)
    result: Any = None


def head_fit(result: Any, head: int) -> tuple[Any, float]:
    """The HeadFit and raw bits of in-sample head `head` of a measurement's result."""
    term = result.terms[Quantity.SUFFICIENCY if head == 0 else Quantity.MINIMALITY]
    chosen = term.heads[0 if head == 0 else head - 1]
    return chosen.fit, chosen.bits


def certified_at(
    curve: dict[int, float], losses: list[float], config: DecoderConfig, hit: int | None,
    strict: bool,
) -> int | None:  # fmt: skip
    """The epoch a rule stops this trajectory at: `hit` (the loss threshold, checked against
    the ceiling by the re-run), or the first epoch `decoders.HeadStopping` certifies it,
    replayed on the re-run's epoch losses and its scores at the rule's budgets (the cap: the
    re-run's length); with `strict` the in-sample rule (its start, curve[0], competing where
    the re-run scored one), else the rule for a head scored on another set (the previous
    rule). None: neither within the re-run."""
    least = 4 * max(config.certify_from, config.warm_certify_from)  # the least cap allowed
    rule = dataclasses.replace(config, max_epochs=max(len(losses), least))
    start = torch.tensor([curve[0]]) if 0 in curve else None
    in_sample = decoders.InSample(torch.tensor([math.inf]), start) if strict else None
    stopping = decoders.HeadStopping(1, rule, in_sample)
    stopping.threshold.fill_(-math.inf)  # the loss threshold is `hit`'s, judged by the re-run
    head, budgets = torch.tensor([0]), set(rule.curve()) & set(curve)
    certified = None
    for epoch, loss in enumerate(losses, 1):
        if epoch in budgets:
            stopping.scored(epoch, head, torch.tensor([curve[epoch]]))
        if stopping.update(epoch, head, torch.tensor([loss])):
            certified = epoch if stopping.stopped[0].stop == Stop.CERTIFIED else None
            break
    stops = [e for e in (hit, certified) if e is not None]
    return min(stops) if stops else None


def best_until(curve: dict[int, float], epoch: int, points: set[int]) -> float:
    return max(v for b, v in curve.items() if b <= epoch and (b in points or b == epoch))


def rerun(captured: Captured, head: int, used: int) -> dict[str, Any]:
    """Head `head` of the captured measurement trained alone from the same start for
    GROWTH × `used` epochs, no early stop; its scored curve, losses and seconds."""
    m, config = captured.measurement, captured.config
    model = build_model(captured.spec)
    model.load_state_dict(captured.state)
    decoder = config.decoder.warm() if captured.warm else config.decoder
    features = encode(
        model.encoder(m.layer), captured.split.x, decoder.batch_size,
        derive_seed(m.seed, Stream.ENCODE_ORDER), "cpu", config.cache_bytes, decoder.compute,
    )  # fmt: skip
    columns, _ = targets(captured.split, captured.spec.num_classes, config.monte_carlo, m.seed)
    column = columns[:, head : head + 1]
    make = m.family.decoder(model, m.layer)
    stack = StackedDecoders([make(head_seeds(columns.shape[1], m.seed)[head])])
    stack.load_head(0, {name: t[head] for name, t in captured.start.items()})  # its start
    cap = GROWTH * used
    points = {*doublings(decoder.certify_from, cap), used}
    rule = dataclasses.replace(
        decoder, protocol=protocol.THESIS, max_epochs=cap, loss_threshold=0.0,
        patience=cap + 1, budgets=tuple(sorted(b for b in points if b < cap)) or None,
    )  # fmt: skip
    entropy = entropy_bits(column[:, 0], captured.spec.num_classes)
    order = derive_seed(m.seed, Stream.SCORE_ORDER)
    curve: dict[int, float] = {}

    def at_budget(epoch: int, heads: torch.Tensor) -> torch.Tensor:
        ce = score_heads(stack, features, column, decoder.batch_size, order, "cpu", heads)
        curve[epoch] = entropy - float(ce[0]) / LN2
        return torch.tensor([curve[epoch]], dtype=torch.float64)

    losses: list[float] = []
    threshold, confirmed = [decoder.stop_loss], [None]  # `HeadStopping.confirmed`'s, emulated
    epoch_of = decoders.Steps.epoch

    def recorded(self: decoders.Steps, *args: Any) -> torch.Tensor:  # each epoch's mean loss
        out = epoch_of(self, *args)
        losses.append(float(out[0]))
        if confirmed[0] is None and losses[-1] <= threshold[0]:
            at_budget(len(losses), torch.tensor([0]))
            stack.train()
            if curve[len(losses)] >= entropy - decoder.tolerance:
                confirmed[0] = len(losses)
            threshold[0] /= 2
        return out

    decoders.Steps.epoch = recorded
    start = time.process_time()
    if m.family.name == MLP:  # its start competed as budget 0 (`vinfo._begin`)
        at_budget(0, torch.tensor([0]))
    try:
        generator = torch.Generator().manual_seed(derive_seed(m.seed, Stream.DECODER_ORDER))
        train_heads(stack, features, column, rule, generator, at_budget=at_budget)
    finally:
        decoders.Steps.epoch = epoch_of
    cpu_s = time.process_time() - start
    return {"curve": curve, "losses": losses, "confirmed": confirmed[0], "cpu_s": cpu_s}


def judged(slot: Slot, captured: Captured, run: dict[str, Any]) -> dict[str, Any]:
    """One re-run against its certificate and against the previous rule's (the quadrupling
    without the in-sample conditions: the score's gain ≤ tolerance, or the loss threshold)."""
    fit, bits = head_fit(captured.result, slot.head)
    decoder = captured.config.decoder
    decoder = decoder.warm() if captured.warm else decoder
    curve, losses = run["curve"], run["losses"]
    ours = set(decoder.curve()) | {fit.epochs}
    new = certified_at(curve, losses, decoder, run["confirmed"], strict=True)
    hit = next((e for e, loss in enumerate(losses, 1) if loss <= decoder.stop_loss), None)
    # not certified within the re-run: it would train on (a lower bound of its epochs)
    old = certified_at(curve, losses, decoder, hit, strict=False) or len(losses)
    old_points = set(decoder.curve()) | {old}
    value = max(curve.values())
    per_epoch = run["cpu_s"] / len(losses)
    return {
        **dataclasses.asdict(slot), "warm": bool(captured.warm), "stop": str(fit.stop),
        "epochs": fit.epochs, "certified_bits": bits,
        "reproduced_bits": best_until(curve, fit.epochs, ours), "rule_stops_at": new,
        "rerun_epochs": len(losses), "rerun_bits": value, "shortfall": value - bits,
        "old_rule_epochs": old, "old_rule_bits": best_until(curve, old, old_points),
        "old_rule_shortfall": value - best_until(curve, old, old_points),
        "cpu_s_per_epoch": per_epoch, "curve": {str(b): v for b, v in sorted(curve.items())},
        "losses": losses,  # each re-run epoch's mean loss: any stopping loss can be read off
    }  # fmt: skip


def quantiles(values: list[float]) -> dict[str, float]:
    t = torch.tensor(values, dtype=torch.float64)
    qs = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
    return {f"q{round(100 * q)}": float(torch.quantile(t, q)) for q in qs}


def summary(rows: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """The shortfalls' distribution under both rules, over every head and by how the rule
    certified it, and what each rule's epochs cost."""
    if not rows:
        return {}

    def spread(short: list[float]) -> dict[str, Any]:
        return {
            "heads": len(short), "quantiles": quantiles(short),
            "within_tolerance": sum(s <= tolerance for s in short),
            "over_0.03": sum(s > 0.03 for s in short), "max": max(short),
        }  # fmt: skip

    out: dict[str, Any] = {"heads": len(rows), "warm": sum(r["warm"] for r in rows)}
    for rule, key, epochs in (("new", "shortfall", "epochs"),
                              ("old", "old_rule_shortfall", "old_rule_epochs")):  # fmt: skip
        out[rule] = spread([r[key] for r in rows]) | {
            "by_stop": {
                stop: spread([r[key] for r in rows if r["stop"] == stop])
                for stop in sorted({r["stop"] for r in rows})
            },
            "epochs": sum(r[epochs] for r in rows),
            "cpu_s": sum(r[epochs] * r["cpu_s_per_epoch"] for r in rows),
        }
    return out


def table(path: Path, stop_loss: float | None = None) -> str:
    """The audit's shortfalls as markdown rows, by how each head was certified: heads, within
    the tolerance (0.01 bit), over 0.03, median and largest; with `stop_loss` (nats), the same
    trajectories judged by that stopping loss instead (read off each re-run's losses)."""
    rows = json.loads(path.read_text())["heads"]
    if stop_loss is not None:
        rows = [r | _at_stop_loss(r, stop_loss) for r in rows if "losses" in r]
    lines = []
    for stop in [*sorted({r["stop"] for r in rows}), "all"]:
        short = [r["shortfall"] for r in rows if stop in ("all", r["stop"])]
        q = quantiles(short)
        lines.append(
            f"| {stop} | {len(short)} | {sum(x <= 0.01 for x in short)} | "
            f"{sum(x > 0.03 for x in short)} | {q['q50']:+.4f} | {q['q100']:+.4f} |"
        )
    return "\n".join(lines)


def _at_stop_loss(row: dict[str, Any], stop_loss: float) -> dict[str, Any]:
    """A loss-threshold head's shortfall had it stopped at `stop_loss`: the best scored budget
    up to the first re-run epoch at or below it (a lower bound of the value there)."""
    if row["stop"] != "loss_threshold":
        return {}
    curve = {int(b): v for b, v in row["curve"].items()}
    hit = next((e for e, loss in enumerate(row["losses"], 1) if loss <= stop_loss), None)
    if hit is None:
        return {"shortfall": 0.0, "stop": "trains on"}
    return {"shortfall": row["rerun_bits"] - max(v for b, v in curve.items() if b <= hit)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="network", choices=sorted(SGD_LAYERS))
    p.add_argument("--epochs", type=int, default=4, help="the encoder's epochs, at most")
    p.add_argument("--heads", type=int, default=40, help="heads sampled")
    p.add_argument(
        "--sample-from",
        type=int,
        default=1,
        metavar="EPOCH",
        help="sample only epochs from this one on (extends an audit of earlier ones)",
    )
    p.add_argument("--layers", type=int, nargs="*", help="a subset of the family's SGD layers "
                   "(one process per layer shares the audit out over cores)")  # fmt: skip
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "vinfo_audit.json"))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                   help="further trial settings (a quick check on the demo data)")  # fmt: skip
    p.add_argument("--table", action="store_true", help="print --out's shortfalls as rows")
    p.add_argument("--stop-loss", type=float, help="with --table: judged at this loss (nats)")
    args = p.parse_args()
    if args.table:
        print(table(Path(args.out), args.stop_loss))
        return 0
    layers = tuple(args.layers or SGD_LAYERS[args.family])
    if not set(layers) <= set(SGD_LAYERS[args.family]):
        p.error(f"--layers: {args.family}'s SGD layers are {list(SGD_LAYERS[args.family])}")
    settings = {
        "dataset": "fashion-mnist", "model": "mnistnet", "train_size": 10_000,
        "download": False, "data_dir": args.data_dir, "epochs": args.epochs,
        "vinfo_protocol": protocol.CONVERGED, "decoder_warm_start": True,
        "decoder_epochs": 400, "vinfo_layers": list(layers), "decoder_family": args.family,
        **{k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)},
    }  # fmt: skip
    slots = sample_slots(args.epochs, layers, args.heads, SEED, args.sample_from)
    wanted = {(s.epoch, s.layer, s.split) for s in slots}
    trial = Trial.from_config(settings)
    data, model = trial.build()
    captured: dict[tuple[int, int, str], Captured] = {}
    measure_layer, begin = plan.measure_layer, vinfo._begin
    epoch_now = [0]
    starts: list[dict[str, torch.Tensor]] = []  # each stack's first weights, as it began

    def beginning(stack: StackedDecoders, *args: Any) -> bool:
        moments = begin(stack, *args)
        starts.append({name: t.detach().clone() for name, t in stack.tensors().items()})
        return moments

    def capturing(
        spec: Any, state: dict[str, torch.Tensor], m: plan.Measurement, split: Any,
        config: Any, device: torch.device | str = "cpu", warm: Any = None,
    ) -> Any:  # fmt: skip
        starts.clear()
        result = measure_layer(spec, state, m, split, config, device, warm)
        if (epoch_now[0], m.layer, m.split) in wanted:
            kept = {k: v.clone() for k, v in state.items()}
            captured[epoch_now[0], m.layer, m.split] = Captured(  # in-sample: the first stack
                spec, kept, m, split, config, warm, starts[0], result
            )
        return result

    plan.measure_layer, vinfo._begin = capturing, beginning
    run = Run(model, data, trial.train, trial.collapse, trial.vinfo)
    out = Path(args.out)
    record: dict[str, Any] = {
        "settings": settings, "sample_seed": SEED, "sample": [dataclasses.asdict(s) for s in slots],
        "reduced": (
            f"the encoder's first {args.epochs} epochs at most (f₋ stops at 26), sampled from "
            f"epoch {args.sample_from}; layers {list(layers)}; {args.heads} of "
            f"{len(sample_slots(args.epochs, layers, 10**6, SEED, args.sample_from))} heads "
            "sampled, re-run in sample order until stopped"
        ),
        "epochs": [], "heads": [], "summary": {},
    }  # fmt: skip

    def write() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1) + "\n")

    for epoch in range(1, args.epochs + 1):
        epoch_now[0] = epoch
        start = time.process_time()
        step = run.step()
        record["epochs"].append({
            "epoch": epoch, "cpu_s": time.process_time() - start,
            # every measurement as the history holds it (`schema.VInfoResult`), by its key
            "results": {"/".join(map(str, k)): r.to_json() for k, r in step.vinfo.items()},
            "heads": {  # each in-sample head's epochs, stop and bits, sufficiency's first
                f"l{layer}/{split}": [
                    [h.fit.epochs, str(h.fit.stop), h.bits]
                    for q in (Quantity.SUFFICIENCY, Quantity.MINIMALITY)
                    for h in result.terms[q].heads
                ]
                for (layer, split, *_), result in step.vinfo.items()
            },
        })  # fmt: skip
        print(f"epoch {epoch}: measured in {record['epochs'][-1]['cpu_s']:.0f} CPU s",
              flush=True)  # fmt: skip
        write()
        if step.stop_reason is not None:
            break
    tolerance = trial.vinfo.decoder.tolerance
    for slot in slots:
        if (slot.epoch, slot.layer, slot.split) not in captured:  # after the run stopped
            continue
        cap = captured[slot.epoch, slot.layer, slot.split]
        if slot.head > cap.result.num_digits:  # fewer digits than HEADS − 1: a small split
            continue
        fit, bits = head_fit(cap.result, slot.head)
        if not fit.certified:
            print(f"{slot}: not certified ({fit.stop}, {fit.epochs} epochs), skipped", flush=True)
            continue
        if fit.epochs == 0:  # its start within the tolerance of H(t): a bound, no SGD to audit
            print(f"{slot}: certified at its start, {bits:.4f} bits, skipped", flush=True)
            continue
        row = judged(slot, cap, rerun(cap, slot.head, fit.epochs))
        record["heads"].append(row)
        record["summary"] = summary(record["heads"], tolerance)
        print(f"{slot}: {row['stop']} at {row['epochs']}, {bits:.4f} bits; re-run "
              f"{row['rerun_bits']:.4f} (shortfall {row['shortfall']:+.4f}); previous rule "
              f"{row['old_rule_epochs']} epochs, shortfall {row['old_rule_shortfall']:+.4f}; "
              f"{row['cpu_s_per_epoch'] * row['rerun_epochs']:.0f} CPU s", flush=True)  # fmt: skip
        write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
