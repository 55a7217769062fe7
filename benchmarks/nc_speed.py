"""Benchmark of the exact neural-collapse metric tr(Σ_W Σ_B⁺) (raycompress.metrics). Not a test.

Part A — cost of `measure_collapse` on a network (`--model`, default the thesis' f₊ "cifarnet",
widths 64/128/256, layer dims D = 16384, 8192, 4096, 256; `--model torchvision:resnet18`: six
stages, D = 65536, 65536, 32768, 16384, 8192, 512) over N CIFAR-sized random inputs (torch.rand,
random labels 0..9, both from `seeds.BenchmarkStream.SYNTHETIC`; CIFAR-10 is not available
offline), batch size 400:

    inference   one plain pass: model.eval(), torch.no_grad(), model.representations(x)
    two_pass    measure_collapse(method="two_pass")                         goal ≤ 2.3× inference
    auto_1GiB   measure_collapse(method="auto"), default 1 GiB feature budget
    auto_2GiB   measure_collapse(method="auto"), 2 GiB budget: every layer single-pass
                                                                            goal ≤ 1.2× inference
    dense_layers  once: the dense reference (below) at every layer with D ≤ 8192, on that
                layer's features from one pass in the same batch order; compared with two_pass

Part B — the dense reference against ours on random features (class means + noise, float32,
N samples, C = 10) at D ∈ {256, 1024, 4096, 16384}:

    dense       Σ_W, Σ_B as dense D×D float64, torch.linalg.pinv(Σ_B, hermitian=True),
                trace(Σ_W @ pinv)
    nc_stats    raycompress.metrics.nc_stats: two passes over the in-memory features
    scatter     WithinScatter single pass (batches of 400), D ≤ 4096 only

The dense reference runs once at D = 4096 (20 s to minutes there) and at D = 16384 only if
its estimate from D = 4096 (covariance phase × 16, pseudo-inverse phase × 64, memory × 16) is
under 5 minutes and fits in the available memory; otherwise it is reported as not run with
that estimate.

Every measurement runs in a fresh subprocess (this script re-invoked with --case NAME) with
torch.set_num_threads(2): wall time of the measured call only, and peak memory = peak RSS
(ru_maxrss) minus the RSS once the model and data are set up. The cases are repeated
(interleaved) and the medians reported; ratios are to the inference pass (Part A) or the dense
reference (Part B) of the same run. Raw results go to benchmarks/out/nc_speed.json.

Run (about 13 minutes on 2 cores; glibc MALLOC_* tunables, if set, are recorded):

    /work/venv/bin/python benchmarks/nc_speed.py
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from raycompress.metrics import WithinScatter, between_class, nc_stats
from raycompress.metrics.collapse import CollapseConfig, measure_collapse
from raycompress.metrics.nc import nc_trace_from_covariance
from raycompress.models import LayeredNet, build_model, make_spec
from raycompress.sampling import Split, batch_indices
from raycompress.seeds import BenchmarkStream, Stream, derive_seed

THREADS = 2
BATCH = 400
NUM_CLASSES = 10
SEED = 0  # every stream below is derived from it by name (`seeds`)
NC_SEED = derive_seed(SEED, Stream.NC_ORDER)  # the NC passes' batch order, as a run's
MIB = 1 << 20
GIB = 1 << 30
OUT = Path(__file__).resolve().parent / "out" / "nc_speed.json"

PART_A: dict[str, tuple[str, int] | None] = {  # case -> (method, feature budget), None = plain
    "inference": None,
    "two_pass": ("two_pass", GIB),
    "auto_1GiB": ("auto", GIB),
    "auto_2GiB": ("auto", 2 * GIB),
}
DENSE_LAYERS = "dense_layers"  # Part A's dense reference at every layer with D ≤ DENSE_AGREE_DIM
DENSE_AGREE_DIM = 8192  # Σ_W, Σ_B of 8192² float64 are 0.5 GiB each: still fits
GOALS = {"two_pass": 2.3, "auto_2GiB": 1.2}  # ratio to the inference pass
DIMS = (256, 1024, 4096, 16384)  # Part B feature dimensions
SCATTER_MAX_DIM = 4096  # the WithinScatter case runs at D ≤ this
DENSE_MAX_DIM = 4096  # the dense reference always runs at D ≤ this; above, only if estimated
DENSE_LIMIT_S = 300.0  # ... to take less than this

Result = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Measurements (run in the child process)
# --------------------------------------------------------------------------------------------


def _rss_mib() -> float:
    """The current resident set size (Linux /proc)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / MIB


