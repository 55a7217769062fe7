"""The check for a GPU machine: ≤ 8 minutes on one H200, a summary at the end.

    python benchmarks/gpu_check.py --prepare-carry .gpu_carry   (here: Ray, wheels, data; < 64 MiB)
    python3 benchmarks/gpu_check.py --carry .gpu_carry --out FILE.json        (on the GPU machine)
    python benchmarks/gpu_check.py --carry .gpu_carry --parts sweep --fake-gpus 1   (a rehearsal)

0. ray     with --carry: Ray unpacked from the carry (`scripts/gpu_carry.py`), `import ray,
           ray.tune` and a `ray.init()` whose resources show the GPU
1. tests   the tests that touch a device (`pytest -m device`), on CUDA
           (RAYCOMPRESS_TEST_DEVICE=cuda)
2. sweep   the demo sweep on five seeds with the GPU sweeps' shares (`sweeps.GPU_SHARES`:
           0.125 GPU for training and a 0.125-GPU bundle for the decoder tasks), so that four
           trials share one GPU and the fifth waits; how many trials ran at once, each task's
           device and placement group, and the values recorded are read back from the
           records, and the peak GPU memory of all processes and of any one (nvidia-smi)
3. vinfo   f₊ (cifarnet) 𝒱-information, bf16 + channels_last, heads batched as the device
           batches them (vmap on CUDA, a loop on the CPU): one measurement with every head
           capped at 2 decoder epochs (layers 1–3, both splits) on CUDA and on the CPU, for the
           ratio; then one whole measurement (the default budget) on CUDA, timed

Without CUDA, part 1 runs on the CPU, part 2 is skipped unless --fake-gpus gives the embedded
Ray logical GPUs (the tasks then run on the CPU and say so), and part 3 runs its CPU half; the
summary says what was skipped. Data: Fashion-MNIST from --data-dir (default: the carry's
data/, else .gpu_data) when its files are there (10 000 training images, the whole test split),
else the bundled demo subset (the summary says which). `--prepare-data DIR` writes only the
data (the first 10 000 training images and the test split, 16 MB).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the library from this tree, installed or not
sys.path.insert(0, str(ROOT / "scripts"))  # the carry's packer: scripts/gpu_carry.py
import gpu_carry  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "gpu_check.json"
RAW = Path("FashionMNIST") / "raw"
IDX_FILES = {  # file → (header bytes, bytes per item)
    "train-images-idx3-ubyte": (16, 784),
    "train-labels-idx1-ubyte": (8, 1),
    "t10k-images-idx3-ubyte": (16, 784),
    "t10k-labels-idx1-ubyte": (8, 1),
}
FRACTIONAL_SWEEP = """
from ray import tune
from raycompress.sweeps import GPU_SHARES
PARAM_SPACE = {"dataset": "fashion-mnist-demo", "model": "mnistnet", "train_size": 500,
               "batch_size": 100, "epochs": 3, "vinfo_schedule": "every", "decoder_epochs": 3,
               "vinfo_protocol": "thesis", "held_out": True,
               "seed": tune.grid_search([0, 1, 2, 3, 4])}
