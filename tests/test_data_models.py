"""Bundled data sets, the MNIST IDX reader (on small files written here), models and training."""
import gzip
import struct

import numpy as np
import pytest
import torch
from torch import nn

from losstools import data, models


def test_digits_split_is_fixed_standardised_and_typed():
    a, b = data.digits(seed=0), data.digits(seed=0)
    assert torch.equal(a.train[0], b.train[0])
    assert [len(s[0]) for s in (a.train, a.val, a.test)] == [1078, 359, 360]
    X = a.train[0]
    assert X.shape[1] == 64 and a.num_classes == 10 and a.train[1].dtype == torch.long
    nonconstant = X.std(0) > 0
    torch.testing.assert_close(X.mean(0), torch.zeros(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(X.std(0, unbiased=False)[nonconstant], torch.ones(int(nonconstant.sum())), atol=1e-4, rtol=0)
    assert not torch.equal(data.digits(seed=1).train[0], X)


@pytest.mark.parametrize("make,classes", [(data.moons, 2), (data.spirals, 3)])
def test_generated_classification_sets(make, classes):
    ds = make(n=300, seed=1)
    assert ds.num_classes == classes and ds.num_features == 2
    assert set(ds.train[1].tolist()) == set(range(classes))
    assert sum(len(s[0]) for s in (ds.train, ds.val, ds.test)) == 300


def test_teacher_student_is_learnable_regression():
    ds = data.teacher_student(n=400, features=5, hidden=8, outputs=2, noise=0.0)
    assert ds.num_classes is None and ds.train[1].shape == (240, 2) and ds.train[1].dtype == torch.float32
    net = models.mlp([5, 16, 2], seed=0)
    history = models.train(net, ds, epochs=60, progress=False)
    assert history["train"][-1] < 0.1 * history["train"][0]


def write_idx(path, array, gz=False):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(">u1").tobytes()
    (gzip.open if gz else open)(path, "wb").write(payload)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_small_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    train_images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    train_labels = rng.integers(0, 10, 30).astype(np.uint8)
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", train_images, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", train_labels, gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", train_images[:7], gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", train_labels[:7], gz)
    ds = data.mnist(tmp_path, val_size=10)
    assert ds.train[0].shape == (20, 784) and ds.val[0].shape == (10, 784) and ds.test[0].shape == (7, 784)
    assert sorted(torch.cat([ds.train[1], ds.val[1]]).tolist()) == sorted(train_labels.tolist())
    assert torch.equal(ds.test[1], torch.as_tensor(train_labels[:7], dtype=torch.long))
    # the first test image, un-standardised, is the raw pixels / 255
    mean, std = ds.train[0].mean(), ds.train[0].std()  # noqa: F841  (standardised with train statistics)
    raw = torch.as_tensor(train_images[0].reshape(-1) / 255.0, dtype=torch.float32)
    restored = ds.test[0][0]
    assert torch.allclose((restored - restored.mean()) / restored.std(), (raw - raw.mean()) / raw.std(), atol=1e-4)


def test_mnist_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\[.gz\] not found.*never downloads"):
        data.mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x08\x03\x00\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "train-images-idx3-ubyte")


def test_mlp_is_seeded_and_validates():
    a, b = models.mlp([4, 5, 3], seed=3), models.mlp([4, 5, 3], seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert isinstance(a[1], nn.Tanh) and len(a) == 3
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        models.mlp([4, 3], activation="swish")
    with pytest.raises(ValueError, match="at least an input and an output"):
        models.mlp([4])


def test_train_is_seeded_and_reduces_loss():
    ds = data.moons(n=200)
    runs = []
    for _ in range(2):
        net = models.mlp([2, 16, 2], seed=0)
        runs.append(models.train(net, ds, epochs=30, seed=5, progress=False))
    assert runs[0] == runs[1]
    assert runs[0]["train"][-1] < 0.6 * runs[0]["train"][0] and len(runs[0]["val"]) == 30
