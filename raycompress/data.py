"""Datasets as tensors (thesis §2.3): pixels scaled to [0, 1] once, no per-sample Python per epoch.

load_dataset(name, data_dir)  MNIST, Fashion-MNIST, KMNIST, CIFAR-10, CIFAR-100 and SVHN
                              through torchvision, any image folder ("imagefolder:ROOT"), or
                              the bundled offline Fashion-MNIST subset ("fashion-mnist-demo")
dataset_info(name)            input shape and class count, without loading
Imbalance                     step / exponential class-imbalance profiles for the train split

The files are read here; the pure sampling the measures use too lives in `sampling`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from raycompress.sampling import Split, stratified_subset
from raycompress.seeds import Stream, derive_seed


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    test: Split
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(self.name, self.train.to(device), self.test.to(device), self.classes)


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are not in the data directory and could not be downloaded."""


@dataclass(frozen=True)
class _Source:
    """A torchvision dataset as it lies on disk: the class that reads it, the files it reads
    offline (relative to the data directory), and what a model needs to know before loading."""

    torchvision_class: str
    files: tuple[str, ...]
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    root: str = ""  # the folder torchvision is given, relative to the data directory


def _idx(folder: str) -> tuple[str, ...]:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")  # fmt: skip
    return tuple(f"{folder}/raw/{name}" for name in names)


_CIFAR10_FILES = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
_SOURCES = {
    "mnist": _Source("MNIST", _idx("MNIST"), (1, 28, 28), 10),
    "fashion-mnist": _Source("FashionMNIST", _idx("FashionMNIST"), (1, 28, 28), 10),
    "kmnist": _Source("KMNIST", _idx("KMNIST"), (1, 28, 28), 10),
    "cifar10": _Source(
        "CIFAR10", tuple(f"cifar-10-batches-py/{f}" for f in _CIFAR10_FILES), (3, 32, 32), 10
    ),
    "cifar100": _Source(
        "CIFAR100",
        tuple(f"cifar-100-python/{f}" for f in ("meta", "train", "test")),
        (3, 32, 32),
        100,
    ),
    "svhn": _Source(
        "SVHN", ("SVHN/train_32x32.mat", "SVHN/test_32x32.mat"), (3, 32, 32), 10, root="SVHN"
    ),
}
DEMO = "fashion-mnist-demo"
IMAGE_FOLDER = "imagefolder:"  # imagefolder:/path/to/root, with train/ and test/ below it
DATASET_NAMES = (*_SOURCES, DEMO, f"{IMAGE_FOLDER}PATH")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def default_data_dir() -> Path:
    """$RAYCOMPRESS_DATA_DIR, else ~/.cache/raycompress/data."""
    env = os.environ.get("RAYCOMPRESS_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "raycompress" / "data"


def check_dataset_name(name: str) -> None:
    if name not in _SOURCES and name != DEMO and not name.startswith(IMAGE_FOLDER):
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASET_NAMES)}")


def dataset_info(name: str) -> tuple[tuple[int, ...], int]:
    """(input shape (C, H, W), number of classes) of a dataset, without loading it (an image
    folder: its class folders and its first image)."""
    check_dataset_name(name)
    if name == DEMO:
        return _SOURCES["fashion-mnist"].input_shape, len(FASHION_MNIST_CLASSES)
    if name.startswith(IMAGE_FOLDER):
        root = image_folder_root(name)
        check_available(name, root, download=False)
        classes = _class_folders(root / "train")
        first = next(p for p in sorted((root / "train" / classes[0]).iterdir()) if p.is_file())
        return _read_image(first).shape, len(classes)
    source = _SOURCES[name]
    return source.input_shape, source.num_classes


def _to_split(images: np.ndarray | Tensor, labels: object, channels_last: bool = True) -> Split:
    """uint8 images (N, H, W), (N, H, W, C) or, with channels_last=False, (N, C, H, W) →
    float32 (N, C, H, W) / 255, once."""
    x = torch.as_tensor(np.asarray(images))
    if x.dim() == 3:
        x = x[:, None]
    elif channels_last:
        x = x.permute(0, 3, 1, 2)
    return Split(
        x.contiguous().float().div_(255), torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    )


