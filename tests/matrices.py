"""Dense test matrices with the operator interface the estimators need (not models: see zoo.py)."""
import torch


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
