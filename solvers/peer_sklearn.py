r"""scikit-learn's NMF as black-box peers: ``sklearn_mu`` and ``sklearn_cd``.

Both minimise :math:`\tfrac12\|Y - W H\|_F^2` with ``sklearn.decomposition.
non_negative_factorization`` (``init="custom"`` from the harness's initial factors, no
penalty, ``tol=0`` so that exactly ``n_iter`` iterations run): ``mu`` is Lee-Seung
multiplicative updates, ``cd`` cyclic coordinate descent (HALS-like, Cython). scikit-learn
cannot start a fixed-``W`` (NNLS) fit from given factors, so such problems are refused.
Sparse data is handed over as a ``scipy.sparse.csr_array`` sharing the problem's arrays
(scikit-learn factorizes it without densifying).

Both continue (``continues = True``): an iteration of either keeps no state beyond ``W`` and
``H`` (with ``tol=0`` the convergence checks never stop a call, and coordinate descent visits
the components in a fixed order), so a call from the previous call's factors gives the
iterates of one longer call; each call still pays scikit-learn's input checks (a pass over
``Y``) and, for ``mu``, its initial loss (one ``m x n x r`` product).
"""

from __future__ import annotations

import warnings

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import SolverSpec
from proxmf_bench.problem.problem import Problem
from proxmf_bench.solve.blackbox import BlackBoxSolver
from proxmf_bench.solve.peers import as_host_data, as_numpy, check_nmf, limit_blas_threads, require

require("sklearn", "scikit-learn")


class SklearnNMF(BlackBoxSolver):
    """``non_negative_factorization`` with solver ``algorithm``, run for a given budget."""

    algorithm = "mu"
    continues = True

    def __init__(self) -> None:
        # imported here, outside the timed calls, and only when the solver is selected
        from sklearn.decomposition import non_negative_factorization
        from sklearn.exceptions import ConvergenceWarning

        self._fit, self._warning = non_negative_factorization, ConvergenceWarning
        limit_blas_threads()

    def solve(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor, n_iter: int):
        check_nmf(problem, f"sklearn_{self.algorithm}")
        if problem.fixed_W:
            raise ValueError("scikit-learn cannot start a fixed-W (NNLS) fit from given factors")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", self._warning)  # stopping at max_iter is the point
            W, H, _ = self._fit(
                as_host_data(problem.Y), W=as_numpy(W0), H=as_numpy(H0), n_components=problem.rank,
                init="custom", solver=self.algorithm, beta_loss="frobenius", tol=0.0,
                max_iter=n_iter, alpha_W=0.0, alpha_H=0.0,
            )
        return torch.from_numpy(W), torch.from_numpy(H)


class SklearnMU(SklearnNMF):
    algorithm = "mu"


class SklearnCD(SklearnNMF):
    algorithm = "cd"


@hookimpl
def proxmf_register_solvers(register):
    register(SolverSpec(name="sklearn_mu", factory=SklearnMU,
                        summary="peer, black-box: scikit-learn NMF, multiplicative updates"))
    register(SolverSpec(name="sklearn_cd", factory=SklearnCD,
                        summary="peer, black-box: scikit-learn NMF, coordinate descent"))
