"""The pluggy hook specifications of proxmf-bench.

Every hook receives a ``register`` callable and calls it once per spec it contributes::

    from proxmf_bench import hookimpl, SolverSpec

    @hookimpl
    def proxmf_register_solvers(register):
        register(SolverSpec(name="my_solver", factory=MySolver))
"""

import pluggy

PROJECT = "proxmf_bench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def proxmf_register_solvers(register):
    """Register solver families: call ``register(SolverSpec(...))`` for each."""


@hookspec
def proxmf_register_datasets(register):
    """Register dataset families: call ``register(DatasetSpec(...))`` for each."""


@hookspec
def proxmf_register_prox(register):
    """Register proximal operators: call ``register(ProxSpec(...))`` for each."""
