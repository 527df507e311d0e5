"""Input-space curvature of a model's loss: operators, eigen routines, and the exact route.

- :mod:`.operators`  ``input_hessian``, ``per_example_input_hessian``, ``input_ggn``, ``input_fisher``,
  ``param_hessian``: operators with ``shape``, ``op @ v``, ``op @ V``, ``dense()``
- :mod:`.eigen`      ``top_eigen`` (Lanczos), ``spectral_density`` (SLQ), ``overlap`` (squared cosine)
- :mod:`.exact`      exact per-example spectra and dataset averages for piecewise-linear models
"""

from poisoncurv.curvature.eigen import EigenResult, SpectralMeasure, overlap, spectral_density, top_eigen
from poisoncurv.curvature.exact import (
                    ExactCurvature,
                    assert_piecewise_linear,
                    exact_dataset_hessian,
                    exact_input_curvature,
                    input_jacobian,
                    premise_gap,
)
from poisoncurv.curvature.operators import (
                    CurvatureOperator,
                    check_eval_mode,
                    input_fisher,
                    input_ggn,
                    input_hessian,
                    param_hessian,
                    per_example_input_hessian,
)

__all__ = ["CurvatureOperator", "EigenResult", "ExactCurvature", "SpectralMeasure", "assert_piecewise_linear",
           "check_eval_mode", "exact_dataset_hessian", "exact_input_curvature", "input_fisher", "input_ggn",
           "input_hessian", "input_jacobian", "overlap", "param_hessian", "per_example_input_hessian", "premise_gap",
           "spectral_density", "top_eigen"]
