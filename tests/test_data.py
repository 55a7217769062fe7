"""Datasets as tensors: subsets, imbalance, batch order, errors, and the real Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from raycompress import data
from raycompress.data import (
    DataNotFoundError,
    Imbalance,
    batch_indices,
    load_dataset,
    stratified_subset,
)


def test_stratified_subset_keeps_proportions_and_is_seeded() -> None:
    labels = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)[torch.randperm(1000)]
    pick = stratified_subset(labels, 101, torch.Generator().manual_seed(0))
    assert pick.numel() == 101 and pick.unique().numel() == 101
    assert torch.bincount(labels[pick]).tolist() == [
        61,
        30,
        10,
    ]  # 60.6, 30.3, 10.1 → largest remainder
    assert torch.equal(pick, pick.sort().values)
    again = stratified_subset(labels, 101, torch.Generator().manual_seed(0))
    other = stratified_subset(labels, 101, torch.Generator().manual_seed(1))
    assert torch.equal(pick, again) and not torch.equal(pick, other)


def test_demo_dataset_is_bundled_scaled_and_balanced() -> None:
    ds = load_dataset("fashion-mnist-demo")
    assert (len(ds.train), len(ds.test), ds.num_classes, ds.input_shape) == (
        2000,
        2000,
        10,
        (1, 28, 28),
    )
    assert ds.train.x.dtype == torch.float32 and ds.train.x.min() >= 0 and ds.train.x.max() == 1
    assert torch.allclose(ds.train.x * 255, (ds.train.x * 255).round(), atol=1e-4)  # uint8 / 255
    assert ds.train.class_counts(10).tolist() == [200] * 10
    assert ds.classes[9] == "Ankle boot"


def test_train_size_subsamples_stratified() -> None:
    ds = load_dataset("fashion-mnist-demo", train_size=500, subset_seed=3)
    assert ds.train.class_counts(10).tolist() == [50] * 10
    assert len(ds.test) == 2000


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("step", [200] * 5 + [20] * 5),
        ("exponential", [round(200 * 0.1 ** (c / 9)) for c in range(10)]),
    ],
)
def test_imbalance_profiles(profile: str, expected: list[int]) -> None:
    ds = load_dataset("fashion-mnist-demo", imbalance=Imbalance(profile, 0.1))
    assert ds.train.class_counts(10).tolist() == expected
    assert expected[-1] == 20
    assert len(ds.test) == 2000  # the test split is never imbalanced


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5, float("nan")])
def test_imbalance_ratio_outside_unit_interval(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"imbalance ratio must be in \(0, 1\]"):
        Imbalance("step", ratio)


def test_imbalance_that_empties_a_class() -> None:
    with pytest.raises(ValueError, match="leaves class 5 with no training samples"):
        load_dataset("fashion-mnist-demo", imbalance=Imbalance("step", 0.001))
    with pytest.raises(ValueError, match="unknown imbalance profile 'linear'"):
        Imbalance("linear", 0.5)


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar100': choose one of cifar10"):
        load_dataset("cifar100")


def test_missing_files_name_the_directory_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("cifar10", tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path) in message and "cifar-10-batches-py/data_batch_1" in message
    assert "\n" not in message


def test_failed_download_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(
        DataNotFoundError, match=f"mnist not found in {tmp_path} and the download failed"
    ):
        load_dataset("mnist", tmp_path, download=True)


def test_batch_indices_are_seeded_permutations() -> None:
    batches = batch_indices(1000, 450, torch.Generator().manual_seed(0))
    assert [b.numel() for b in batches] == [450, 550]  # a remainder of 100 joins the last batch
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(1000))
    again = batch_indices(1000, 450, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    assert [b.numel() for b in batch_indices(1000, 300, torch.Generator())] == [300, 300, 400]
    assert [b.numel() for b in batch_indices(1000, 400, torch.Generator())] == [400, 400, 200]


def test_data_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAYCOMPRESS_DATA_DIR", str(tmp_path))
    assert data.default_data_dir() == tmp_path


def test_real_fashion_mnist(fashion_mnist_dir: Path) -> None:
    ds = load_dataset("fashion-mnist", fashion_mnist_dir, download=False)
    assert (len(ds.train), len(ds.test), ds.input_shape) == (10_000, 10_000, (1, 28, 28))
    assert ds.train.class_counts(10).tolist() == [1000] * 10
    assert ds.test.x.mean() * 255 == pytest.approx(73.15, abs=0.01)  # the release's known mean
    assert int(ds.test.y[0]) == 9  # item 0 is an ankle boot
    other = load_dataset("fashion-mnist", fashion_mnist_dir, download=False, subset_seed=1)
    assert not torch.equal(ds.train.y, other.train.y) or not torch.equal(ds.train.x, other.train.x)
