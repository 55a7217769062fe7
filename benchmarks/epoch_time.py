"""What one epoch costs: training, then the neural-collapse passes of every layer on both
splits (the thesis' protocol, no 𝒱-information), for any model. Not a test.

    python benchmarks/epoch_time.py --model torchvision:resnet18 [--dataset fashion-mnist]
        [--data-dir DIR] [--epochs 1] [--out FILE.json]

The trial's own code (`Trial.build`, `training.train_epoch`, `metrics.measure_collapse`) on the
default settings (batch 400, AdamW 2e-3, 10 000 training images: the test split's size), in this
process with torch.set_num_threads(2); wall times by time.perf_counter, per epoch: the training
pass and the NC passes of the train and test splits, with the paths chosen per layer.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch

from raycompress.metrics.collapse import measure_collapse
from raycompress.seeds import Stream, derive_seed
from raycompress.training import make_optimizer, train_epoch
from raycompress.trial import Trial

OUT = Path(__file__).resolve().parent / "out" / "epoch_time.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="torchvision:resnet18")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument(
        "--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    torch.set_num_threads(2)
    settings = {"dataset": args.dataset, "model": args.model, "data_dir": args.data_dir,
                "download": False, "vinfo_schedule": "none"}  # fmt: skip
    trial = Trial.from_config(settings)
    data, model = trial.build()
    optimizer = make_optimizer(model, trial.train)
    order = derive_seed(trial.train.seed, Stream.TRAIN_ORDER)  # as the trial's run draws it
    generator = torch.Generator().manual_seed(order)
    rows = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        loss = train_epoch(model, optimizer, data.train, trial.train.batch_size, generator)
        row = {"epoch": epoch, "train_s": time.perf_counter() - start, "step_loss": loss}
        for name, split in (("train", data.train), ("test", data.test)):
            start = time.perf_counter()
            report = measure_collapse(model, split, data.num_classes, trial.collapse)
            row[f"nc_{name}_s"] = time.perf_counter() - start
            row[f"paths_{name}"] = [stats.path for stats in report.layers.values()]
            row["dims"] = [stats.dim for stats in report.layers.values()]
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": args.model, "dataset": args.dataset, "train": len(data.train),
        "test": len(data.test), "layers": list(model.names), "adaptation": model.adaptation,
        "torch": torch.__version__, "threads": 2, "rows": rows,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