def _max_rss_mib() -> float:
    """The high-water mark of the resident set size (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inference_pass(model: LayeredNet, split: Split) -> None:
    """What one pass over the data costs: representations of every layer, in batches."""
    model.eval()
    with torch.no_grad():
        for start in range(0, len(split), BATCH):
            model.representations(split.x[start : start + BATCH])


def _prepare_part_a(case: str, num_samples: int, model_name: str) -> Callable[[], Result]:
    generator = torch.Generator().manual_seed(derive_seed(SEED, BenchmarkStream.SYNTHETIC))
    split = Split(
        torch.rand(num_samples, 3, 32, 32, generator=generator),
        torch.randint(0, NUM_CLASSES, (num_samples,), generator=generator),
    )
    spec = make_spec(model_name, (3, 32, 32), NUM_CLASSES)
    model = build_model(spec, seed=derive_seed(SEED, Stream.MODEL_INIT))
    inference_pass(model, Split(split.x[:BATCH], split.y[:BATCH]))  # warm-up (oneDNN kernels)
    if case == DENSE_LAYERS:
        return lambda: dense_layers(model, split)
    setting = PART_A[case]
    if setting is None:

        def plain() -> Result:
            inference_pass(model, split)
            return {}

        return plain
    method, budget = setting
    config = CollapseConfig(
        batch_size=BATCH, seed=NC_SEED, method=method, feature_budget_bytes=budget
    )

    def work() -> Result:
        report = measure_collapse(model, split, NUM_CLASSES, config)
        return {
            "paths": [stats.path for stats in report.layers.values()],
            "dims": [stats.dim for stats in report.layers.values()],
            "nc_trace": [stats.nc_trace for stats in report.layers.values()],
        }

    return work


def dense_layers(model: LayeredNet, split: Split) -> Result:
    """The dense reference at every layer with D ≤ DENSE_AGREE_DIM, on features from one pass in
    measure_collapse's batch order (the same batches: batch statistics, where a model uses
    them, see the same samples together)."""
    dims = [h[0].numel() for h in model.eval().representations(split.x[:2])[0]]
    layers = [layer for layer, dim in enumerate(dims, 1) if dim <= DENSE_AGREE_DIM]
    order = batch_indices(len(split), BATCH, torch.Generator().manual_seed(NC_SEED))
    kept: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    with torch.no_grad():
        for index in order:
            reps, _ = model.representations(split.x[index], depth=max(layers))
            for layer in layers:
                kept[layer].append(reps[layer - 1].flatten(1))
    labels = torch.cat([split.y[index] for index in order])
    traces = {
        layer: dense_reference(torch.cat(chunks), labels, NUM_CLASSES)
        for layer, chunks in kept.items()
    }
    return {"dense_nc_trace": traces, "dims": dims}


def random_features(num_samples: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means + noise, float32 (N, D), labels (N,); filled in chunks (no transient copy)."""
    generator = torch.Generator().manual_seed(derive_seed(SEED, BenchmarkStream.SYNTHETIC))
    means = torch.randn(NUM_CLASSES, dim, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (num_samples,), generator=generator)
    features = torch.empty(num_samples, dim)
    for rows in torch.arange(num_samples).split(1000):
        noise = torch.randn(rows.numel(), dim, generator=generator)
        features[rows] = means[labels[rows]] + noise
    return features, labels


