"""proxmf-bench: a plugin-based benchmark suite for constrained matrix factorization.

Public API: the specs and ``hookimpl`` that plugins use, :func:`run_benchmark` and
:func:`load_results`. The harness and pandas are imported on first use only.
"""

from proxmf_bench.errors import DataError, PluginError, UserError
from proxmf_bench.hookspecs import hookimpl
from proxmf_bench.specs import DataFile, DatasetSpec, Param, ProxSpec, SolverSpec

__version__ = "0.1.0"

__all__ = [
    "DataError", "DataFile", "DatasetSpec", "Param", "PluginError", "ProxSpec", "SolverSpec", "UserError",
    "hookimpl", "load_results", "run_benchmark", "Problem",
]


def __getattr__(name):
    if name == "run_benchmark":
        from proxmf_bench.runner import run_benchmark

        return run_benchmark
    if name == "load_results":
        from proxmf_bench.results import load_results

        return load_results
    if name == "Problem":
        from proxmf_bench.problem import Problem

        return Problem
    raise AttributeError(f"module 'proxmf_bench' has no attribute {name!r}")
