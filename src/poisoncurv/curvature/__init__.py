"""Input-space curvature of a model's loss: operators, eigen solvers, and the exact route.

- :mod:`.base`       the operator base (``CurvatureOperator``), input checks, autograd primitives
- :mod:`.hessian`    ``input_hessian`` (mean over examples), ``per_example_input_hessian``
- :mod:`.ggn`        ``input_ggn``, ``input_fisher`` (true or empirical)
- :mod:`.param`      ``param_hessian`` (for comparison)
- :mod:`.exact`      exact per-example spectra, dataset averages and the factor operator
                     ``exact_input_hessian`` for piecewise-linear models
- :mod:`.reference`  dense ``torch.func`` oracles (tests, benchmarks)
- :mod:`.lanczos`    the one Lanczos step and shared solver helpers
- :mod:`.eigen`      ``top_eigen`` (Lanczos), ``dense_top_eigen`` (LAPACK, a formed matrix), ``spectral_density`` (SLQ),
                     ``overlap`` (squared cosine)
- :mod:`.block`      ``top_eigen_block`` (block Lanczos on batched products), ``per_example_top_eigen``

Operators have ``shape``, ``op @ v``, ``op @ V``, ``dense()``, ``as_linear_operator()``.
"""

from poisoncurv.curvature.base import CurvatureOperator, check_eval_mode
from poisoncurv.curvature.block import per_example_top_eigen, top_eigen_block
from poisoncurv.curvature.eigen import EigenResult, SpectralMeasure, dense_top_eigen, overlap, spectral_density, top_eigen
from poisoncurv.curvature.exact import (
    ExactCurvature,
    assert_piecewise_linear,
    exact_dataset_hessian,
    exact_input_curvature,
    exact_input_hessian,
    input_jacobian,
    premise_gap,
)
from poisoncurv.curvature.ggn import input_fisher, input_ggn
from poisoncurv.curvature.hessian import input_hessian, per_example_input_hessian
from poisoncurv.curvature.param import param_hessian

__all__ = ["CurvatureOperator", "EigenResult", "ExactCurvature", "SpectralMeasure", "assert_piecewise_linear",
           "check_eval_mode", "dense_top_eigen", "exact_dataset_hessian", "exact_input_curvature", "exact_input_hessian",
           "input_fisher", "input_ggn",
           "input_hessian", "input_jacobian", "overlap", "param_hessian", "per_example_input_hessian",
           "per_example_top_eigen", "premise_gap", "spectral_density", "top_eigen", "top_eigen_block"]
