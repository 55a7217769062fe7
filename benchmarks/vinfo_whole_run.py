"""What a whole run's 𝒱-information costs under each protocol: one f₋ (or f₊) run on the real
Fashion-MNIST, measured epoch by epoch, its seconds and values recorded (docs/benchmarks.md:
"A run under both protocols" and the sections after it).

    python benchmarks/vinfo_whole_run.py --protocol thesis --schedule log:3
    python benchmarks/vinfo_whole_run.py --protocol converged --schedule every --epochs 5 \
        --layers 1,2,3
    python benchmarks/vinfo_whole_run.py --protocol converged --epochs 12 --layers 1,2,3 \
        --tag _fplus --set 'model="cifarnet"' 'precision="bf16"' 'vinfo_schedule=[7,8,9]'

The trial is `thesis_fmnist`'s f₋ (10 000 training images, the whole test split, seed 0, fp32;
f₊ with `--set`, in bf16 as that sweep trains it), trained in this process by `training.Run`
exactly as a sweep trains it; under `converged` the decoders are warm-started and capped at 400
epochs, as `thesis_fmnist_converged` has them. Run it single-threaded (OMP_NUM_THREADS=1) so
that two runs side by side each have a core: every epoch records its training, NC and
𝒱-information wall seconds (the measurement's own, from the process' CPU clock too), every
value with whether it is certified, and the bytes of decoder state its checkpoint would hold
for the next warm start. Raw: benchmarks/out/vinfo_whole_run_<protocol><tag>.json,
rewritten after every epoch, so that a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raycompress import plan, protocol  # noqa: E402
from raycompress.schema import HEADLINE, NETWORK  # noqa: E402
from raycompress.training import Run  # noqa: E402
from raycompress.trial import Trial  # noqa: E402

CONVERGED = {
    "vinfo_protocol": protocol.CONVERGED,
    "decoder_warm_start": True,
    "decoder_epochs": 400,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", choices=protocol.VINFO_PROTOCOLS, required=True)
    p.add_argument("--schedule", default="every")
    p.add_argument("--epochs", type=int, default=50, help="the run's epoch cap")
    p.add_argument("--layers", help="e.g. 1,2,3 (vinfo_layers; default: every layer)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--tag", default="", help="appended to the raw file's name")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                   help="further trial settings, e.g. decoder_lr=5e-3")  # fmt: skip
    args = p.parse_args()
    settings = {
        "dataset": "fashion-mnist", "model": "mnistnet", "train_size": 10_000,
        "download": False, "data_dir": args.data_dir, "vinfo_schedule": args.schedule,
        "epochs": args.epochs, "decoder_epochs": 50,
        "vinfo_layers": [int(x) for x in args.layers.split(",")] if args.layers else None,
        **(CONVERGED if args.protocol == protocol.CONVERGED else {}),
        **{k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)},
    }  # fmt: skip
    trial = Trial.from_config(settings)
    data, model = trial.build()
    out = ROOT / "benchmarks" / "out" / f"vinfo_whole_run_{args.protocol}{args.tag}.json"
    measured_seconds = {"wall": 0.0, "cpu": 0.0}

    def timed(*call_args):  # the measurement's own seconds, wall and CPU
        wall, cpu = time.perf_counter(), time.process_time()
        values = trial_measure(*call_args)
        measured_seconds["wall"] += time.perf_counter() - wall
        measured_seconds["cpu"] += time.process_time() - cpu
        return values

    layer_seconds: dict[str, float] = {}  # "l<layer>/<split>" → wall seconds, this epoch
    measure_layer = plan.measure_layer

    def timed_layer(spec, state, m, *rest):  # each (layer, split)'s own wall seconds
        start = time.perf_counter()
        result = measure_layer(spec, state, m, *rest)
        layer_seconds[f"l{m.layer}/{m.split}"] = time.perf_counter() - start
        return result

    plan.measure_layer = timed_layer
    run = Run(model, data, trial.train, trial.collapse, trial.vinfo)
    trial_measure, run.measure_vinfo = run.measure_vinfo, timed
    epochs = []
    while True:
        start, measured = time.perf_counter(), dict(measured_seconds)
        record = run.step()
        terms = {
            f"{q}/l{layer}/{split}" + ("" if family == NETWORK else f"/{family}"): {
                "bits": result.value(q),
                "certified": result.terms[q].certified if q in result.terms else None,
                "saturated": result.terms[q].saturated if q in result.terms else None,
                "head_epochs": [h.fit.epochs for h in result.terms[q].heads]
                if q in result.terms
                else None,
            }
            for (layer, split, family), result in record.vinfo.items()
            for q in HEADLINE
        }
        epochs.append({
            "epoch": record.epoch, "seconds": time.perf_counter() - start,
            "vinfo_wall_s": measured_seconds["wall"] - measured["wall"],
            "vinfo_cpu_s": measured_seconds["cpu"] - measured["cpu"],
            "step_loss": record.train_step_loss, "stop": record.stop_reason, "terms": terms,
            "layer_wall_s": dict(layer_seconds),
            # every measurement as the history holds it (`schema.VInfoResult`), by its key
            "results": {"/".join(map(str, k)): r.to_json() for k, r in record.vinfo.items()},
            "warm_state_bytes": sum(  # what the trial checkpoint holds for the next warm start
                t.numel() * t.element_size()
                for parts in run.warm.values() for named in parts.values() for t in named.values()
            ),
        })  # fmt: skip
        layer_seconds.clear()
        print(f"epoch {record.epoch}: {epochs[-1]['seconds']:.0f} s, 𝒱-information "
              f"{epochs[-1]['vinfo_wall_s']:.0f} s, {len(terms)} terms", flush=True)  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"settings": settings, "epochs": epochs}, indent=1) + "\n")
        if record.stop_reason is not None:
            return 0


if __name__ == "__main__":
    sys.exit(main())