RESOURCES = {**GPU_SHARES, "trial_cpu": 0.5, "decoder_cpu": 0.5}  # the GPU shares as shipped
"""
MEMORY_QUERY = [
    "nvidia-smi",
    "--query-compute-apps=pid,used_memory",
    "--format=csv,noheader,nounits",
]


def prepare_data(source: Path, target: Path, train: int = 10_000) -> None:
    """The first `train` training images and labels and the whole test split, in idx."""
    (target / RAW).mkdir(parents=True, exist_ok=True)
    for name, (header, item) in IDX_FILES.items():
        data = (source / RAW / name).read_bytes()
        if name.startswith("train"):
            count = train.to_bytes(4, "big")
            data = data[:4] + count + data[8:header] + data[header : header + train * item]
        (target / RAW / name).write_bytes(data)


# The modules of the device tests: none imports Ray, which a GPU machine may not have.
DEVICE_TESTS = ["tests/test_compute.py", "tests/test_metrics_collapse.py",
                "tests/test_metrics_vinfo.py"]  # fmt: skip


def environment(**extra: str) -> dict[str, str]:
    """This environment, with the source tree importable (an uninstalled copy runs too)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_tests(cuda: bool) -> dict:
    env = environment(RAYCOMPRESS_TEST_DEVICE="cuda" if cuda else "cpu")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "device", "-p", "no:cacheprovider",
         *DEVICE_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return {
        "device": env["RAYCOMPRESS_TEST_DEVICE"], "exit": done.returncode,
        "summary": lines[-1] if lines else done.stderr[-500:], "failed": failed,
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


def run_sweep(fake_gpus: int | None) -> dict:
    """`FRACTIONAL_SWEEP` through the sweep CLI (with `fake_gpus` logical GPUs and 4 logical
    CPUs for the embedded Ray, when given); what its records say about where everything ran."""
    from raycompress import record
    from raycompress.schema import Quantity

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fractional.py"
        path.write_text(FRACTIONAL_SWEEP)
        sized = [] if fake_gpus is None else ["--num-gpus", str(fake_gpus), "--num-cpus", "6"]
        start = time.perf_counter()
        peaks: dict[str, float] = {}
        sampler = threading.Thread(target=sample_gpu_memory, args=(peaks,), daemon=True)
        sampler.start()
        done = subprocess.run(
            [sys.executable, "-m", "raycompress.sweep", str(path), "--storage-path", folder,
             *sized],
            cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        peaks["done"] = 1
        seconds = time.perf_counter() - start
        found = sorted((Path(folder) / "fractional").glob("train_trial_*"))
        trials = [trial_facts(trial, record, Quantity.SUFFICIENCY) for trial in found]
    first = min((t["start"] for t in trials), default=0)
    for t in trials:  # seconds since the first trial started
        t["start"], t["end"] = round(t["start"] - first, 1), round(t["end"] - first, 1)
    # running when another starts; result.json's timestamps are whole seconds, hence the margin
    at_once = [sum(t["start"] <= s["start"] < t["end"] - 1 for t in trials) for s in trials]
    return {
        "exit": done.returncode, "seconds": seconds, "trials": trials,
        "most_trials_at_once": max(at_once, default=0),
        # the GPU sweeps' shares assume ≤ 4 GiB a trial (sweeps/__init__.py): these say
        "peak_gpu_mib_all": peaks.get("all"), "peak_gpu_mib_one_process": peaks.get("one"),
        "tail": done.stdout[-800:] + done.stderr[-800:] if done.returncode else "",
    }  # fmt: skip


def sample_gpu_memory(peaks: dict[str, float], every: float = 0.5) -> None:
    """Until `peaks` holds "done": the most GPU memory (MiB) that all processes ("all") and
    that any one process ("one": a trial or a decoder task) held at once, read from
    nvidia-smi every `every` seconds; nothing where there is no nvidia-smi."""
    while "done" not in peaks:
        try:
            lines = subprocess.run(MEMORY_QUERY, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return
        used = [float(line.split(",")[1]) for line in lines.stdout.splitlines() if "," in line]
        if used:
            peaks["all"] = max(peaks.get("all", 0.0), sum(used))
            peaks["one"] = max(peaks.get("one", 0.0), max(used))
        time.sleep(every)


def trial_facts(trial: Path, record: Any, quantity: Any) -> dict:
    """One trial's device, its tasks' devices and placement groups, the finite values of
    `quantity` it recorded, and its start and end (result.json's timestamps, whole seconds)."""
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    model = record.newest_model(trial)
    measured = [r for epoch in record.newest_history(trial) for r in epoch.vinfo.values()]
    places = [r.placement for r in measured if r.placement is not None]
    return {
        "device": model.get("device"), "device_note": model.get("device_note"),
        "tasks": len(measured),
        "task_devices": sorted({p.device for p in places}),
        "task_groups": sorted({p.placement_group for p in places}),
        "values": sum(math.isfinite(r.value(quantity)) for r in measured),
        "start": results[0]["timestamp"] - results[0]["time_total_s"],
        "end": results[-1]["timestamp"],
    }  # fmt: skip


def check_ray(fake_gpus: int | None) -> dict:
    """`import ray, ray.tune` and one `ray.init()` in a fresh interpreter: Ray's version and
    the resources it sees (GPUs among them)."""
    code = (
        "import json, ray, ray.tune\n"
        f"ray.init(include_dashboard=False, num_gpus={fake_gpus!r})\n"
        "print(json.dumps({'ray': ray.__version__, 'resources': ray.cluster_resources()}))\n"
        "ray.shutdown()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment(), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    if done.returncode:
        return {"exit": done.returncode, "error": done.stderr[-1500:]}
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {"exit": 0, "ray": found["ray"], "gpus": found["resources"].get("GPU", 0),
            "cpus": found["resources"].get("CPU", 0)}  # fmt: skip


def run_vinfo(data_dir: Path, cuda: bool) -> dict:
    from raycompress.compute import Compute
    from raycompress.data import load_dataset
    from raycompress.metrics.decoders import DecoderConfig
    from raycompress.metrics.vinfo import VInfoConfig
    from raycompress.models import build_model, make_spec
    from raycompress.plan import measure_in_process
    from raycompress.schema import HEADLINE, NETWORK, VInfoResult
    from raycompress.seeds import Stream, derive_seed
    from raycompress.training import TrainConfig, run_epochs

    real = (data_dir / RAW / "t10k-images-idx3-ubyte").is_file()
    if real:
        data = load_dataset("fashion-mnist", data_dir, download=False, train_size=10_000)
    else:
        data = load_dataset("fashion-mnist-demo")
    how = Compute("bf16")
    out: dict = {"data": f"{'fashion-mnist' if real else 'demo'}: {len(data.train)} train, "
                         f"{len(data.test)} test"}  # fmt: skip
    devices = ["cuda", "cpu"] if cuda else ["cpu"]
    capped = DecoderConfig(
        protocol="thesis", max_epochs=2, loss_threshold=0.0, patience=10**6, compute=how
    )
    budgets = [(f"capped_{d}", d, capped) for d in devices]
    if cuda:
        budgets.append(("whole_cuda", "cuda", DecoderConfig(protocol="thesis", compute=how)))
    spec = make_spec("cifarnet", data.input_shape, data.num_classes)
    model = build_model(spec, seed=derive_seed(0, Stream.MODEL_INIT))  # as a run of seed 0
    list(run_epochs(model, data, TrainConfig(max_epochs=1, compute=how)))  # a trained network
    skip = {(s, NETWORK): VInfoResult() for s in ("train", "test")}  # layer 0: measured once
    for name, device, decoder in budgets:
        here = data.to(device)
        start = time.perf_counter()
        values = measure_in_process(
            model.to(device), {"train": here.train, "test": here.test}, VInfoConfig(decoder),
            run_seed=0, epoch=1, layer0=dict(skip),
        )  # fmt: skip
        if device == "cuda":
            torch.cuda.synchronize()
        measured = {f"{layer}/{split}": v for (layer, split, _), v in values.items() if layer}
        out[name] = {
            "seconds": time.perf_counter() - start,
            "batching": sorted({v.decoders.batching for v in measured.values() if v.decoders}),
            "values": {key: [v.value(q) for q in HEADLINE] for key, v in measured.items()},
        }
        print(f"vinfo {name}: {out[name]['seconds']:.1f} s", flush=True)
    if cuda:
        out["capped_cuda_speedup"] = out["capped_cpu"]["seconds"] / out["capped_cuda"]["seconds"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, help="default: the carry's data/, else .gpu_data")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--prepare-data", type=Path, help="write a small copy of the data and exit")
    p.add_argument("--prepare-carry", type=Path, help="write the carry folder here and exit")
    p.add_argument("--carry", type=Path, help="install Ray from this carry folder first")
    p.add_argument("--fake-gpus", type=int, help="logical GPUs for the sweep part (no CUDA)")
    p.add_argument("--parts", default="tests,sweep,vinfo")
    args = p.parse_args()
    shared = ROOT.parent / "shared" / "data"
    if args.prepare_data:
        prepare_data(shared, args.prepare_data)
        return 0
    if args.prepare_carry:
        sizes = gpu_carry.prepare_carry(args.prepare_carry, lambda d: prepare_data(shared, d))
        print(json.dumps(sizes, indent=1))
        print(f"carry {args.prepare_carry}: {sizes['total_bytes'] / 2**20:.1f} MiB with the "
              f"working tree (limit {gpu_carry.LIMIT >> 20} MiB)")  # fmt: skip
        return 0
    cuda = torch.cuda.is_available()
    parts = args.parts.split(",")
    summary: dict = {
        "cuda": torch.cuda.get_device_name() if cuda else None, "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(), "skipped": [],
    }  # fmt: skip
    if args.carry:
        summary["site"] = str(gpu_carry.use_carry(args.carry))
    data_dir = args.data_dir or (args.carry / gpu_carry.DATA if args.carry else ROOT / ".gpu_data")
    has_ray = importlib.util.find_spec("ray") is not None
    if has_ray:
        summary["ray"] = check_ray(args.fake_gpus)
        print("ray:", summary["ray"], flush=True)
    sweep = (cuda or args.fake_gpus is not None) and has_ray
    if not cuda:
        summary["skipped"] += ["tests on CUDA (ran on the CPU)", "vinfo on CUDA"]
    if not has_ray:
        summary["skipped"] += ["sweep: Ray is not installed here (bring it: --carry)"]
    elif not sweep:
        summary["skipped"] += ["sweep: no GPU (rehearse with --fake-gpus 1)"]
    if "tests" in parts:
        summary["tests"] = run_tests(cuda)
        print("tests:", summary["tests"]["summary"], flush=True)
    if "sweep" in parts and sweep:
        summary["sweep"] = run_sweep(args.fake_gpus)
        print("sweep:", json.dumps(summary["sweep"]), flush=True)
    if "vinfo" in parts:
        summary["vinfo"] = run_vinfo(data_dir, cuda)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
