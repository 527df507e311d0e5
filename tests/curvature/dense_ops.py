"""Dense matrices with a known spectrum, wrapped as operators, for the eigen-solver tests."""

import torch


class Dense:
    """A matrix as an operator (accepts (d,) and (d, p))."""

    def __init__(self, A):
        self.A, self.shape, self.dtype, self.device = A, tuple(A.shape), A.dtype, A.device

    def __matmul__(self, v):
        return self.A @ v


def with_spectrum(ev, seed=0):
    """A random orthogonal conjugate of ``diag(ev)`` in float64, as a :class:`Dense` operator."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(ev), len(ev), generator=gen))
    return Dense(Q @ torch.diag(ev.double()) @ Q.T)
