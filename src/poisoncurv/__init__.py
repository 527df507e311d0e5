"""poisoncurv: executable companion to Granziol, *Safety-Efficacy Trade Off: Robustness against
Data-Poisoning* (arXiv 2602.00822).

Modules, one job each:

- :mod:`poisoncurv.profiles`   run profiles (smoke / cpu / gpu / full) and device checks
- :mod:`poisoncurv.kernels`    kernels, kernel ridge regression, closed-form input derivatives
- :mod:`poisoncurv.clones`     closed forms for cloned dirty-label poisons (Chapter 1)
- :mod:`poisoncurv.curvature`  input-space Hessian/GGN/Fisher operators, Lanczos, SLQ, exact route
- :mod:`poisoncurv.models`     LeNet, PreActResNet, MLP and linear models
- :mod:`poisoncurv.provenance` who/where/what produced a result
- :mod:`poisoncurv.results`    atomic results files
- :mod:`poisoncurv.book`       glue and figure helpers used by the chapters
- :mod:`poisoncurv.claims`     the claims ledger (``claims.yml``)
- :mod:`poisoncurv.rerun`      re-execute a chapter with papermill and write it back cleanly
"""

__version__ = "0.1.0"
