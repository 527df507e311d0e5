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


def shared_spectra(seed: int = 0) -> dict[str, torch.Tensor]:
    """The test spectra both eigen solvers are checked on (length 300, float64), drawn from a seeded
    generator at import so that every run and every test order sees the same matrices."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "decaying": torch.logspace(0, -6, 300, dtype=torch.float64),
        "all_near_1e-7": 1e-7 * (1 + torch.rand(300, generator=gen, dtype=torch.float64)),
        "indefinite": torch.randn(300, generator=gen, dtype=torch.float64),
    }
