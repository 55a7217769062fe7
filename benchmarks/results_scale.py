"""Results at the scale of the generalisation literature: a Jiang-size experiment loaded from a
local disk and from object storage, against the loader before the columnar record.

    python benchmarks/results_scale.py [--trials 4374] [--baseline-trials 300] [--work DIR]

The experiment: 7 axes × 3 values × 2 seeds = 4 374 trials, each 27 epochs of a real record
(an MLP of three hidden layers measured every epoch: neural collapse at 4 layers, 𝒱-information
with held-out sufficiency at l = 0..3, both splits; 253 rows an epoch, 6 831 a trial, 29.9 M in
all). The record is made once by `training.Run`; each trial's rows are that record's
`record.rows_table` under the trial's identity, its values scaled by a seeded factor so that
no two trials compress alike, written by the product's writer (`record.table_bytes`,
`storage.write_atomically`) into a trial folder laid out as Tune lays it out. `results.
consolidate` then writes the consolidated file. The same folder goes to an S3 API on loopback
(a moto server in its own process).

Each load runs in a fresh process, which reports its seconds, the frame's rows and bytes
(`memory_usage(deep=True)`) and its peak RSS above what it held before loading (the
kernel's high-water mark, reset just before the load). The baseline
is the loader of the commit before the columnar record (`git show e1de0ee:…`), on
`--baseline-trials` trials written as that loader reads them (history.json): rows/s. Writes
benchmarks/out/results_scale.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from pyarrow import fs  # noqa: E402

from raycompress import record, results, storage  # noqa: E402
from raycompress.data import load_dataset  # noqa: E402
from raycompress.metrics.decoders import DecoderConfig  # noqa: E402
from raycompress.metrics.vinfo import VInfoConfig  # noqa: E402
from raycompress.models import build_model, make_spec  # noqa: E402
from raycompress.schema import EpochRecord  # noqa: E402
from raycompress.seeds import BenchmarkStream, Stream, derive_seed  # noqa: E402
from raycompress.training import Run, TrainConfig  # noqa: E402

SEED = 0
EPOCHS = 27
AXES = {f"axis{i}": [0.5, 1.0, 2.0] for i in range(7)}
BASELINE_COMMIT = "e1de0ee"  # the loader before the columnar record
BUCKET = "rc-scale"

# What one load does, in a fresh interpreter: argv = module file, experiment, what to select.
LOADER = """
import json, sys, time, importlib.util
spec = importlib.util.spec_from_file_location("loader", sys.argv[1])
loader = sys.modules["loader"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loader)
def status(key):  # kB, from /proc/self/status
    line = next(l for l in open("/proc/self/status") if l.startswith(key))
    return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
before = status("VmRSS:")
select = json.loads(sys.argv[3])
start = time.perf_counter()
frame = loader.load(sys.argv[2], **select)
seconds = time.perf_counter() - start
peak = status("VmHWM:")
print(json.dumps({"seconds": seconds, "rows": len(frame),
                  "frame_bytes": int(frame.memory_usage(deep=True).sum()),
                  "peak_rss_bytes": (peak - before) * 1024}))
