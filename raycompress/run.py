"""One training run in this process, without Ray: train, measure every layer each epoch, print.

    python -m raycompress.run --dataset fashion-mnist-demo --model mnistnet --epochs 3

The sweeps (`python -m raycompress.sweep`) run many of these as Ray Tune trials; this command
is the quickest way to see the numbers of one run. Usage errors exit with status 2 and one line.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from raycompress import protocol
from raycompress.data import DATASET_NAMES
from raycompress.metrics.collapse import METHODS
from raycompress.metrics.families import FAMILIES
from raycompress.models import MODEL_NAMES, batch_norm_regime
from raycompress.schema import EpochRecord, Quantity, VInfoResult
from raycompress.training import run_epochs
from raycompress.trial import DEFAULTS, THESIS_RECIPE, Trial


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m raycompress.run",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", default=DEFAULTS["dataset"], help=", ".join(DATASET_NAMES))
    p.add_argument("--model", default=DEFAULTS["model"], help=", ".join(MODEL_NAMES))
    p.add_argument("--data-dir", help="folder with (or for) the torchvision files")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    p.add_argument("--train-size", type=int, help="training samples (default: the test size)")
    p.add_argument("--test-size", type=int, help="test samples (default: the whole test split)")
    p.add_argument("--imbalance", help="PROFILE:RATIO, e.g. step:0.1")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="epoch cap")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--loss-threshold", type=float, default=DEFAULTS["loss_threshold"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--nc-method", choices=METHODS, default=DEFAULTS["nc_method"])
    p.add_argument(
        "--vinfo",
        default=DEFAULTS["vinfo_schedule"],
        help="𝒱-information schedule: every, every:K, log:N or none",
    )
    p.add_argument(
        "--decoder-epochs", type=int, default=DEFAULTS["decoder_epochs"], help="decoder epoch cap"
    )
    budgets = protocol.DECODER_BUDGETS
    below_cap = ",".join(str(b) for b in budgets if b < DEFAULTS["decoder_epochs"])
    p.add_argument(
        "--decoder-budgets", type=lambda text: [int(b) for b in text.split(",")],
        help=f"decoder epochs at which to score too, e.g. {below_cap}; None: those of "
        f"{','.join(map(str, budgets))} below the decoder epoch cap, and the cap",
    )  # fmt: skip
    p.add_argument("--held-out", action="store_true", help="also held-out sufficiency")
    p.add_argument(
        "--decoder-family", nargs="+", default=[DEFAULTS["decoder_family"]],
        help=f"the decoder families 𝒱 ({', '.join(FAMILIES)}), each measured",
    )  # fmt: skip
    p.add_argument("--decoder-width", type=int, help="the mlp family's hidden units")
    p.add_argument(
        "--baselines", action="store_true",
        help="the generalisation literature's baseline measures where training stops",
    )  # fmt: skip
    p.add_argument(
        "--vinfo-protocol", default=DEFAULTS["vinfo_protocol"],
        help="thesis (the fixed recipe) or converged (decoders trained until certified)",
    )  # fmt: skip
    p.add_argument(
        "--certify-from", type=int, default=DEFAULTS["decoder_certify_from"],
        help="converged: the first scored decoder epoch; the cap must be at least 4 times it",
    )  # fmt: skip
    p.add_argument(
        "--warm-start", action="store_true",
        help="converged: continue each measurement's decoders from the previous one's",
    )  # fmt: skip
    p.add_argument(
        "--input-scale", type=float, default=DEFAULTS["input_scale"],
        help="inputs (pixels in [0, 1]) times this; 255: the thesis' code's 0..255 pixels",
    )  # fmt: skip
    p.add_argument(
        "--precision", default=DEFAULTS["precision"],
        help="fp32, bf16 (autocast, fp32 weights) or bf16-true (bf16 weights, the thesis' code)",
    )  # fmt: skip
    p.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction,
        default=DEFAULTS["channels_last"], help="NHWC convolutions",
    )  # fmt: skip
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    recipe = ", ".join(f"{name} {value}" for name, value in THESIS_RECIPE.items())
    p.add_argument(
        "--thesis-recipe", action="store_true", help=f"train as the thesis' code does: {recipe}"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


def format_row(record: EpochRecord, seconds: float) -> str:
    if record.train is None or record.test is None:
        return f"{record.epoch:5d} {record.train_step_loss:10.4f}  diverged"
    nc = "  ".join(
        f"{record.train.layers[layer].nc_trace:8.3g}/{record.test.layers[layer].nc_trace:<8.3g}"
        for layer in record.train.layers
    )
    return (
        f"{record.epoch:5d} {record.train_step_loss:10.4f} {record.train.accuracy:9.4f} "
        f"{record.test.accuracy:9.4f} {record.test.loss:9.4f}  {nc}  {seconds:6.1f}s"
    )


def format_vinfo(result: VInfoResult) -> str:
    """Sufficiency and minimality in bits, each with its verdict under the converged
    protocol, and the error if any."""
    parts = []
    for q, name in ((Quantity.SUFFICIENCY, "sufficiency"), (Quantity.MINIMALITY, "minimality")):
        term = result.terms.get(q)
        verdict = {None: "", True: " (certified)", False: " (NOT certified)"}[
            term.certified if term else None
        ]
        if term and term.saturated:
            verdict += " (saturated: the family memorises this split)"
        parts.append(f"{name} {result.value(q):.3f} bits{verdict}")
    return ", ".join(parts) + (f"  ({result.error})" if result.error else "")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = {
        "dataset": args.dataset, "model": args.model, "data_dir": args.data_dir,
        "download": not args.no_download, "train_size": args.train_size,
        "test_size": args.test_size,
        "imbalance": args.imbalance, "seed": args.seed, "lr": args.lr,
        "batch_size": args.batch_size, "epochs": args.epochs,
        "loss_threshold": args.loss_threshold, "nc_method": args.nc_method,
        "vinfo_schedule": args.vinfo, "decoder_epochs": args.decoder_epochs,
        "decoder_budgets": args.decoder_budgets,
        "held_out": args.held_out, "vinfo_protocol": args.vinfo_protocol,
        "decoder_family": args.decoder_family, "decoder_width": args.decoder_width,
        "decoder_warm_start": args.warm_start, "decoder_certify_from": args.certify_from,
        "precision": args.precision,
        "channels_last": args.channels_last, "compile": args.compile,
        "input_scale": args.input_scale, "baselines": args.baselines,
    } | (THESIS_RECIPE if args.thesis_recipe else {})  # fmt: skip
    try:
        trial = Trial.from_config(settings)
        data, model = trial.build(args.device)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    layers = "  ".join(f"NC h{layer} train/test" for layer in range(1, model.depth + 1))
    print(f"{args.model} on {args.dataset}: {len(data.train)} train, {len(data.test)} test samples")
    print(f"layers: {', '.join(model.names)}; batch norm: {batch_norm_regime(model)}")
    scale = trial.config["input_scale"]
    inputs = f", inputs × {scale:g}" if scale != 1 else ""
    print(f"training: {trial.train.compute.describe()}{inputs} on {args.device}")
    if model.adaptation:
        print(f"adapted {model.adaptation}")
    print(f"epoch  step loss train acc  test acc test loss  {layers}")
    start = time.perf_counter()
    measured = run_epochs(
        model, data, trial.train, trial.collapse, trial.vinfo, baselines=trial.baselines
    )
    for record in measured:
        print(format_row(record, time.perf_counter() - start), flush=True)
        for (layer, split, family), result in sorted(record.vinfo.items()):
            print(f"      𝒱-info l={layer} {split:5s} {family}: {format_vinfo(result)}")
        start = time.perf_counter()
        for name, (value, _) in record.baselines.items():
            print(f"      baseline {name}: {value:.4g}")
        if record.stop_reason:
            print(f"stopped: {record.stop_reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
