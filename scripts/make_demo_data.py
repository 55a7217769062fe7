"""Build raycompress/assets/fashion_mnist_demo.npz from the official Fashion-MNIST release.

A stratified, seeded subset (200 images per class from each split); the source indices are
stored beside the images so the subset can be traced back. Usage:

    python scripts/make_demo_data.py PATH_TO_DATA_DIR   # a folder holding FashionMNIST/raw/
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

from raycompress.sampling import stratified_subset

PER_SPLIT = 2000
OUT = Path(__file__).resolve().parents[1] / "raycompress" / "assets" / "fashion_mnist_demo.npz"


def main(data_dir: str) -> None:
    arrays = {}
    for split, train in (("train", True), ("test", False)):
        ds = torchvision.datasets.FashionMNIST(data_dir, train=train, download=False)
        index = stratified_subset(ds.targets, PER_SPLIT, torch.Generator().manual_seed(0))
        arrays[f"x_{split}"] = ds.data[index].numpy()
        arrays[f"y_{split}"] = ds.targets[index].numpy().astype(np.uint8)
        arrays[f"source_index_{split}"] = index.numpy().astype(np.int32)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(sys.argv[1])
