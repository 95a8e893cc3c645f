r"""tensorly's nonnegative CP solvers as black-box NMF peers: ``tensorly_mu``, ``tensorly_hals``.

A rank-``r`` CP decomposition of a matrix is an NMF: :math:`Y \approx A B^\top` with
:math:`A = W` and :math:`B = H^\top` (unit weights). ``tensorly_mu`` runs
``non_negative_parafac`` (multiplicative updates), ``tensorly_hals`` runs
``non_negative_parafac_hals`` (hierarchical ALS), both from the harness's initial factors with
``tol=0`` so that exactly ``n_iter`` iterations run. In a fixed-``W`` (NNLS) problem the first
mode is fixed. ``backend`` picks tensorly's NumPy backend (its default, on the CPU) or its
PyTorch backend (on the problem's device).

Both continue (``continues = True``): a CP initialisation with unit weights is used as given
(not normalised), and an iteration keeps no state beyond the factors (HALS's inner sweeps
restart at every outer iteration), so a call from the previous call's factors gives the
iterates of one longer call.
"""

from __future__ import annotations

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param, SolverSpec
from proxmf_bench.problem.problem import Problem
from proxmf_bench.solve.blackbox import BlackBoxSolver
from proxmf_bench.solve.peers import as_numpy, check_dense, check_nmf, limit_blas_threads, require

require("tensorly", "tensorly")

BACKENDS = ("numpy", "pytorch")


class TensorlyNMF(BlackBoxSolver):
    """tensorly's ``algorithm`` (``mu`` or ``hals``) on the matrix as an order-2 tensor."""

    algorithm = "mu"
    continues = True

    def __init__(self, backend: str = "numpy") -> None:
        # imported here, outside the timed calls, and only when the solver is selected
        import tensorly
        from tensorly.cp_tensor import CPTensor
        from tensorly.decomposition import non_negative_parafac, non_negative_parafac_hals

        self.tl, self.CPTensor = tensorly, CPTensor
        self._fit = non_negative_parafac if self.algorithm == "mu" else non_negative_parafac_hals
        self.backend = backend
        if backend == "numpy":
            limit_blas_threads()

    def solve(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor, n_iter: int):
        check_nmf(problem, f"tensorly_{self.algorithm}")
        check_dense(problem, f"tensorly_{self.algorithm}")
        tl = self.tl
        convert = as_numpy if self.backend == "numpy" else (lambda X: X)
        Y, A, B = convert(problem.Y), convert(W0), convert(H0.T.contiguous())
        with tl.backend_context(self.backend):
            init = self.CPTensor((tl.ones(problem.rank, **tl.context(Y)), [A, B]))
            weights, (A, B) = self._fit(Y, rank=problem.rank, n_iter_max=n_iter, init=init, tol=0,
                                  fixed_modes=[0] if problem.fixed_W else None)
        weights, A, B = (torch.as_tensor(X) for X in (weights, A, B))
        return A * weights, B.T


class TensorlyMU(TensorlyNMF):
    algorithm = "mu"


class TensorlyHALS(TensorlyNMF):
    algorithm = "hals"


_BACKEND = Param("backend", "numpy", str, "tensorly backend: numpy (CPU) or pytorch", choices=BACKENDS)
_EXAMPLES = ({"backend": "pytorch"},)


@hookimpl
def proxmf_register_solvers(register):
    register(SolverSpec(name="tensorly_mu", factory=TensorlyMU, params=(_BACKEND,), examples=_EXAMPLES,
                        summary="peer, black-box: tensorly non_negative_parafac (multiplicative updates)"))
    register(SolverSpec(name="tensorly_hals", factory=TensorlyHALS, params=(_BACKEND,), examples=_EXAMPLES,
                        summary="peer, black-box: tensorly non_negative_parafac_hals (hierarchical ALS)"))
