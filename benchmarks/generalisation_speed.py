"""How long the generalisation analysis takes: `rank_measures` on a sweep the size of Jiang
et al.'s grid, and the baseline measures of one run.

    python benchmarks/generalisation_speed.py [--repeats 3] [--data-dir ../shared/data]

A synthetic tidy frame: 7 axes × 3 values (2 187 configurations) × 2 seeds, 40 measures
(NC-, 𝒱-information- and baseline-named), every trial at the loss threshold. Prints the
seconds of `trial_values` and of the whole `rank_measures` (median of the repeats; the bar:
≤ 60 s on a 2-core CPU), then, with the real Fashion-MNIST, the seconds of
`metrics.baselines.measure_baselines` for f₋ and f₊ on 10 000 training images (what each run
adds where it stops), and writes all of it to benchmarks/out/generalisation_speed.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from raycompress.analysis import generalisation  # noqa: E402
from raycompress.data import load_dataset  # noqa: E402
from raycompress.metrics.baselines import measure_baselines  # noqa: E402
from raycompress.models import build_model, make_spec  # noqa: E402
from raycompress.schema import NC, Baseline, Quantity  # noqa: E402
from raycompress.seeds import BenchmarkStream, Stream, derive_seed  # noqa: E402
from tests.synthetic import tidy_from_wide  # noqa: E402

AXES = {f"axis{i}": [0, 1, 2] for i in range(7)}
SEEDS = 2
SEED = 0  # the synthetic frame's and the baselines' streams are derived from it by name


def measure_names() -> list[str]:
    """40 measures: 4 NC statistics × 4 layers × 2 splits, 𝒱-information (2 × 1 × 2), baselines."""
    nc = [
        generalisation.measure_name(stat, layer, split)
        for stat, layer, split in itertools.product(
            [NC.TRACE, NC.CDNV, NC.EQUINORM, NC.NCC_AGREEMENT], range(1, 5), ["train", "test"]
        )
    ]
    quantities = (Quantity.SUFFICIENCY, Quantity.MINIMALITY)
    vinfo = [generalisation.measure_name(q, 3, s) for q in quantities for s in ("train", "test")]
    return nc + vinfo + [str(b) for b in Baseline]


def synthetic(rng: np.random.Generator) -> pd.DataFrame:
    rows = list(itertools.product(*AXES.values(), range(SEEDS)))
    wide = pd.DataFrame(rows, columns=[*AXES, "seed"])
    wide["gap"] = wide[list(AXES)].sum(axis=1) * 0.05 + rng.normal(0, 0.05, len(wide))
    wide["accuracy_gap"] = wide["gap"] / 5
    for name in measure_names():
        wide[name] = wide["gap"] * rng.normal() + rng.normal(size=len(wide))
    return tidy_from_wide(wide, list(AXES))


def baselines_seconds(data_dir: Path, repeats: int) -> dict[str, float]:
    """Median seconds of every baseline of one run, per thesis network (initial weights: the
    cost does not depend on them), on 10 000 Fashion-MNIST training images, batch 400."""
    data = load_dataset("fashion-mnist", data_dir, download=False, train_size=10_000)
    out = {}
    for name in ("mnistnet", "cifarnet"):
        spec = make_spec(name, data.input_shape, data.num_classes)
        model = build_model(spec, seed=derive_seed(SEED, Stream.MODEL_INIT))
        initial = {k: p.detach().clone() for k, p in model.named_parameters()}
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.no_grad():
                measure_baselines(model, initial, data.train, 400, seed=SEED)
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
        print(f"baselines of {name}: {out[name]:.1f} s (median of {repeats})")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/generalisation_speed.json")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data")
    args = p.parse_args()
    frame = synthetic(np.random.default_rng(derive_seed(SEED, BenchmarkStream.SYNTHETIC)))
    print(f"tidy frame: {len(frame):,} rows, {frame.trial_id.nunique():,} trials")
    values, whole = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        generalisation.trial_values(frame)
        values.append(time.perf_counter() - start)
        start = time.perf_counter()
        ranking = generalisation.rank_measures(frame)
        whole.append(time.perf_counter() - start)
        print(f"trial_values {values[-1]:.1f} s, rank_measures {whole[-1]:.1f} s")
    result = {
        "configurations": 3 ** len(AXES), "seeds": SEEDS, "measures": len(ranking),
        "trial_values_s": values, "rank_measures_s": whole,
        "rank_measures_median_s": statistics.median(whole),
        "gaps": sorted(set(ranking.gaps)),
    }  # fmt: skip
    print(f"median rank_measures: {result['rank_measures_median_s']:.1f} s "
          f"({len(ranking)} measures)")  # fmt: skip
    result["baselines_s"] = baselines_seconds(args.data_dir, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
