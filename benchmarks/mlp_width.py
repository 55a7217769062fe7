"""The mlp family's width on f₋: sufficiency, minimality and cost per width at every layer, to
choose the default (`families.MLP_WIDTH`; docs/benchmarks.md, "Decoder families").

    OMP_NUM_THREADS=1 python benchmarks/mlp_width.py [--widths 16,64,256,1024] [--layers 0,1,2,3]

The encoder is `thesis_fmnist`'s f₋ (Fashion-MNIST, 10 000 training images, seed 0) trained
one epoch by `training.Run`, as `vinfo_linear.py` trains it. At each layer and width the mlp
family is measured on the train split under the converged protocol (the default certificate;
`--cap` decoder epochs at most, 400 as `thesis_fmnist_converged` has them; `--start linear`,
the default, starts each head at the linear optimum, `--start fresh` from its initialisation),
through `plan.measure_layer` as a sweep measures it: each term's
bits, whether it is certified and saturated, and the measurement's CPU seconds. Raw:
benchmarks/out/mlp_width.json (or `--out`), rewritten after every (layer, width).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raycompress import plan  # noqa: E402
from raycompress.metrics import families  # noqa: E402
from raycompress.metrics.families import MLP, Family  # noqa: E402
from raycompress.schema import HEADLINE  # noqa: E402
from raycompress.training import Run  # noqa: E402
from raycompress.trial import Trial  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="16,64,256,1024")
    p.add_argument("--layers", default="0,1,2,3")
    p.add_argument("--cap", type=int, default=400, help="decoder epochs at most")
    p.add_argument("--lr", type=float, help="the decoders' learning rate (default: the run's)")
    p.add_argument("--start", choices=("linear", "fresh"), default="linear")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "mlp_width.json")
    args = p.parse_args()
    if args.start == "fresh":  # as before the linear start: no head holds an affine map
        families.MLPDecoder.embeds_affine = lambda self: False  # type: ignore[method-assign]
    settings = {
        "dataset": "fashion-mnist", "model": "mnistnet", "train_size": 10_000,
        "download": False, "data_dir": args.data_dir, "vinfo_schedule": "none", "epochs": 1,
        "decoder_family": "mlp", "vinfo_protocol": "converged", "decoder_epochs": args.cap,
        "decoder_lr": args.lr,
    }  # fmt: skip
    trial = Trial.from_config(settings)
    data, model = trial.build()
    Run(model, data, trial.train, trial.collapse).step()
    state = {k: v.detach() for k, v in model.state_dict().items()}
    out = args.out
    rows = []
    for layer in (int(x) for x in args.layers.split(",")):
        for width in (int(x) for x in args.widths.split(",")):
            family = Family(MLP, width)
            seed = plan.measurement_seed(0, 1, layer, "train")
            m = plan.Measurement(layer, "train", family, seed)
            start = time.process_time()
            result = plan.measure_layer(model.spec, state, m, data.train, trial.vinfo)
            seconds = time.process_time() - start
            terms = {
                q.value: {
                    "bits": result.terms[q].value, "certified": result.terms[q].certified,
                    "saturated": result.terms[q].saturated, "ceiling": result.terms[q].entropy,
                    "head_epochs": [h.fit.epochs for h in result.terms[q].heads],
                }
                for q in HEADLINE if q in result.terms
            }  # fmt: skip
            rows.append({"layer": layer, "width": width, "cpu_s": seconds, "terms": terms,
                         "error": result.error})  # fmt: skip
            suff, mini = (terms.get(q.value, {}).get("bits") for q in HEADLINE)
            print(f"l={layer} width {width}: sufficiency {suff:.3f}, minimality {mini:.3f} "
                  f"bits, {seconds:.0f} CPU-s", flush=True)  # fmt: skip
            record = {"settings": settings, "start": args.start, "rows": rows}
            out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
