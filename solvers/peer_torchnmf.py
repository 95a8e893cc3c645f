r"""torchnmf's NMF as a black-box peer: ``torchnmf_mu``.

``torchnmf.nmf.NMF.fit(V, beta=2)`` runs multiplicative updates for the Frobenius loss, with
the numerator and denominator of each update obtained by autograd through :math:`W H`. torchnmf
writes :math:`V \approx H W^\top`, so its ``H`` is our ``W`` and its ``W`` our ``H^\top``. The
fit starts from the harness's initial factors on the problem's device and dtype, with a
tolerance that never stops it early, so exactly ``n_iter`` iterations run; in a fixed-``W``
(NNLS) problem its ``H`` is frozen.

It continues (``continues = True``): ``fit`` keeps no state beyond the model's factors, so a
fit started from the previous call's factors gives the iterates of one longer fit.
"""

from __future__ import annotations

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import SolverSpec
from proxmf_bench.problem.problem import Problem
from proxmf_bench.solve.blackbox import BlackBoxSolver
from proxmf_bench.solve.peers import check_dense, check_nmf, require

require("torchnmf", "torchnmf")


class TorchNMF(BlackBoxSolver):
    """``torchnmf.nmf.NMF(...).fit(Y, beta=2, max_iter=n_iter)``."""

    continues = True

    def __init__(self) -> None:
        from torchnmf.nmf import NMF  # imported here, outside the timed calls

        self.NMF = NMF

    def solve(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor, n_iter: int):
        check_nmf(problem, "torchnmf_mu")
        check_dense(problem, "torchnmf_mu")
        model = self.NMF(problem.Y.shape, problem.rank).to(device=problem.device, dtype=problem.dtype)
        with torch.no_grad():  # its constructor draws in float32; start exactly from (W0, H0)
            model.H.copy_(W0)
            model.W.copy_(H0.T)
        model.H.requires_grad_(not problem.fixed_W)
        model.fit(problem.Y, beta=2, tol=float("-inf"), max_iter=n_iter)
        return model.H.detach(), model.W.detach().T


@hookimpl
def proxmf_register_solvers(register):
    register(SolverSpec(name="torchnmf_mu", factory=TorchNMF,
                        summary="peer, black-box: torchnmf NMF.fit (multiplicative updates via autograd)"))