def _missing(name: str, data_dir: Path) -> list[str]:
    """The dataset's files that are not in data_dir (none for the bundled demo)."""
    if name == DEMO:
        return []
    if name.startswith(IMAGE_FOLDER):
        root = image_folder_root(name)
        return [f"{root / split}/<class>/<images>" for split in ("train", "test")
                if not (root / split).is_dir() or not _class_folders(root / split)]  # fmt: skip
    return [f for f in _SOURCES[name].files if not (data_dir / f).is_file()]


def check_available(name: str, data_dir: Path, download: bool) -> None:
    """Raise a one-line DataNotFoundError when a dataset is missing and may not be downloaded
    (an image folder never is)."""
    missing = _missing(name, data_dir)
    if not missing:
        return
    if name.startswith(IMAGE_FOLDER):
        raise DataNotFoundError(
            f"{name}: expected class folders of images under {missing[0]}: lay it out as "
            "ROOT/train/<class>/* and ROOT/test/<class>/*"
        )
    if not download:
        raise DataNotFoundError(
            f"{name} not found in {data_dir}: expected {', '.join(_SOURCES[name].files)} "
            f"(missing {missing[0]}); put the files there or allow downloading"
        )


def _open(source: _Source, root: Path, train: bool, download: bool) -> object:
    import torchvision

    cls = getattr(torchvision.datasets, source.torchvision_class)
    if source.torchvision_class == "SVHN":
        return cls(root / source.root, split="train" if train else "test", download=download)
    return cls(root, train=train, download=download)


def _load_torchvision(name: str, data_dir: Path, download: bool) -> Dataset:
    source = _SOURCES[name]
    check_available(name, data_dir, download)
    missing = _missing(name, data_dir)
    fetch = bool(missing) and download
    try:
        train, test = (_open(source, data_dir, t, fetch) for t in (True, False))
    except Exception as err:
        what = "not found and the download failed" if fetch else "could not be read"
        raise DataNotFoundError(
            f"{name} in {data_dir}: {what} ({type(err).__name__}: {err}); expected "
            f"{', '.join(source.files)}"
        ) from err
    svhn = source.torchvision_class == "SVHN"  # (N, C, H, W) and `labels` there
    splits = [
        _to_split(d.data, d.labels if svhn else d.targets, channels_last=not svhn)
        for d in (train, test)
    ]
    classes = getattr(train, "classes", None) or [str(c) for c in range(source.num_classes)]
    return Dataset(name, *splits, tuple(classes))


def _load_demo() -> Dataset:
    with resources.as_file(
        resources.files("raycompress") / "assets" / "fashion_mnist_demo.npz"
    ) as p:
        arrays = np.load(p)
        train = _to_split(arrays["x_train"], arrays["y_train"])
        test = _to_split(arrays["x_test"], arrays["y_test"])
    return Dataset(DEMO, train, test, FASHION_MNIST_CLASSES)


def image_folder_root(name: str) -> Path:
    """ROOT of an "imagefolder:ROOT" dataset name."""
    return Path(name.removeprefix(IMAGE_FOLDER)).expanduser()


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _read_image(path: Path) -> np.ndarray:
    """One image as uint8 (C, H, W) in its own mode: grayscale stays one channel."""
    from PIL import Image

    with Image.open(path) as image:
        gray = image.mode in ("1", "L", "LA", "I", "I;16", "F")
        array = np.asarray(image.convert("L" if gray else "RGB"))
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _load_image_folder(name: str) -> Dataset:
    """ROOT/train/<class>/* and ROOT/test/<class>/*: every image of one size and mode."""
    from torchvision.datasets import ImageFolder

    root = image_folder_root(name)
    check_available(name, root, download=False)
    classes = _class_folders(root / "train")
    if _class_folders(root / "test") != classes:
        raise DataNotFoundError(
            f"{name}: train/ and test/ must hold the same class folders, got {classes} and "
            f"{_class_folders(root / 'test')}"
        )
    splits = []
    for split in ("train", "test"):
        samples = ImageFolder(root / split, loader=str).samples  # (path, class index)
        images = [_read_image(Path(path)) for path, _ in samples]
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise ValueError(
                f"{name}: images of different shapes (C, H, W) in {split}/: {sorted(shapes)[:3]}"
                "; resize them to one size (and one mode: grayscale or RGB) first"
            )
        labels = [label for _, label in samples]
        splits.append(_to_split(np.stack(images), labels, channels_last=False))
    return Dataset(name, *splits, tuple(classes))


