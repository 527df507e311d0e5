"""Input-space curvature: operators, eigen routines, and the exact route for piecewise-linear models."""

from .operators import (CurvatureOperator, check_eval_mode, input_fisher, input_ggn, input_hessian, param_hessian,
                        per_example_input_hessian)

__all__ = ["CurvatureOperator", "check_eval_mode", "input_fisher", "input_ggn", "input_hessian", "param_hessian",
           "per_example_input_hessian"]
