"""The check for the first lent GPU: ≤ 8 minutes on one H200, a summary at the end.

    python benchmarks/gpu_check.py [--data-dir DIR] [--out FILE.json]
    python benchmarks/gpu_check.py --prepare-data DIR     (here: a small copy of the data)

1. tests   the tests that touch a device (`pytest -m device`), on CUDA
           (RAYCOMPRESS_TEST_DEVICE=cuda)
2. sweep   the demo sweep with fractional GPU bundles: 0.5 GPU per trial, two 0.25-GPU
           bundles for its decoder tasks; every task's device is read back from the record
3. vinfo   f₊ (cifarnet) 𝒱-information, bf16 + channels_last, heads batched as the device
           batches them (vmap on CUDA, a loop on the CPU): one measurement with every head
           capped at 2 decoder epochs (layers 1–3, both splits) on CUDA and on the CPU, for the
           ratio; then one whole measurement (the default budget) on CUDA, timed

Without CUDA, part 1 runs on the CPU, part 2 is skipped and part 3 runs its CPU half; the
summary says what was skipped. Data: Fashion-MNIST from --data-dir when its files are there
(10 000 training images, the whole test split), else the bundled demo subset (the summary
says which). `--prepare-data DIR` writes a copy small enough to travel with the working tree
(the first 10 000 training images and the test split, 16 MB).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the library from this tree, installed or not
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
from raycompress.sweeps.demo import PARAM_SPACE
PARAM_SPACE = {**PARAM_SPACE, "model": "mnistnet", "seed": tune.grid_search([0, 1, 2])}
RESOURCES = {"trial_cpu": 1, "trial_gpu": 0.5, "decoder_cpu": 1, "decoder_gpu": 0.25,
             "decoder_bundles": 2}
"""


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


def run_sweep() -> dict:
    """The demo sweep on 3 seeds with fractional GPU bundles, through the sweep CLI."""
    from raycompress import record

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fractional.py"
        path.write_text(FRACTIONAL_SWEEP)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "raycompress.sweep", str(path), "--storage-path", folder],
            cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        devices, trials = set(), 0
        for trial in (Path(folder) / "fractional").glob("train_trial_*"):
            trials += 1
            devices.add(("trial", record.newest_model(trial).get("device")))
            for epoch in record.newest_history(trial):
                for result in epoch.vinfo.values():
                    where = result.placement
                    devices.add(("task", where.device if where else None))
    return {
        "exit": done.returncode, "trials": trials, "seconds": seconds,
        "devices": sorted(f"{kind}:{device}" for kind, device in devices),
        "tail": done.stdout[-800:] if done.returncode else "",
    }  # fmt: skip


def run_vinfo(data_dir: Path, cuda: bool) -> dict:
    from raycompress.compute import Compute
    from raycompress.data import load_dataset
    from raycompress.metrics.decoders import DecoderConfig
    from raycompress.metrics.vinfo import VInfoConfig
    from raycompress.models import build_model, make_spec
    from raycompress.plan import measure_in_process
    from raycompress.schema import HEADLINE, VInfoResult
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
    capped = DecoderConfig(max_epochs=2, loss_threshold=0.0, patience=10**6, compute=how)
    budgets = [(f"capped_{d}", d, capped) for d in devices]
    if cuda:
        budgets.append(("whole_cuda", "cuda", DecoderConfig(compute=how)))
    model = build_model(make_spec("cifarnet", data.input_shape, data.num_classes), seed=0)
    list(run_epochs(model, data, TrainConfig(max_epochs=1, compute=how)))  # a trained network
    skip = {"train": VInfoResult(), "test": VInfoResult()}  # layer 0: measured once
    for name, device, decoder in budgets:
        here = data.to(device)
        start = time.perf_counter()
        values = measure_in_process(
            model.to(device), {"train": here.train, "test": here.test}, VInfoConfig(decoder),
            run_seed=0, epoch=1, layer0=dict(skip),
        )  # fmt: skip
        if device == "cuda":
            torch.cuda.synchronize()
        measured = {f"{layer}/{split}": v for (layer, split), v in values.items() if layer}
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
    p.add_argument("--data-dir", type=Path, default=ROOT / ".gpu_data")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--prepare-data", type=Path, help="write a small copy of the data and exit")
    p.add_argument("--parts", default="tests,sweep,vinfo")
    args = p.parse_args()
    if args.prepare_data:
        prepare_data(ROOT.parent / "shared" / "data", args.prepare_data)
        return 0
    cuda = torch.cuda.is_available()
    parts = args.parts.split(",")
    summary: dict = {
        "cuda": torch.cuda.get_device_name() if cuda else None, "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(), "skipped": [],
    }  # fmt: skip
    has_ray = importlib.util.find_spec("ray") is not None
    if not cuda:
        summary["skipped"] += ["tests on CUDA (ran on the CPU)", "sweep", "vinfo on CUDA"]
    elif not has_ray:
        summary["skipped"] += ["sweep: Ray is not installed here"]
    if "tests" in parts:
        summary["tests"] = run_tests(cuda)
        print("tests:", summary["tests"]["summary"], flush=True)
    if "sweep" in parts and cuda and has_ray:
        summary["sweep"] = run_sweep()
        print("sweep:", summary["sweep"]["exit"], summary["sweep"]["devices"], flush=True)
    if "vinfo" in parts:
        summary["vinfo"] = run_vinfo(args.data_dir, cuda)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
