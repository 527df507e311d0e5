"""poisoncurv: executable companion to Granziol, *Safety-Efficacy Trade Off: Robustness against
Data-Poisoning* (arXiv 2602.00822).

Layers, lowest first (a layer imports only from layers above it in this list):

- :mod:`poisoncurv.core`      repository paths, profiles and devices, provenance, atomic results, fitting helpers
- :mod:`poisoncurv.krr`       kernel ridge regression theory: kernels, cloned-poison laws, near clones, gradient flow,
                              regularised and derivative-penalised KRR, the Fourier picture, the NTK check
- :mod:`poisoncurv.models`    linear, MLP, LeNet and pre-activation ResNet models
- :mod:`poisoncurv.curvature` input-space Hessian / GGN / Fisher operators, eigen solvers, the exact ReLU route
- :mod:`poisoncurv.lab`       the poisoning lab: data, attacks, penalised training with spectra, results cache
- :mod:`poisoncurv.chapters`  one driver per chapter: profile -> sizes -> typed results
- :mod:`poisoncurv.book`      the chapter runtime, claims ledger and figure index, `rerun`, nbval list
"""

__version__ = "0.1.0"
