"""Synthetic features for the detector tests: two classes of N(0, I_p); class 1 may hold a shifted sub-cluster."""

import numpy as np

P, N_CLASS, EPS = 20, 300, 0.1


def mixture(seed: int, separation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(2·N_CLASS, P)``, labels and the poison mask: ``EPS`` of class 1 is ``N(separation·e, I)``.

    ``e`` is a random unit vector; ``separation = 0`` is an exact mixture with nothing to find.
    """
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((2 * N_CLASS, P))
    labels = np.repeat([0, 1], N_CLASS)
    poison = np.zeros(2 * N_CLASS, dtype=bool)
    poison[N_CLASS:N_CLASS + int(EPS * N_CLASS)] = True
    e = rng.standard_normal(P)
    F[poison] += separation * e / np.linalg.norm(e)
    return F, labels, poison
