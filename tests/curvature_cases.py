"""Tiny models and data shared by the approximate-curvature tests (float64)."""
import torch
from torch import nn

from .conftest import tiny_classification, tiny_mlp, tiny_regression


class TwoBranch(nn.Module):
    """Not a Sequential: a residual MLP with a nested module and an activation between branches."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 4)
        self.block = nn.ModuleDict({"fc": nn.Linear(4, 4)})
        self.head = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.head(h + torch.sigmoid(self.block["fc"](h)))


def tiny_cnn():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=1), nn.Tanh(),
                         nn.Conv2d(3, 2, 2, padding=0, dilation=2, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 1 * 1, 3)).double()


class SequenceNet(nn.Module):
    """A Linear applied at every position of a (B, T, I) input: per-example gradients sum over T."""

    def __init__(self):
        super().__init__()
        self.proj, self.out = nn.Linear(3, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.proj(x)).mean(1))


def cases():
    X, y = tiny_classification()
    Xr, yr = tiny_regression(k=3)
    g = torch.Generator().manual_seed(2)
    Xc = torch.randn(12, 2, 5, 5, dtype=torch.float64, generator=g)
    Xs = torch.randn(12, 4, 3, dtype=torch.float64, generator=g)
    torch.manual_seed(1)
    return {
        "mlp-ce": (tiny_mlp(), nn.CrossEntropyLoss(), (X, y)),
        "mlp-mse": (tiny_mlp(), nn.MSELoss(), (Xr, yr)),
        "branch-ce": (TwoBranch().double(), nn.CrossEntropyLoss(), (X, y)),
        "cnn-ce": (tiny_cnn(), nn.CrossEntropyLoss(), (Xc, y)),
        "seq-ce": (SequenceNet().double(), nn.CrossEntropyLoss(), (Xs, y)),
    }


class Dense:
    """A dense symmetric matrix with the operator interface the estimators need (for estimator tests)."""

    def __init__(self, A):
        self.A, self.matvecs = A, 0

    shape = property(lambda self: tuple(self.A.shape))
    dtype = property(lambda self: self.A.dtype)
    device = property(lambda self: self.A.device)

    def __matmul__(self, v):
        self.matvecs += 1 if v.ndim == 1 else v.shape[1]
        return self.A @ v


def random_spd(P=40, decay=0.7, seed=0, negative=0):
    """Q diag(decay^i) Q^T with ``negative`` eigenvalues flipped in sign (a fixed test matrix)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=torch.float64))
    values = decay ** torch.arange(P, dtype=torch.float64)
    values[P - negative:] *= -1
    return (Q * values) @ Q.T, values
