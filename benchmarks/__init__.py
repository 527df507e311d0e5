"""Timing scripts for the input-curvature core and the lab (see ``benchmarks/README.md``).

A package so that the scripts import each other without editing ``sys.path``: run them from the repository root as
``python -m benchmarks.<script>`` (with ``poisoncurv`` importable, e.g. ``PYTHONPATH=$PWD/src``).
"""