"""


def one_record() -> list[EpochRecord]:
    """27 epochs of a real run, measured every epoch (neural collapse and 𝒱-information)."""
    data = load_dataset("fashion-mnist-demo", train_size=200, test_size=200)
    spec = make_spec("mlp", data.input_shape, data.num_classes, widths=(16, 8, 8))
    model = build_model(spec, seed=derive_seed(SEED, Stream.MODEL_INIT))
    vinfo = VInfoConfig(
        DecoderConfig(protocol="thesis", batch_size=100, max_epochs=1), held_out=True
    )
    train = TrainConfig(batch_size=100, max_epochs=EPOCHS, loss_threshold=0, seed=SEED)
    run = Run(model, data, train, vinfo=vinfo)
    return [run.step() for _ in range(EPOCHS)]


def identities(trials: int) -> list[dict]:
    grid = itertools.product(*AXES.values(), range(2))
    return [
        {"dataset": "fashion-mnist", "model": "mlp", **dict(zip(AXES, point[:-1], strict=True)),
         "seed": point[-1]}
        for point in itertools.islice(grid, trials)
    ]  # fmt: skip


def write_experiment(folder: Path, history: list[EpochRecord], trials: int) -> int:
    """The columnar experiment; returns its rows."""
    rng = np.random.default_rng(derive_seed(SEED, BenchmarkStream.SYNTHETIC))
    folder.mkdir(parents=True)
    record.write_description(folder, {"sweep": "scale", "axes": [*AXES, "seed"]})
    rows = 0
    for i, settings in enumerate(identities(trials)):
        trial = folder / f"train_trial_{i:05d}_{i}"
        (trial / "checkpoint_000026").mkdir(parents=True)
        (trial / record.PARAMS_FILE).write_text(json.dumps(settings))
        table = record.rows_table(history, {record.TRIAL_ID: f"{i:05d}", **settings})
        values = pc.multiply(table["value"], pa.scalar(float(rng.uniform(0.5, 1.5))))
        table = table.set_column(table.schema.get_field_index("value"), "value", values)
        target = trial / "checkpoint_000026" / record.ROWS_FILE
        storage.write_atomically(target, record.table_bytes(table))
        rows += table.num_rows
    return rows


def write_legacy(folder: Path, history: list[EpochRecord], trials: int) -> None:
    """`trials` trials as the loader before the columnar record reads them."""
    folder.mkdir(parents=True)
    record.write_description(folder, {"sweep": "scale", "axes": [*AXES, "seed"]})
    for i, settings in enumerate(identities(trials)):
        trial = folder / f"train_trial_{i:05d}_{i}"
        (trial / "checkpoint_000026").mkdir(parents=True)
        (trial / record.PARAMS_FILE).write_text(json.dumps(settings))
        record.write_history(trial / "checkpoint_000026", history)
        (trial / record.RESULT_FILE).write_text(json.dumps({"trial_id": f"{i:05d}"}) + "\n")


def timed_load(module: Path, experiment: str, select: dict, env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", LOADER, str(module), experiment, json.dumps(select)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"loading {experiment} failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["rows_per_s"] = out["rows"] / out["seconds"]
    out["bytes_per_row"] = out["frame_bytes"] / max(1, out["rows"])
    out["peak_over_frame"] = out["peak_rss_bytes"] / max(1, out["frame_bytes"])
    print(f"  {experiment} {select or ''}: {out['rows']:,} rows in {out['seconds']:.2f} s "
          f"({out['rows_per_s'] / 1e6:.2f} M rows/s), {out['bytes_per_row']:.1f} B/row, "
          f"peak RSS {out['peak_over_frame']:.2f}× the frame", flush=True)  # fmt: skip
    return out


def moto(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.1)
    raise RuntimeError("the moto server did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=4374)
    p.add_argument("--baseline-trials", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3, help="of the quick loads (medians)")
    p.add_argument("--work", type=Path, default=Path("/tmp/raycompress_results_scale"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/results_scale.json")
    args = p.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    columnar, legacy = args.work / "columnar", args.work / "legacy"
    history = one_record()
    start = time.perf_counter()
    rows = write_experiment(columnar, history, args.trials)
    written = time.perf_counter() - start
    print(f"wrote {args.trials} trials, {rows:,} rows in {written:.0f} s", flush=True)
    write_legacy(legacy, history, args.baseline_trials)
    before = args.work / "results_before.py"
    shown = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:raycompress/results.py"],
                           cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    before.write_text(shown.stdout)
    ours = ROOT / "raycompress" / "results.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out: dict = {"trials": args.trials, "rows": rows, "write_s": written}
    print("baseline (the loader before the columnar record):")
    out["baseline"] = timed_load(before, str(legacy), {}, env)
    print("per-trial files, local disk:")
    out["local_per_trial"] = timed_load(ours, str(columnar), {}, env)
    start = time.perf_counter()
    results.consolidate(columnar)
    out["consolidate_s"] = time.perf_counter() - start
    print(f"consolidated in {out['consolidate_s']:.1f} s")
    print("consolidated, local disk:")
    out["local_consolidated"] = timed_load(ours, str(columnar), {}, env)
    one = {"metrics": ["v_min"], "layers": [2]}
    print("consolidated, one metric at one layer:")
    filtered = [timed_load(ours, str(columnar), one, env) for _ in range(args.repeats)]
    out["local_filtered"] = filtered
    out["local_filtered_median_s"] = statistics.median(f["seconds"] for f in filtered)
    port = 5731
    server = moto(port)
    s3_env = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "t",
              "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1",
              "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    os.environ.update({k: v for k, v in s3_env.items() if k.startswith("AWS")})
    try:
        s3 = fs.S3FileSystem(
            endpoint_override=s3_env["AWS_ENDPOINT_URL"], region="us-east-1",
            allow_bucket_creation=True,
        )  # fmt: skip
        s3.create_dir(BUCKET)
        start = time.perf_counter()
        fs.copy_files(str(columnar), f"{BUCKET}/columnar", destination_filesystem=s3)
        out["s3_upload_s"] = time.perf_counter() - start
        uri = f"s3://{BUCKET}/columnar"
        print("consolidated, S3 on loopback:")
        out["s3_consolidated"] = timed_load(ours, uri, {}, s3_env)
        s3.delete_file(f"{BUCKET}/columnar/{record.DATASET_FILE}")
        print("per-trial files, S3 on loopback:")
        out["s3_per_trial"] = timed_load(ours, uri, {}, s3_env)
    finally:
        server.terminate()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
