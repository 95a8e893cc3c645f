"""Test plugin: a peer whose library is not installed (skipped, not failed)."""

from proxmf_bench import SolverSpec, hookimpl
from proxmf_bench.solve.peers import require

require("proxmf_no_such_library", "fancy-nmf")


@hookimpl
def proxmf_register_solvers(register):
    register(SolverSpec(name="fancy_mu", factory=object))