@dataclass(frozen=True)
class Imbalance:
    """A class-imbalance profile for the training split; ratio = n_min / n_max in (0, 1].

    exponential: n_c ← n_c · ratio^(c / (C − 1))   (long-tailed, Cui et al. 2019)
    step:        the last ⌊C · minority_fraction⌋ classes keep n_c · ratio (Buda et al. 2018)
    """

    profile: str
    ratio: float
    minority_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.profile not in ("step", "exponential"):
            raise ValueError(
                f"unknown imbalance profile {self.profile!r}: use 'step' or 'exponential'"
            )
        if not 0 < self.ratio <= 1 or math.isnan(self.ratio):
            raise ValueError(f"imbalance ratio must be in (0, 1], got {self.ratio}")
        if not 0 < self.minority_fraction < 1:
            raise ValueError(f"minority_fraction must be in (0, 1), got {self.minority_fraction}")

    def factors(self, num_classes: int) -> Tensor:
        c = torch.arange(num_classes, dtype=torch.float64)
        if self.profile == "exponential":
            return self.ratio ** (c / (num_classes - 1))
        minority = c >= num_classes - math.floor(num_classes * self.minority_fraction)
        return torch.where(minority, self.ratio, 1.0)

    def counts(self, counts: Tensor) -> Tensor:
        """Target class counts; raises if a class would be emptied."""
        target = (counts.double() * self.factors(counts.numel())).round().long()
        emptied = torch.nonzero((target == 0) & (counts > 0)).flatten()
        if emptied.numel():
            c = int(emptied[0])
            factor = float(self.factors(counts.numel())[c])
            raise ValueError(
                f"{self.profile} imbalance with ratio {self.ratio} leaves class {c} with no "
                f"training samples ({int(counts[c])} × {factor:.3g} rounds to 0): raise the ratio"
            )
        return target

    def apply(self, split: Split, num_classes: int, generator: torch.Generator) -> Split:
        target = self.counts(split.class_counts(num_classes))
        keep = [
            members[torch.randperm(members.numel(), generator=generator)[: int(target[c])]]
            for c, members in (
                (c, torch.nonzero(split.y == c).flatten()) for c in range(num_classes)
            )
        ]
        return split.subset(torch.cat(keep).sort().values)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    train_size: int | None = None,
    test_size: int | None = None,
    subset_seed: int = 0,
    imbalance: Imbalance | None = None,
    input_scale: float = 1.0,
) -> Dataset:
    """Load a dataset as tensors; the train split is downsampled, stratified, to `train_size`.

    train_size defaults to the test split's size (thesis §2.3). An imbalance profile is applied
    to the downsampled training split. test_size, when given, keeps a stratified subset of the
    test split too (for quick looks; the thesis scores the whole test split). Each of the three
    selections has its own stream under subset_seed (`seeds.Stream`). Inputs are scaled by
    input_scale (255: the raw 0..255 pixels the thesis' code feeds its networks).
    """
    check_dataset_name(name)
    if name == DEMO:
        data = _load_demo()
    elif name.startswith(IMAGE_FOLDER):
        data = _load_image_folder(name)
    else:
        data = _load_torchvision(name, Path(data_dir) if data_dir else default_data_dir(), download)
    test = data.test
    if test_size is not None:
        tests = torch.Generator().manual_seed(derive_seed(subset_seed, Stream.TEST_SUBSET))
        test = test.subset(stratified_subset(test.y, test_size, tests))
    subset = torch.Generator().manual_seed(derive_seed(subset_seed, Stream.TRAIN_SUBSET))
    size = len(test) if train_size is None else train_size
    train = data.train.subset(stratified_subset(data.train.y, size, subset))
    if imbalance is not None:
        kept = torch.Generator().manual_seed(derive_seed(subset_seed, Stream.IMBALANCE))
        train = imbalance.apply(train, data.num_classes, kept)
    if input_scale != 1:
        train, test = (Split(s.x * input_scale, s.y) for s in (train, test))
    return Dataset(data.name, train, test, data.classes)
