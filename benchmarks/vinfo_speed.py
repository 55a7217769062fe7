"""Benchmark of one 𝒱-information measurement of f₋ ("mnistnet") (metrics.vinfo). Not a test.

A measurement = for each layer l = 0..3 and each split (train, test), fresh decoders f^{L:l+1}
trained on the frozen encoder f^{l:1}'s features: one sufficiency head (target y) and N_D
minimality heads (the base-10 digits of the within-class index), bits = entropy − CE.

Setup: f₋ on the data set (default the real Fashion-MNIST, 10 000 train + 10 000 test), seed 0,
trained 2 epochs by the thesis protocol (batch 400, AdamW lr 2e-3); the unit T_epoch is the
median of 3 further `train_epoch` calls on a deep copy of the model and optimiser. Every random
stream comes from seed 0 by name (`seeds`): the initialisation, the training order and the
--quick subsets as a run of seed 0 draws them, the timed epochs' orders from
`BenchmarkStream.TIMED_ORDER`.

Part "ours": `plan.measure_in_process(..., VInfoConfig(), 0, 2, layer0={})`, the default config
(convergence stopping, cached features, all heads of a (layer, split) batched), wall time in
all, per (layer, split), and without layer 0 (measured once per run and reused); the values and
each head's epochs and stop reason. With --no-layer0 the `layer0` dict comes pre-filled, as on
every measurement of a run after the first, and layer 0 is estimated from part "budget" (a).

Part "budget": every head trained a fixed E epochs (default 3), per layer and split:
    (a) cached + batched      our code path: `encode` once, one StackedDecoders of all heads
    (b) cached, one at a time the same code with a StackedDecoders of one head per target
    (c) uncached, one at a time  the reference protocol (thesis): per head a fresh decoder
        (model.fresh_decoder), AdamW lr 2e-3; per shuffled batch of 400 the encoder runs under
        no_grad, then one decoder step; scored after training over the split in a fixed batch
        order, the encoder re-run
Reported: training time per decoder epoch (all heads), the scoring time, and the ratios
(c)/(a), (b)/(a). The reference protocol's full cost (50 epochs, every head, + scoring) is then
extrapolated linearly in epochs from (c) and compared to part "ours" (goal: ≥ 10× less).

Part "agree" (on the bundled demo subset, 2 000 + 2 000, f₋ trained 2 epochs on it): the
reference protocol actually run (uncached, one head at a time, 50 fixed epochs), ours with the
default config, and ours cached + batched with 50 fixed epochs; |ours − reference| in bits per
(layer, split, term) (goal: within 0.05 bits). The reference uses the same decoder seeds, the
same training batch orders and the same scoring batch order as ours, so the protocols differ
only by what they are meant to: caching (fixed batch-norm batches in the encoder) and stopping.

Every case runs in this one process with torch.set_num_threads(2); wall times by
time.perf_counter. Raw results are merged into benchmarks/out/vinfo_speed.json.

Run. Everything, as the defaults say, takes well over an hour on 2 cores (layer 0 of part ours
alone ≈ 40 min, the reference at layers 0 and 1 of part agree ≈ 10 min); the recorded run
(docs/benchmarks.md) measured part ours without layer 0, the budget part on the train split
and the agreement on layers 2 and 3, about 28 minutes:

    /work/venv/bin/python benchmarks/vinfo_speed.py --no-layer0 --budget-splits train \
        --agree-layers 2 3
    /work/venv/bin/python benchmarks/vinfo_speed.py --parts budget --budget-splits train \
        --ours-from benchmarks/out/vinfo_speed.json --out benchmarks/out/vinfo_speed_budget.json
    /work/venv/bin/python benchmarks/vinfo_speed.py --quick --no-layer0 --agree-layers 2 3
                                                     # smoke test, about a minute
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raycompress import plan
from raycompress.data import Dataset, load_dataset
from raycompress.metrics.decoders import DecoderConfig, StackedDecoders, score_heads, train_heads
from raycompress.metrics.vinfo import LN2, VInfoConfig, encode, entropy_bits, head_seeds
from raycompress.models import LayeredNet, build_model, make_spec
from raycompress.sampling import Split, batch_indices, relabel, stratified_subset
from raycompress.schema import HEADLINE, NETWORK, Quantity, VInfoResult
from raycompress.seeds import BenchmarkStream, Stream, derive_seed
from raycompress.training import TrainConfig, make_optimizer, train_epoch

THREADS = 2
SEED = 0
SETUP_EPOCHS = 2
REFERENCE_EPOCHS = 50  # the thesis trains every decoder a fixed 50 epochs
SPLITS = ("train", "test")
OUT = Path(__file__).resolve().parent / "out" / "vinfo_speed.json"
Result = dict[str, Any]


# ------------------------------------------------------------------------------------ setup


def load(name: str, data_dir: str, quick: bool) -> Dataset:
    data = load_dataset(name, data_dir, download=False)
    if quick:  # 300 + 300 samples, stratified
        sub = []
        for s, stream in ((data.train, Stream.TRAIN_SUBSET), (data.test, Stream.TEST_SUBSET)):
            g = torch.Generator().manual_seed(derive_seed(SEED, stream))
            sub.append(s.subset(stratified_subset(s.y, 300, g)))
        data = Dataset(data.name, sub[0], sub[1], data.classes)
    return data


def setup(data: Dataset, epochs: int, time_reps: int) -> tuple[LayeredNet, Result]:
    """f₋ (seed 0) trained `epochs` epochs by the thesis protocol; T_epoch from a deep copy."""
    config = TrainConfig(seed=SEED)
    spec = make_spec("mnistnet", data.input_shape, data.num_classes)
    model = build_model(spec, seed=derive_seed(SEED, Stream.MODEL_INIT))
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(derive_seed(SEED, Stream.TRAIN_ORDER))
    losses = [
        train_epoch(model, optimizer, data.train, config.batch_size, generator)
        for _ in range(epochs)
    ]
    copy_model, copy_opt = copy.deepcopy((model, optimizer))
    times = []
    for i in range(time_reps):
        copy_gen = torch.Generator().manual_seed(derive_seed(SEED, BenchmarkStream.TIMED_ORDER, i))
        start = time.perf_counter()
        train_epoch(copy_model, copy_opt, data.train, config.batch_size, copy_gen)
        times.append(time.perf_counter() - start)
    model.eval()
    info = {
        "dataset": data.name, "n_train": len(data.train), "n_test": len(data.test),
        "setup_epochs": epochs, "train_step_losses": losses,
        "t_epoch_runs_s": times, "t_epoch_s": statistics.median(times) if times else None,
    }  # fmt: skip
    return model, info


def targets_of(split: Split, num_classes: int) -> Tensor:
    """(N, K): column 0 = y, columns 1.. = the relabelling digits (as measure_vinfo builds)."""
    return torch.cat([split.y[:, None], relabel(split.y, num_classes)], 1)


def measurement_seed(layer: int, split: str) -> int:
    """The seed the library's plan gives (layer, split) after the setup's training."""
    return plan.measurement_seed(SEED, SETUP_EPOCHS, layer, split)


# ------------------------------------------------------------------------------ part ours


def part_ours(model: LayeredNet, data: Dataset, config: VInfoConfig, layer0: bool) -> Result:
    """plan.measure_in_process with the default VInfoConfig, timed per (layer, split) by
    wrapping measure_vinfo (the plan looks it up in its module at call time).

    layer0=False: the plan gets its `layer0` dict already filled (with placeholders), as on
    every measurement of a run after the first, so only layers 1..L−1 are measured and timed.
    """
    per_call: list[tuple[int, float]] = []
    original = plan.measure_vinfo

    def timed(encoder: nn.Module, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = original(encoder, *args, **kwargs)
        per_call.append((len(encoder), time.perf_counter() - start))
        return out

    plan.measure_vinfo = timed
    try:
        start = time.perf_counter()
        values = plan.measure_in_process(
            model, {"train": data.train, "test": data.test}, config, SEED, SETUP_EPOCHS,
            layer0={} if layer0 else {(name, NETWORK): VInfoResult() for name in SPLITS},
        )  # fmt: skip
        total = time.perf_counter() - start
        if not layer0:
            values = {key: out for key, out in values.items() if key[0] > 0}
    finally:
        plan.measure_vinfo = original
    rows = []
    timed_calls = zip(values.items(), per_call, strict=True)
    for ((layer, split, _), out), (timed_layer, seconds) in timed_calls:
        assert timed_layer == layer
        # the sufficiency head, then one minimality head per relabelling digit
        heads = [h for q in HEADLINE if q in out.terms for h in out.terms[q].heads]
        digits = out.terms[Quantity.MINIMALITY].heads if Quantity.MINIMALITY in out.terms else ()
        rows.append({
            "layer": layer, "split": split, "seconds": seconds,
            "v_suff": out.value(Quantity.SUFFICIENCY), "v_min": out.value(Quantity.MINIMALITY),
            "v_min_digits": [h.bits for h in digits],
            "head_epochs": [h.fit.epochs for h in heads],
            "head_stops": [str(h.fit.stop) for h in heads],
            "error": out.error,
        })  # fmt: skip
    seconds0 = sum(r["seconds"] for r in rows if r["layer"] == 0)
    return {
        "config": repr(config), "layer0_measured": layer0, "total_s": total,
        "layer0_s": seconds0 if layer0 else None, "without_layer0_s": total - seconds0,
        "rows": rows,
    }  # fmt: skip


# ---------------------------------------------------------------------------- the protocols


def _stack(model: LayeredNet, layer: int, seeds: list[int]) -> StackedDecoders:
    stack = StackedDecoders([model.fresh_decoder(layer, s) for s in seeds])
    stack.params = {k: v.detach().requires_grad_() for k, v in stack.params.items()}
    return stack


def cached(
    model: LayeredNet, layer: int, split: Split, targets: Tensor, config: DecoderConfig,
    seed: int, batched: bool,
) -> Result:  # fmt: skip
    """Our code path (encode once, train_heads, score_heads), all heads in one stack or one
    stack per head; same seeds and batch orders as measure_vinfo. CE in bits per head."""
    seeds = head_seeds(targets.shape[1], seed)
    start = time.perf_counter()
    order = derive_seed(seed, Stream.ENCODE_ORDER)
    features = encode(model.encoder(layer), split.x, config.batch_size, order, "cpu", 2 << 30)
    t_encode = time.perf_counter() - start
    groups = [list(range(len(seeds)))] if batched else [[k] for k in range(len(seeds))]
    t_train = t_score = 0.0
    ce: list[float] = []
    epochs: list[int] = []
    stops: list[str] = []
    for group in groups:
        stack = _stack(model, layer, [seeds[k] for k in group])
        start = time.perf_counter()
        fits = train_heads(
            stack,
            features,
            targets[:, group],
            config,
            torch.Generator().manual_seed(derive_seed(seed, Stream.DECODER_ORDER)),
        )
        t_train += time.perf_counter() - start
        start = time.perf_counter()
        ce += (
            score_heads(
                stack,
                features,
                targets[:, group],
                config.batch_size,
                derive_seed(seed, Stream.SCORE_ORDER),
            )
            / LN2
        ).tolist()
        t_score += time.perf_counter() - start
        epochs += [f.epochs for f in fits]
        stops += [str(f.stop) for f in fits]
    return {
        "encode_s": t_encode, "train_s": t_train, "score_s": t_score,
        "total_s": t_encode + t_train + t_score, "ce_bits": [float(c) for c in ce],
        "head_epochs": epochs, "head_stops": stops,
    }  # fmt: skip


def reference(
    model: LayeredNet, layer: int, split: Split, targets: Tensor, epochs: int, seed: int
) -> Result:
    """The thesis' protocol: per head, a fresh decoder trained a fixed number of epochs with
    the encoder re-run on every batch, then scored with the encoder re-run. Same decoder seeds,
    training batch orders and scoring order as measure_vinfo(seed)."""
    encoder = model.encoder(layer).eval()
    seeds = head_seeds(targets.shape[1], seed)
    t_train = t_score = 0.0
    ce = []
    n = len(split)
    for k, head_seed in enumerate(seeds):
        decoder = model.fresh_decoder(layer, head_seed).train()
        optimizer = torch.optim.AdamW(decoder.parameters(), lr=2e-3, weight_decay=0.01)
        generator = torch.Generator().manual_seed(derive_seed(seed, Stream.DECODER_ORDER))
        target = targets[:, k]
        start = time.perf_counter()
        for _ in range(epochs):
            for index in batch_indices(n, 400, generator):
                with torch.no_grad():
                    h = encoder(split.x[index])
                loss = F.cross_entropy(decoder(h), target[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        t_train += time.perf_counter() - start
        start = time.perf_counter()
        total = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for index in batch_indices(
                n, 400, torch.Generator().manual_seed(derive_seed(seed, Stream.SCORE_ORDER))
            ):
                logits = decoder(encoder(split.x[index])).double()
                total += F.cross_entropy(logits, target[index], reduction="sum")
        t_score += time.perf_counter() - start
        ce.append(float(total) / n / LN2)
    return {
        "encode_s": 0.0, "train_s": t_train, "score_s": t_score, "total_s": t_train + t_score,
        "ce_bits": ce, "head_epochs": [epochs] * len(seeds),
    }  # fmt: skip


def bits(result: Result, targets: Tensor, num_classes: int) -> dict[str, float]:
    """v_suff, v_min (mean over digits) from per-head CE, as measure_vinfo computes them."""
    raw = [entropy_bits(targets[:, k], num_classes) - c for k, c in enumerate(result["ce_bits"])]
    return {"v_suff": raw[0], "v_min": sum(raw[1:]) / len(raw[1:]), "raw": raw}


def fixed(epochs: int) -> DecoderConfig:
    return DecoderConfig(protocol="thesis", loss_threshold=0.0, patience=10**6, max_epochs=epochs)


# ---------------------------------------------------------------------------- part budget


def part_budget(
    model: LayeredNet, data: Dataset, epochs: int, splits: list[str], layers: list[int]
) -> Result:
    rows = []
    for layer in layers:
        for name in SPLITS:
            if name not in splits:
                continue
            split = getattr(data, name)
            targets = targets_of(split, data.num_classes)
            seed = measurement_seed(layer, name)
            row: Result = {"layer": layer, "split": name, "heads": targets.shape[1]}
            for case in ("a", "b", "c"):
                if case == "c":
                    out = reference(model, layer, split, targets, epochs, seed)
                else:
                    out = cached(model, layer, split, targets, fixed(epochs), seed, case == "a")
                out["per_epoch_s"] = out["train_s"] / epochs
                out.update(bits(out, targets, data.num_classes))
                row[case] = out
            row["c_over_a"] = row["c"]["per_epoch_s"] / row["a"]["per_epoch_s"]
            row["b_over_a"] = row["b"]["per_epoch_s"] / row["a"]["per_epoch_s"]
            print(
                f"  budget l={layer} {name:5s} per epoch a {row['a']['per_epoch_s']:.2f} s, "
                f"b {row['b']['per_epoch_s']:.2f} s, c {row['c']['per_epoch_s']:.2f} s",
                flush=True,
            )
            rows.append(row)
    return {"epochs": epochs, "splits": splits, "layers": layers, "rows": rows}


def extrapolate(ours: Result, budget: Result) -> Result:
    """Reference cost per measurement = Σ_(l, split) (c per epoch × 50 + c scoring), from the
    fixed-budget part; ratio to ours (default config) with and without layer 0.

    A split missing from the budget part takes the train split's cost (same N, same shapes).
    Layer 0 of ours, when not measured, is estimated as (a)'s encode + 50 epochs + scoring: an
    upper bound, as a head that stops earlier leaves the batched step.
    """
    rows = {(r["layer"], r["split"]): r for r in budget["rows"]}
    layers = sorted({layer for layer, _ in rows})
    ref: dict[tuple[int, str], float] = {}
    ours0: dict[str, float] = {}
    for layer in layers:
        for name in SPLITS:
            r = rows.get((layer, name), rows[layer, "train"])
            ref[layer, name] = r["c"]["per_epoch_s"] * REFERENCE_EPOCHS + r["c"]["score_s"]
            if layer == 0:
                a = r["a"]
                ours0[name] = a["encode_s"] + a["per_epoch_s"] * REFERENCE_EPOCHS + a["score_s"]
    ref_all = sum(ref.values())
    ref_no0 = sum(v for (layer, _), v in ref.items() if layer > 0)
    ours_no0 = ours["without_layer0_s"]
    if ours["layer0_measured"]:
        ours_layer0, layer0_how = ours["layer0_s"], "measured"
    else:
        ours_layer0, layer0_how = sum(ours0.values()), "estimated: (a) 50 epochs, upper bound"
    return {
        "reference_epochs": REFERENCE_EPOCHS,
        "reference_per_cell_s": {f"{layer}/{split}": v for (layer, split), v in ref.items()},
        "reference_all_s": ref_all, "reference_without_layer0_s": ref_no0,
        "ours_layer0_s": ours_layer0, "ours_layer0": layer0_how,
        "ours_all_s": ours_no0 + ours_layer0, "ours_without_layer0_s": ours_no0,
        "ratio_all": ref_all / (ours_no0 + ours_layer0),
        "ratio_without_layer0": ref_no0 / ours_no0,
    }  # fmt: skip


# ----------------------------------------------------------------------------- part agree


def part_agree(
    model: LayeredNet, data: Dataset, layers: list[int], ref_epochs: int, default: DecoderConfig
) -> Result:
    rows = []
    for layer in layers:
        for name in SPLITS:
            split = getattr(data, name)
            targets = targets_of(split, data.num_classes)
            seed = measurement_seed(layer, name)
            row: Result = {"layer": layer, "split": name}
            for case, config in (("ours", default), ("ours_fixed", fixed(ref_epochs))):
                out = cached(model, layer, split, targets, config, seed, batched=True)
                out.update(bits(out, targets, data.num_classes))
                row[case] = out
            for case in ("reference",):
                out = reference(model, layer, split, targets, ref_epochs, seed)
                out.update(bits(out, targets, data.num_classes))
                row[case] = out
            for case in ("ours", "ours_fixed"):
                for term in ("v_suff", "v_min"):
                    row[f"{case}_{term}_diff"] = row[case][term] - row["reference"][term]
            print(
                f"  agree l={layer} {name:5s} ref {row['reference']['v_suff']:.3f}/"
                f"{row['reference']['v_min']:.3f} ours {row['ours']['v_suff']:.3f}/"
                f"{row['ours']['v_min']:.3f} ({row['ours']['total_s']:.0f} s vs "
                f"{row['reference']['total_s']:.0f} s)",
                flush=True,
            )
            rows.append(row)
    worst = {
        f"{case}_{term}": max(abs(r[f"{case}_{term}_diff"]) for r in rows)
        for case in ("ours", "ours_fixed")
        for term in ("v_suff", "v_min")
    }
    return {"layers": layers, "reference_epochs": ref_epochs, "rows": rows, "max_abs_diff": worst}


# ---------------------------------------------------------------------------------- output


def print_tables(results: Result) -> None:
    if "ours" in results:
        ours = results["ours"]
        layer0 = "not measured" if ours["layer0_s"] is None else f"{ours['layer0_s']:.1f} s"
        print(
            f"\nours, default VInfoConfig: {ours['total_s']:.1f} s in all, layer 0 {layer0}, "
            f"without layer 0 {ours['without_layer0_s']:.1f} s"
        )
        print("| layer | split | s | v_suff | v_min | head epochs (suff, digits) | stops |")
        print("| ---: | --- | ---: | ---: | ---: | --- | --- |")
        for r in ours["rows"]:
            print(
                f"| {r['layer']} | {r['split']} | {r['seconds']:.1f} | {r['v_suff']:.3f} | "
                f"{r['v_min']:.3f} | {', '.join(map(str, r['head_epochs']))} | "
                f"{', '.join(r['head_stops'])} |"
            )
    if "budget" in results:
        budget = results["budget"]
        print(
            f"\nfixed budget, E = {budget['epochs']} epochs per head, s per decoder epoch "
            "(all heads) and scoring s"
        )
        print(
            "| layer | split | (a) cached+batched | (b) cached, 1 by 1 | (c) uncached, 1 by 1 "
            "| (c)/(a) | (b)/(a) | scoring a / b / c |"
        )
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in budget["rows"]:
            a, b, c = r["a"], r["b"], r["c"]
            print(
                f"| {r['layer']} | {r['split']} | {a['per_epoch_s']:.2f} | {b['per_epoch_s']:.2f} "
                f"| {c['per_epoch_s']:.2f} | {r['c_over_a']:.2f} | {r['b_over_a']:.2f} | "
                f"{a['score_s']:.2f} / {b['score_s']:.2f} / {c['score_s']:.2f} |"
            )
    if "extrapolation" in results:
        x = results["extrapolation"]
        print(
            f"\nreference (extrapolated, {x['reference_epochs']} epochs): "
            f"{x['reference_all_s']:.0f} s in all, {x['reference_without_layer0_s']:.0f} s "
            f"without layer 0; ours {x['ours_all_s']:.0f} s / {x['ours_without_layer0_s']:.0f} "
            f"s (layer 0 {x['ours_layer0']}); ratio {x['ratio_all']:.2f}× / "
            f"{x['ratio_without_layer0']:.2f}×"
        )
        if "ratio_all_in_T" in x:
            print(
                f"part ours from {results['ours_from']['path']}; in each run's T_epoch: "
                f"reference {x['reference_all_T']:.0f} T / {x['reference_without_layer0_T']:.0f}"
                f" T without layer 0, ours {x['ours_without_layer0_T']:.0f} T without layer 0; "
                f"ratio {x['ratio_all_in_T']:.2f}× / {x['ratio_without_layer0_in_T']:.2f}×"
            )
    if "agree" in results:
        agree = results["agree"]
        print(
            f"\nagreement on {results['agree_setup']['dataset']}, layers {agree['layers']}, "
            f"reference {agree['reference_epochs']} epochs"
        )
        print(
            "| layer | split | term | reference | ours | ours − ref | ours fixed | "
            "ours fixed − ref |"
        )
        print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for r in agree["rows"]:
            for term in ("v_suff", "v_min"):
                print(
                    f"| {r['layer']} | {r['split']} | {term} | {r['reference'][term]:.3f} | "
                    f"{r['ours'][term]:.3f} | {r[f'ours_{term}_diff']:+.3f} | "
                    f"{r['ours_fixed'][term]:.3f} | {r[f'ours_fixed_{term}_diff']:+.3f} |"
                )
        print("| layer | split | time ours s | ours fixed s | reference s | ours head epochs |")
        print("| ---: | --- | ---: | ---: | ---: | --- |")
        for r in agree["rows"]:
            print(
                f"| {r['layer']} | {r['split']} | {r['ours']['total_s']:.1f} | "
                f"{r['ours_fixed']['total_s']:.1f} | {r['reference']['total_s']:.1f} | "
                f"{', '.join(map(str, r['ours']['head_epochs']))} |"
            )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("ours", "budget", "agree"),
        default=["ours", "budget", "agree"],
    )
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--budget-epochs", type=int, default=3)
    parser.add_argument("--ref-epochs", type=int, default=REFERENCE_EPOCHS)
    parser.add_argument("--budget-splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument("--budget-layers", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--agree-layers", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument(
        "--ours-from", type=Path, default=None,
        help="with --parts budget: take part ours from this earlier JSON for the extrapolation",
    )  # fmt: skip
    parser.add_argument(
        "--no-layer0", action="store_true",
        help="part ours: measure layers 1..3 only (layer 0 estimated from part budget)",
    )  # fmt: skip
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 300 + 300, 1 setup epoch, decoders ≤ 2 epochs",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    out = args.out or (OUT.with_name("vinfo_speed_quick.json") if args.quick else OUT)
    setup_epochs, time_reps = (1, 1) if args.quick else (SETUP_EPOCHS, 3)
    budget_epochs = 1 if args.quick else args.budget_epochs
    ref_epochs = 2 if args.quick else args.ref_epochs
    default = (
        DecoderConfig(protocol="thesis", max_epochs=2)
        if args.quick
        else DecoderConfig(protocol="thesis")
    )  # quick: capped

    results: Result = json.loads(out.read_text()) if out.exists() else {}
    results["meta"] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "quick": args.quick, "parts": args.parts,
    }  # fmt: skip
    started = time.perf_counter()
    if {"ours", "budget"} & set(args.parts):
        data = load(args.dataset, args.data_dir, args.quick)
        model, info = setup(data, setup_epochs, time_reps)
        results["setup"] = info
        print(f"setup {info}", flush=True)
        if "ours" in args.parts:
            results["ours"] = part_ours(model, data, VInfoConfig(default), not args.no_layer0)
            print(f"ours done at {time.perf_counter() - started:.0f} s", flush=True)
        if "budget" in args.parts:
            results["budget"] = part_budget(
                model, data, budget_epochs, args.budget_splits, args.budget_layers
            )
            print(f"budget done at {time.perf_counter() - started:.0f} s", flush=True)
        if args.ours_from and "budget" in args.parts:  # part ours of an earlier run
            earlier = json.loads(args.ours_from.read_text())
            results["ours"] = earlier["ours"]
            results["ours_from"] = {
                "path": str(args.ours_from), "date": earlier["meta"]["date"],
                "t_epoch_s": earlier["setup"]["t_epoch_s"],
            }  # fmt: skip
        if "budget" in args.parts and ("ours" in args.parts or args.ours_from):
            results["extrapolation"] = extrapolate(results["ours"], results["budget"])
            t_epoch = results["setup"]["t_epoch_s"]
            if args.ours_from:  # each run's times in its own T_epoch
                t_epoch_ours = results["ours_from"]["t_epoch_s"]
                x = results["extrapolation"]
                x["reference_all_T"] = x["reference_all_s"] / t_epoch
                x["reference_without_layer0_T"] = x["reference_without_layer0_s"] / t_epoch
                x["ours_without_layer0_T"] = x["ours_without_layer0_s"] / t_epoch_ours
                x["ours_layer0_T"] = x["ours_layer0_s"] / t_epoch
                x["ratio_without_layer0_in_T"] = (
                    x["reference_without_layer0_T"] / x["ours_without_layer0_T"]
                )
                x["ratio_all_in_T"] = x["reference_all_T"] / (
                    x["ours_without_layer0_T"] + x["ours_layer0_T"]
                )
    if "agree" in args.parts:
        data = load("fashion-mnist-demo", args.data_dir, args.quick)
        model, info = setup(data, setup_epochs, time_reps)
        results["agree_setup"] = info
        results["agree"] = part_agree(model, data, args.agree_layers, ref_epochs, default)
        print(f"agree done at {time.perf_counter() - started:.0f} s", flush=True)
    results["meta"]["wall_s"] = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(results), indent=1))
    print_tables(results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
