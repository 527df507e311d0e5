"""Kernel ridge regression theory (chapters 1-4): kernels, cloned-poison laws, near-clone visibility,
KRR gradient flow, regularised and derivative-penalised KRR, the Fourier picture, the NTK check."""
