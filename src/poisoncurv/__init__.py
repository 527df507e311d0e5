"""poisoncurv: executable companion to Granziol, *Safety-Efficacy Trade Off: Robustness against
Data-Poisoning* (arXiv 2602.00822).

Modules, one job each:

- :mod:`poisoncurv.profiles`   run profiles (smoke / cpu / gpu / full) and device checks
- :mod:`poisoncurv.kernels`    kernels, kernel ridge regression, closed-form input derivatives
- :mod:`poisoncurv.clones`     closed forms for cloned dirty-label poisons (Chapter 1)
- :mod:`poisoncurv.ntk`        wide two-layer networks against NTK regression (Chapter 1)
- :mod:`poisoncurv.detect`     the defender's quantities: spike, clean bulk edge, margins (Chapter 2)
- :mod:`poisoncurv.lag`        closed-form gradient flow of KRR, crossing times (Chapter 2)
- :mod:`poisoncurv.clean_clones` poisons that nearly clone a clean training point (Chapter 2)
- :mod:`poisoncurv.regularised` input-gradient-regularised linear models and KRR (Chapter 3)
- :mod:`poisoncurv.derivative_krr` KRR with a gradient penalty, solved over values and gradients (Chapter 4)
- :mod:`poisoncurv.spectral_filter` the penalty's Fourier picture (Chapter 4)
- :mod:`poisoncurv.models`     linear, MLP, LeNet and pre-activation ResNet models
- :mod:`poisoncurv.experiments` per-chapter drivers mapping profiles to sizes
- :mod:`poisoncurv.curvature`  input-space Hessian/GGN/Fisher operators, Lanczos, SLQ, exact route
- :mod:`poisoncurv.provenance` who/where/what produced a result
- :mod:`poisoncurv.results`    atomic results files
- :mod:`poisoncurv.book`       glue and figure helpers used by the chapters
- :mod:`poisoncurv.claims`     the claims ledger (``claims.yml``)
- :mod:`poisoncurv.rerun`      re-execute a chapter with papermill and write it back cleanly
- :mod:`poisoncurv.lab`        poisoning lab: data, attacks, penalised training with spectra, results cache
"""

__version__ = "0.1.0"
