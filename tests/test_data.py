"""Datasets as tensors: subsets, imbalance, batch order, errors, and the real Fashion-MNIST."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from raycompress import data
from raycompress.data import DataNotFoundError, Imbalance, load_dataset
from raycompress.sampling import batch_indices, stratified_subset


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


def test_input_scale_multiplies_every_input_and_nothing_else() -> None:
    unit, raw = (load_dataset("fashion-mnist-demo", input_scale=s) for s in (1, 255))
    for ours, theirs in ((unit.train, raw.train), (unit.test, raw.test)):
        assert torch.equal(theirs.x, ours.x * 255) and torch.equal(theirs.y, ours.y)
    assert raw.train.x.max() == 255 and torch.equal(raw.train.x, raw.train.x.round())


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
    with pytest.raises(ValueError, match="unknown dataset 'cifar1000': choose one of mnist"):
        load_dataset("cifar1000")


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
        DataNotFoundError, match=f"mnist in {tmp_path}: not found and the download failed"
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


# ------------------------------------------------- each dataset's real on-disk format, tiny

N_TRAIN, N_TEST = 40, 20  # 4 and 2 images per class for 10 classes


def images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def labels(n: int, classes: int = 10) -> np.ndarray:
    return np.arange(n) % classes


def write_idx(folder: Path) -> dict[str, np.ndarray]:
    """The four uncompressed idx files torchvision's MNIST-family classes read."""
    folder.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        x, y = images(n, (28, 28), n), labels(n).astype(np.uint8)
        header = np.array([2051, n, 28, 28], dtype=">i4").tobytes()
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + x.tobytes())
        header = np.array([2049, n], dtype=">i4").tobytes()
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(header + y.tobytes())
        arrays[prefix] = x
    return {"train": arrays["train"], "test": arrays["t10k"]}


def write_cifar(root: Path, classes: int) -> dict[str, np.ndarray]:
    """CIFAR-10's or CIFAR-100's pickled batches: rows of 3072 bytes (R, G, B planes)."""
    key = "labels" if classes == 10 else "fine_labels"
    folder = root / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] if classes == 10 else ["train"]
    per = N_TRAIN // len(names)
    x_train = images(N_TRAIN, (3, 32, 32), 1)
    for i, name in enumerate(names):
        rows = x_train[i * per : (i + 1) * per].reshape(per, -1)
        batch = {"data": rows, key: labels(N_TRAIN, classes)[i * per : (i + 1) * per].tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    x_test = images(N_TEST, (3, 32, 32), 2)
    batch = {"data": x_test.reshape(N_TEST, -1), key: labels(N_TEST, classes).tolist()}
    (folder / ("test_batch" if classes == 10 else "test")).write_bytes(pickle.dumps(batch))
    meta = {
        ("label_names" if classes == 10 else "fine_label_names"): [f"c{k}" for k in range(classes)]
    }
    (folder / ("batches.meta" if classes == 10 else "meta")).write_bytes(pickle.dumps(meta))
    return {"train": x_train, "test": x_test}


def write_svhn(root: Path) -> dict[str, np.ndarray]:
    """SVHN's MATLAB files: X (32, 32, 3, N), y (N, 1) with 10 standing for the digit 0."""
    from scipy.io import savemat

    (root / "SVHN").mkdir(parents=True)
    out = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        x = images(n, (3, 32, 32), n)
        y = labels(n)
        savemat(root / "SVHN" / f"{split}_32x32.mat",
                {"X": x.transpose(2, 3, 1, 0), "y": np.where(y == 0, 10, y)[:, None]})  # fmt: skip
        out[split] = x
    return out


def write_image_folder(
    root: Path, mode: str, size: tuple[int, int] = (12, 10)
) -> dict[str, np.ndarray]:
    """40 train and 20 test PNG images of `size` (H, W) in class folders, grayscale ("L") or RGB."""
    from PIL import Image

    shape = (1 if mode == "L" else 3, *size)
    out = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        x = images(n, shape, n)
        for i, (image, label) in enumerate(zip(x, labels(n), strict=True)):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0] if mode == "L" else image.transpose(1, 2, 0), mode).save(
                folder / f"{i:03d}.png"
            )
        # ImageFolder lists files sorted by class folder, then name
        order = np.lexsort((np.arange(n), labels(n)))
        out[split] = x[order]
    return out


