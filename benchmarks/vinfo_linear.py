"""The `linear` family's optimum at every layer: the solver (`affine.fit_affine`: whitened
Newton-CG, all heads of a layer together) against a plain float64 L-BFGS, on f₋ at epoch 1.

    OMP_NUM_THREADS=1 python benchmarks/vinfo_linear.py [--layers 0,1,2,3] [--skip-baseline]
        [--splits train,test]

The encoder is `thesis_fmnist`'s f₋ (Fashion-MNIST, 10 000 training images, the whole test
split, seed 0), trained one epoch by `training.Run` as `vinfo_whole_run.py` trains it. At each
layer l and split, the features h^l (`vinfo.encode`, flattened) and the K target columns
(`vinfo.targets`: y, then the relabelling's digits) are fitted by

    baseline  torch.optim.LBFGS (strong Wolfe, history 50) on the standardised features, from
              zero, one problem at a time, until the gradient's largest entry ≤ 1e-6 or 3 000
              iterations: the solver this replaces, uncapped
    ours      `fit_affine` with the converged protocol's tolerance (its doubling rule)

Per head: seconds (a layer's one solve for ours), nats, bits (H(t) − CE/ln 2), certificates
and form; per term: sufficiency = head 0's bits, minimality = the mean over the digit heads.
Raw: benchmarks/out/vinfo_linear.json, rewritten after every (layer, split).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raycompress import plan, protocol  # noqa: E402
from raycompress.metrics import vinfo  # noqa: E402
from raycompress.metrics.affine import fit_affine, standardised  # noqa: E402
from raycompress.seeds import Stream, derive_seed  # noqa: E402
from raycompress.training import Run  # noqa: E402
from raycompress.trial import Trial  # noqa: E402

BASELINE_ITER = 3000
BASELINE_GRAD_TOL = 1e-6
EPOCH = 1


def baseline(z: Tensor, t: Tensor, num_classes: int) -> dict[str, float | int | bool]:
    """Plain float64 L-BFGS on one target column t (N,) from zero weights."""
    params = torch.zeros(num_classes, z.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [params], lr=1, max_iter=BASELINE_ITER, max_eval=2 * BASELINE_ITER,
        tolerance_grad=BASELINE_GRAD_TOL, tolerance_change=0, history_size=50,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        optimizer.zero_grad()
        value = F.cross_entropy(z @ params[:, :-1].T + params[:, -1], t)
        value.backward()
        return value

    optimizer.step(closure)
    ce = float(closure().detach())
    assert params.grad is not None
    grad_max = float(params.grad.abs().max())
    iterations = optimizer.state[params]["n_iter"]
    return {"ce": ce, "grad_max": grad_max, "iterations": iterations,
            "converged": grad_max <= BASELINE_GRAD_TOL}  # fmt: skip


def terms(bits: list[float]) -> dict[str, float]:
    return {"sufficiency": bits[0], "minimality": sum(bits[1:]) / len(bits[1:])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="0,1,2,3")
    p.add_argument("--splits", default="train,test")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "vinfo_linear.json"))
    args = p.parse_args()
    settings = {
        "dataset": "fashion-mnist", "model": "mnistnet", "train_size": 10_000,
        "download": False, "data_dir": args.data_dir, "epochs": EPOCH,
    }  # fmt: skip
    trial = Trial.from_config(settings)
    data, model = trial.build()
    run = Run(model, data, trial.train, trial.collapse)
    run.step()
    tolerance = protocol.CERTIFY_TOLERANCE
    num_classes = data.num_classes
    out = Path(args.out)
    results: list[dict] = []
    for split in args.splits.split(","):
        for layer in (int(x) for x in args.layers.split(",")):
            seed = plan.measurement_seed(trial.train.seed, EPOCH, layer, split)
            part = getattr(data, split)
            features = vinfo.encode(
                model.encoder(layer), part.x, trial.vinfo.decoder.batch_size,
                derive_seed(seed, Stream.ENCODE_ORDER), "cpu", trial.vinfo.cache_bytes,
            )  # fmt: skip
            z = features.flatten(1)
            columns, num_digits = vinfo.targets(part, num_classes, trial.vinfo.monte_carlo, seed)
            entropy = [vinfo.entropy_bits(t, num_classes) for t in columns.T]
            record: dict = {"layer": layer, "split": split, "features": z.shape[1],
                            "samples": z.shape[0], "num_digits": num_digits,
                            "entropy_bits": entropy, "tolerance_bits": tolerance}  # fmt: skip
            start = time.perf_counter()
            fits = fit_affine(z, columns, num_classes, tolerance=tolerance)
            seconds = time.perf_counter() - start
            bits = [h - f.ce / vinfo.LN2 for h, f in zip(entropy, fits, strict=True)]
            record["ours"] = {
                "seconds": seconds, "form": fits[0].form, "rank": fits[0].rank,
                "terms": terms(bits),
                "heads": [{"ce": f.ce, "bits": b, "iterations": f.iterations,
                           "grad_max": f.grad_max, "converged": f.converged,
                           "certified": f.certified, "separable": f.separable,
                           "doubling_gain_bits": None if f.doubling_gain is None
                           else f.doubling_gain / vinfo.LN2}
                          for f, b in zip(fits, bits, strict=True)],
            }  # fmt: skip
            if not args.skip_baseline:
                zs = standardised(z.double())
                heads = []
                for h, t in zip(entropy, columns.T, strict=True):
                    start = time.perf_counter()
                    head = baseline(zs, t, num_classes)
                    head["seconds"] = time.perf_counter() - start
                    head["bits"] = h - head["ce"] / math.log(2)
                    heads.append(head)
                base_bits = [h["bits"] for h in heads]
                record["baseline"] = {
                    "seconds": sum(h["seconds"] for h in heads), "terms": terms(base_bits),
                    "heads": heads,
                }  # fmt: skip
                record["speedup"] = record["baseline"]["seconds"] / seconds
                record["ours_minus_baseline_bits"] = {
                    k: record["ours"]["terms"][k] - record["baseline"]["terms"][k]
                    for k in record["ours"]["terms"]
                }
            results.append(record)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"settings": settings, "results": results}, indent=1))
            print(row(record), flush=True)
    return 0


def row(record: dict) -> str:
    ours = record["ours"]
    text = (
        f"l{record['layer']}/{record['split']} D={record['features']} {ours['form']} "
        f"r={ours['rank']}: ours {ours['seconds']:.1f} s, suff {ours['terms']['sufficiency']:.3f}"
        f" min {ours['terms']['minimality']:.3f} bits, certified "
        f"{sum(h['certified'] for h in ours['heads'])}/{len(ours['heads'])}"
    )
    if "baseline" in record:
        base = record["baseline"]
        text += (
            f" | baseline {base['seconds']:.0f} s, suff {base['terms']['sufficiency']:.3f} "
            f"min {base['terms']['minimality']:.3f}, converged "
            f"{sum(h['converged'] for h in base['heads'])}/{len(base['heads'])}"
            f" | {record['speedup']:.0f}×"
        )
    return text


if __name__ == "__main__":
    sys.exit(main())
