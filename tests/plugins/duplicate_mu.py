"""Test plugin that registers a solver under a name already taken by a built-in."""

from proxmf_bench import SolverSpec, hookimpl
from proxmf_bench.solvers.mu import MU


@hookimpl
def proxmf_register_solvers(register):
    register(SolverSpec(name="mu", factory=MU))