@pytest.fixture
def no_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny files cannot match the real releases' MD5 sums; the rest of torchvision's
    loading code runs as it is."""
    from torchvision.datasets import cifar, svhn

    for module in (cifar, svhn):
        monkeypatch.setattr(module, "check_integrity", lambda path, md5=None: Path(path).is_file())


@pytest.mark.parametrize(
    ("name", "write", "shape", "classes"),
    [
        ("mnist", lambda r: write_idx(r / "MNIST" / "raw"), (1, 28, 28), 10),
        ("fashion-mnist", lambda r: write_idx(r / "FashionMNIST" / "raw"), (1, 28, 28), 10),
        ("kmnist", lambda r: write_idx(r / "KMNIST" / "raw"), (1, 28, 28), 10),
        ("cifar10", lambda r: write_cifar(r, 10), (3, 32, 32), 10),
        ("cifar100", lambda r: write_cifar(r, 100), (3, 32, 32), 100),
        ("svhn", write_svhn, (3, 32, 32), 10),
    ],
)
def test_every_torchvision_dataset_from_its_real_format(
    tmp_path: Path, no_checksums: None, name: str, write, shape: tuple, classes: int
) -> None:
    written = write(tmp_path)
    assert data.dataset_info(name) == (shape, classes)
    ds = load_dataset(name, tmp_path, download=False, train_size=N_TRAIN)
    assert ds.input_shape == shape and ds.num_classes == classes
    for split, x in (("train", ds.train), ("test", ds.test)):  # all of it, in file order
        expected = torch.as_tensor(written[split]).float().reshape(x.x.shape) / 255
        torch.testing.assert_close(x.x, expected, rtol=0, atol=0)
        assert x.y.tolist() == labels(len(expected), classes).tolist()
    assert ds.train.x.min() >= 0 and ds.train.x.max() <= 1
    with pytest.raises(DataNotFoundError, match=f"{name} not found in .*: expected"):
        load_dataset(name, tmp_path / "empty", download=False)


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3)])
def test_an_image_folder_keeps_its_channels(tmp_path: Path, mode: str, channels: int) -> None:
    written = write_image_folder(tmp_path / "tree", mode)
    name = f"imagefolder:{tmp_path / 'tree'}"
    assert data.dataset_info(name) == ((channels, 12, 10), 10)
    ds = load_dataset(name, train_size=20, imbalance=Imbalance("step", 0.5))
    assert ds.input_shape == (channels, 12, 10) and ds.classes[0] == "class0"
    expected = torch.as_tensor(written["test"]).float() / 255
    torch.testing.assert_close(ds.test.x, expected, rtol=0, atol=0)
    assert ds.train.class_counts(10).tolist() == [2] * 5 + [1] * 5  # stratified, then the step


def test_an_image_folder_with_mismatched_classes_or_sizes(tmp_path: Path) -> None:
    from PIL import Image

    write_image_folder(tmp_path / "tree", "L")
    name = f"imagefolder:{tmp_path / 'tree'}"
    Image.new("L", (5, 5)).save(tmp_path / "tree" / "train" / "class3" / "odd.png")
    with pytest.raises(ValueError, match="images of different shapes"):
        load_dataset(name)
    (tmp_path / "tree" / "test" / "class3" / "odd.png").parent.mkdir(exist_ok=True)
    (tmp_path / "tree" / "train" / "class10").mkdir()
    with pytest.raises(DataNotFoundError, match="must hold the same class folders"):
        load_dataset(name)
    with pytest.raises(DataNotFoundError, match="lay it out as ROOT/train/<class>"):
        load_dataset(f"imagefolder:{tmp_path / 'nothing'}")
