"""The poisoning lab: data, attacks, regularised training with spectral tracking, and a results cache.

- :mod:`poisoncurv.lab.data`     MNIST / CIFAR-10 / CIFAR-100 loaders with offline copies and provenance
- :mod:`poisoncurv.lab.attacks`  dirty-label poisons (rank-one cross, WaNet warp, BadNets patch)
- :mod:`poisoncurv.lab.config`   one run's configuration, its validation, hash and profiles
- :mod:`poisoncurv.lab.spectra`  per-epoch input-Hessian / input-Fisher metrics
- :mod:`poisoncurv.lab.train`    SGD with the input-gradient penalty, checkpoints and resume
- :mod:`poisoncurv.lab.cache`    results files under ``results/lab/``: paths, reading and checking, writing, staleness
- :mod:`poisoncurv.lab.runner`   a run's results: read from the cache, or trained (checkpoints) and written there
- :mod:`poisoncurv.lab.derived`  small results derived from runs under ``results/derived/``, versioned by their code

``python -m poisoncurv.lab --help`` runs one configuration from the command line.
"""
