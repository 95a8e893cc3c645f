"""Contract checks of plugins, in the spirit of scikit-learn's ``check_estimator``.

- :func:`check_prox`: a prox operator against its declared penalty or set;
- :func:`check_solver`: a solver's ``init``/``step``/``factors`` (or ``solve``) contract;
- :func:`check_dataset`: a dataset's problems.

Each returns a :class:`CheckReport`: one :class:`PropertyResult` per property (ok, FAILED
with a :class:`Counterexample` of input, expected and got, or skipped with the reason).
``proxmf-bench check`` prints them; in a plugin's own tests,
``check_prox(spec).raise_for_failures()`` fails with the counterexamples. The checks draw
their inputs from seeded generators: the same plugin gives the same report.
"""

from proxmf_bench.testing.dataset import check_dataset
from proxmf_bench.testing.prox import check_prox
from proxmf_bench.testing.report import CheckReport, Counterexample, PropertyResult
from proxmf_bench.testing.solver import check_solver

__all__ = ["CheckReport", "Counterexample", "PropertyResult", "check_dataset", "check_prox", "check_solver"]
