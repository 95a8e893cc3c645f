"""proxmf-bench: a plugin-based benchmark suite for constrained matrix factorization.

Public API: the specs and ``hookimpl`` that plugins use, :func:`run_benchmark` and
:func:`load_results`. The harness and pandas are imported on first use only.

The package is organised by concern (see "Layout" in the README):

- :mod:`proxmf_bench.plugin`: hook specifications, spec classes, the registry, selections;
- :mod:`proxmf_bench.problem`: the factorization problem, initial factors, metrics, data files;
- :mod:`proxmf_bench.solve`: prox operators, PGM machinery, MU kernels, the torch optimizer,
  the black-box protocol and the peers' plumbing;
- :mod:`proxmf_bench.nalmu`: the unrolled MU model and its training;
- :mod:`proxmf_bench.run`: cells, the harness, grids, the runner, the run directory, workers;
- :mod:`proxmf_bench.results`: the results table, analysis, figures and the report;
- :mod:`proxmf_bench.cli` and :mod:`proxmf_bench.errors`.
"""

from proxmf_bench.errors import DataError, PluginError, UserError
from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import DataFile, DatasetSpec, Param, ProxSpec, SolverSpec

__version__ = "0.1.0"

__all__ = [
    "DataError", "DataFile", "DatasetSpec", "Param", "PluginError", "ProxSpec", "SolverSpec", "UserError",
    "hookimpl", "load_results", "run_benchmark", "Problem",
]


def __getattr__(name):
    if name == "run_benchmark":
        from proxmf_bench.run.runner import run_benchmark

        return run_benchmark
    if name == "load_results":
        from proxmf_bench.results.table import load_results

        return load_results
    if name == "Problem":
        from proxmf_bench.problem.problem import Problem

        return Problem
    raise AttributeError(f"module 'proxmf_bench' has no attribute {name!r}")