def dense_covariances(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_W and Σ_B as dense D×D float64 matrices: O(N D²) time."""
    h = features.double()
    n = h.shape[0]
    counts = torch.bincount(labels, minlength=num_classes).double()
    means = torch.zeros(num_classes, h.shape[1], dtype=torch.float64).index_add_(0, labels, h)
    means /= counts[:, None]
    h -= means[labels]
    sigma_w = h.T @ h / n
    centred = means - counts @ means / n
    sigma_b = (centred.T * (counts / n)) @ centred
    return sigma_w, sigma_b


def dense_trace(sigma_w: torch.Tensor, sigma_b: torch.Tensor) -> float:
    """tr(Σ_W Σ_B⁺) with torch's Hermitian pseudo-inverse: O(D³) time."""
    pinv = torch.linalg.pinv(sigma_b, hermitian=True)
    return float(torch.trace(sigma_w @ pinv))


def dense_reference(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """The dense reference tr(Σ_W Σ_B⁺)."""
    return dense_trace(*dense_covariances(features, labels, num_classes))


def scatter_single_pass(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """tr(Σ_W Σ_B⁺) from one pass of the mergeable within-class scatter, batches of 400."""
    acc = WithinScatter(num_classes, features.shape[1])
    for h, y in zip(features.split(BATCH), labels.split(BATCH), strict=True):
        acc.update(h, y)
    between = between_class(acc.result())
    return nc_trace_from_covariance(acc.within_covariance(), between)


PART_B: dict[str, Callable[[torch.Tensor, torch.Tensor, int], float]] = {
    "dense": dense_reference,
    "nc_stats": lambda h, y, c: nc_stats(h, y, c).nc_trace,
    "scatter": scatter_single_pass,
}


def _prepare_part_b(case: str, num_samples: int) -> Callable[[], Result]:
    method, dim = case.split("@")
    features, labels = random_features(num_samples, int(dim))
    if method != "dense":
        function = PART_B[method]
        return lambda: {"value": function(features, labels, NUM_CLASSES)}

    def dense_by_phase() -> Result:
        """dense_reference, with the time and high-water RSS after each of its two phases."""
        start = time.perf_counter()
        sigma_w, sigma_b = dense_covariances(features, labels, NUM_CLASSES)
        middle, covariance_max_rss = time.perf_counter(), _max_rss_mib()
        value = dense_trace(sigma_w, sigma_b)
        phases = {
            "covariances_s": middle - start,
            "pinv_trace_s": time.perf_counter() - middle,
            "covariances_max_rss_mib": covariance_max_rss,
        }
        return {"value": value, "phases": phases}

    return dense_by_phase


def run_case(case: str, num_samples: int, model_name: str) -> Result:
    """Set up, then time one call and its peak memory above the set-up RSS."""
    torch.set_num_threads(THREADS)
    if case in PART_A or case == DENSE_LAYERS:
        work = _prepare_part_a(case, num_samples, model_name)
    else:
        work = _prepare_part_b(case, num_samples)
    gc.collect()
    load = os.getloadavg()[0]  # other work on the machine shows here (this process idles)
    setup_rss, setup_max_rss = _rss_mib(), _max_rss_mib()
    start = time.perf_counter()
    extra = work()
    seconds = time.perf_counter() - start
    peak = _max_rss_mib()
    return {
        "case": case,
        "seconds": seconds,
        "setup_rss_mib": setup_rss,
        "peak_rss_mib": peak,
        "peak_delta_mib": peak - setup_rss,
        # False: the set-up's own high-water mark was never exceeded, the delta is an upper bound
        "peak_set_by_case": peak > setup_max_rss,
        "load_1min_before": load,
        **extra,
    }


# --------------------------------------------------------------------------------------------
# Orchestration (parent process)
# --------------------------------------------------------------------------------------------


def spawn(case: str, num_samples: int, model_name: str = "cifarnet") -> Result:
    command = [
        sys.executable, __file__, "--case", case, "--num-samples", str(num_samples),
        "--model", model_name,
    ]  # fmt: skip
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    result: Result = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"  {case:<16} {result['seconds']:8.2f} s  peak +{result['peak_delta_mib']:7.0f} MiB",
        file=sys.stderr,
        flush=True,
    )
    return result


def run_interleaved(
    plan: dict[str, int], num_samples: int, model_name: str = "cifarnet"
) -> dict[str, list[Result]]:
    """Run every case of plan (case -> repeats) in rounds, each case once per round."""
    runs: dict[str, list[Result]] = {case: [] for case in plan}
    rounds = max(plan.values())
    for round_ in range(rounds):
        print(f"round {round_ + 1}/{rounds}", file=sys.stderr, flush=True)
        for case, repeats in plan.items():
            if round_ < repeats:
                runs[case].append(spawn(case, num_samples, model_name))
    return runs


def _median(runs: list[Result], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _rel(value: float, reference: float) -> float:
    return abs(value - reference) / abs(reference)


def summarise_part_a(runs: dict[str, list[Result]]) -> list[Result]:
    base = _median(runs["inference"], "seconds")
    reference = runs["two_pass"][0]["nc_trace"]
    rows = []
    for case, case_runs in runs.items():
        if case == DENSE_LAYERS:
            continue
        per_repeat = [
            run["seconds"] / baseline["seconds"]
            for run, baseline in zip(case_runs, runs["inference"], strict=True)
        ]
        median_s = _median(case_runs, "seconds")
        goal = GOALS.get(case)
        traces = case_runs[0].get("nc_trace")
        agreement = None
        if traces is not None:
            agreement = max(_rel(t, r) for t, r in zip(traces, reference, strict=True))
        row: Result = {"case": case, "paths": case_runs[0].get("paths")}
        row["median_s"] = median_s
        row["ratio"] = median_s / base
        row["per_repeat_ratios"] = per_repeat
        row["goal"] = goal
        row["goal_met"] = None if goal is None else median_s / base <= goal
        row["peak_delta_mib"] = _median(case_runs, "peak_delta_mib")
        row["nc_trace"] = traces
        row["max_rel_diff_vs_two_pass"] = agreement
        rows.append(row)
    return rows


def summarise_part_b(
    runs: dict[str, list[Result]], dims: list[int], num_samples: int, estimate: Result | None
) -> list[Result]:
    rows = []
    for dim in dims:
        dense = runs.get(f"dense@{dim}")
        dense_s = None if dense is None else _median(dense, "seconds")
        dense_value = None if dense is None else dense[0]["value"]
        for method in PART_B:
            case_runs = runs.get(f"{method}@{dim}")
            row: Result = {"dim": dim, "method": method, "num_samples": num_samples}
            if case_runs is None:
                if method == "dense" and estimate and estimate["dim"] == dim:
                    rows.append(row | {"not_run": True} | estimate)
                continue
            median_s = _median(case_runs, "seconds")
            value = case_runs[0]["value"]
            row["median_s"] = median_s
            row["ratio_to_dense"] = None if dense_s is None else median_s / dense_s
            row["peak_delta_mib"] = _median(case_runs, "peak_delta_mib")
            row["peak_set_by_case"] = all(run["peak_set_by_case"] for run in case_runs)
            row["value"] = value
            row["rel_diff_vs_dense"] = None if dense_value is None else _rel(value, dense_value)
            row["runs"] = len(case_runs)
            rows.append(row)
    return rows


def _available_mib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def run_or_estimate_dense(
    runs: dict[str, list[Result]], dims: list[int], num_samples: int
) -> Result | None:
    """The dense reference at the largest D above DENSE_MAX_DIM, from the largest D₀ it ran at:
    time = covariance phase × (D/D₀)² (O(N D²)) + pseudo-inverse phase × (D/D₀)³ (O(D³));
    memory = peak × (D/D₀)², an upper bound (the N×D float64 copies grow only as D/D₀).
    Run it once if that is under DENSE_LIMIT_S and fits in memory; else return the estimate."""
    run_dims = [dim for dim in dims if dim <= DENSE_MAX_DIM]
    target = max(dims)
    if target <= DENSE_MAX_DIM or not run_dims:
        return None
    base = runs[f"dense@{max(run_dims)}"]
    scale = target / max(run_dims)
    covariances_s = statistics.median(run["phases"]["covariances_s"] for run in base)
    pinv_s = statistics.median(run["phases"]["pinv_trace_s"] for run in base)
    estimate = {
        "dim": target,
        "estimated_from_dim": max(run_dims),
        "estimated_s": covariances_s * scale**2 + pinv_s * scale**3,
        "estimated_peak_mib": _median(base, "peak_delta_mib") * scale**2,
    }
    fits = estimate["estimated_peak_mib"] < 0.8 * _available_mib()
    if estimate["estimated_s"] >= DENSE_LIMIT_S or not fits:
        return estimate
    runs[f"dense@{target}"] = [spawn(f"dense@{target}", num_samples)]
    return None


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def dense_agreement(runs: dict[str, list[Result]]) -> list[Result]:
    """Per layer with a dense reference: ours (two_pass) against it."""
    dense = runs[DENSE_LAYERS][0]
    ours = runs["two_pass"][0]["nc_trace"]
    return [
        {"layer": int(layer), "dim": dense["dims"][int(layer) - 1], "dense": value,
         "ours": ours[int(layer) - 1], "rel_diff": _rel(ours[int(layer) - 1], value)}
        for layer, value in dense["dense_nc_trace"].items()
    ]  # fmt: skip


def print_part_a(rows: list[Result], num_samples: int, model_name: str) -> None:
    print(f"\nPart A: {model_name}, N = {num_samples}, batch {BATCH}, {THREADS} threads")
    print(
        f"{'case':<11} {'paths (layers 1-L)':<40} {'median s':>9} {'× inference':>12} "
        f"{'goal':<11} {'peak ΔRSS MiB':>14} {'rel diff vs two_pass':>20}"
    )
    for row in rows:
        paths = "—" if row["paths"] is None else ", ".join(row["paths"])
        goal = "—"
        if row["goal"] is not None:
            goal = f"≤{row['goal']} " + ("met" if row["goal_met"] else "MISSED")
        print(
            f"{row['case']:<11} {paths:<40} {row['median_s']:9.2f} {row['ratio']:12.2f} "
            f"{goal:<11} {row['peak_delta_mib']:14.0f} "
            f"{_fmt(row['max_rel_diff_vs_two_pass'], '20.1e')}"
        )


def print_part_b(rows: list[Result], num_samples: int) -> None:
    print(f"\nPart B: dense reference vs ours, N = {num_samples}, C = {NUM_CLASSES}, float32 input")
    print(
        f"{'D':>6} {'method':<9} {'median s':>9} {'× dense':>8} {'peak ΔRSS MiB':>14} "
        f"{'tr(Σ_W Σ_B⁺)':>14} {'rel diff':>9} {'runs':>5}"
    )
    for row in rows:
        if row.get("not_run"):
            minutes, gib = row["estimated_s"] / 60, row["estimated_peak_mib"] / 1024
            print(
                f"{row['dim']:>6} {row['method']:<9} not run (estimated ≈{minutes:.0f} min, "
                f"≈{gib:.0f} GiB)"
            )
            continue
        star = "" if row["peak_set_by_case"] else "*"
        print(
            f"{row['dim']:>6} {row['method']:<9} {row['median_s']:9.2f} "
            f"{_fmt(row['ratio_to_dense'], '8.3f')} {row['peak_delta_mib']:13.0f}{star:1} "
            f"{row['value']:14.6e} {_fmt(row['rel_diff_vs_dense'], '9.1e')} {row['runs']:5d}"
        )
    if not all(row.get("peak_set_by_case", True) for row in rows):
        print("* the set-up's own RSS high-water mark was not exceeded: an upper bound")


def environment() -> Result:
    cpu = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).as_posix(), *sys.argv]),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "threads": THREADS,
        "torch": torch.__version__,
        "python": platform.python_version(),
        # glibc malloc tunables change the cost of the large per-batch temporaries
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help="internal: run one case and print its result as JSON")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per case")
    parser.add_argument("--parts", default="AB", help="which parts to run: A, B or AB")
    parser.add_argument(
        "--dims", type=int, nargs="+", default=list(DIMS), help="Part B feature dimensions"
    )
    parser.add_argument(
        "--model", default="cifarnet", help="Part A's network, e.g. torchvision:resnet18"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args.case, args.num_samples, args.model)))
        return

    started = time.perf_counter()
    record: Result = {
        "environment": environment(),
        "num_samples": args.num_samples,
        "repeats": args.repeats,
        "model": args.model,
    }
    if "A" in args.parts:
        plan_a = {**dict.fromkeys(PART_A, args.repeats), DENSE_LAYERS: 1}
        runs_a = run_interleaved(plan_a, args.num_samples, args.model)
        record["part_a"] = {
            "rows": summarise_part_a(runs_a), "dense": dense_agreement(runs_a), "runs": runs_a,
        }  # fmt: skip
    if "B" in args.parts:
        limits = {"dense": DENSE_MAX_DIM, "scatter": SCATTER_MAX_DIM}
        plan = {
            f"{method}@{dim}": args.repeats
            for dim in args.dims
            for method in PART_B
            if dim <= limits.get(method, dim)
        }
        # The dense reference is the yardstick, not the subject, and takes minutes at the
        # largest D it runs at: once there keeps the whole script near 15 minutes.
        largest_dense = max((dim for dim in args.dims if dim <= DENSE_MAX_DIM), default=None)
        if largest_dense is not None and largest_dense >= 4096:
            plan[f"dense@{largest_dense}"] = 1
        runs_b = run_interleaved(plan, args.num_samples)
        estimate = run_or_estimate_dense(runs_b, args.dims, args.num_samples)
        record["part_b"] = {
            "rows": summarise_part_b(runs_b, args.dims, args.num_samples, estimate),
            "runs": runs_b,
        }
    record["total_s"] = time.perf_counter() - started

    if "part_a" in record:
        print_part_a(record["part_a"]["rows"], args.num_samples, args.model)
        for row in record["part_a"]["dense"]:
            print(
                f"layer {row['layer']} (D = {row['dim']}): dense {row['dense']:.10g}, ours "
                f"(two_pass) {row['ours']:.10g}, relative difference {row['rel_diff']:.1e}"
            )
    if "part_b" in record:
        print_part_b(record["part_b"]["rows"], args.num_samples)
    print(f"\ntotal {record['total_s'] / 60:.1f} min; raw results: {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
