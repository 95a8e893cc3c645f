r"""``mu``: multiplicative updates (Lee & Seung 2001) for the Frobenius NMF objective.

One iteration is :func:`~proxmf_bench.solve.mu.mu_update_H`, then
:func:`~proxmf_bench.solve.mu.mu_update_W` with the fresh ``H`` (the kernels give the
update and the role of the floor ``eps``).

The solver keeps the products of its last update so that :meth:`MU.loss` costs
:math:`O((m + n) r^2)` instead of another :math:`m \times n \times r` product:

.. math::
    2 f(W, H) = \|Y\|_F^2 - 2\langle W, Y H^\top\rangle + \langle W^\top W, H H^\top\rangle
              = \|Y\|_F^2 - 2\langle W^\top Y, H\rangle + \langle W^\top W, H H^\top\rangle,

the first form after a ``W`` update (``Y H^T`` and ``H H^T`` are those of the current ``H``),
the second in a fixed-W problem, where ``W^T Y`` and ``W^T W`` are computed once. ``W^T W``
of the new ``W`` is computed at the end of each step rather than at the start of the next
(the same work, counted in the same timed steps), so the loss needs no ``m x r^2`` product.
"""

from __future__ import annotations

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param, SolverSpec
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.sparse import csr_transpose, is_sparse, times
from proxmf_bench.solve.mu import mu_update_H, mu_update_W


class MU:
    """Lee-Seung multiplicative updates; ``W`` stays fixed in a fixed-W (NNLS) problem."""

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = eps

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        self.start(problem, problem.Y, W0, H0)

    def start(self, problem: Problem, Y: torch.Tensor, W0: torch.Tensor, H0: torch.Tensor) -> None:
        """:meth:`init` on data ``Y`` (``problem.Y``, or a rescaling of it in a subclass)."""
        self.problem = problem
        self.Y = Y
        self.fixed_W = problem.fixed_W
        # Y^T as the problem lays it out (a row-major copy where its Yt policy keeps one: H @ Yt
        # is then the fastest layout; see proxmf_bench.problem.problem)
        self.Yt = problem.Yt if Y is problem.Y else None if self.fixed_W else _transpose(Y, problem.holds_Yt_copy)
        self.W = W0.clamp_min(self.eps)
        self.H = H0.clamp_min(self.eps)
        # W^T W of the current W (and W^T Y in fixed-W mode, where neither changes);
        # Y H^T and H H^T of the last W update
        self.WtW = self.W.mT @ self.W
        self.YHt: torch.Tensor | None = None
        self.HHt: torch.Tensor | None = None
        if self.fixed_W:
            self.WtY = times(self.W.mT, Y, self.Yt if self.Yt is not None else _transpose(Y, problem.holds_Yt_copy))

    def step(self) -> None:
        self.weighted_step(None, None)

    def weighted_step(self, A_H: torch.Tensor | None, A_W: torch.Tensor | None) -> None:
        """One step with each factor's update multiplied by its weights (NALMU's layers;
        ``None``: no weights, a plain MU step), in place, keeping the products it needs."""
        eps, Y, W, H = self.eps, self.Y, self.W, self.H
        mu_update_H(H, self.WtY if self.fixed_W else times(W.mT, Y, self.Yt), self.WtW, eps, A_H, inplace=True)
        if self.fixed_W:
            return
        self.YHt, self.HHt = times(H, self.Yt, Y).mT, H @ H.mT
        mu_update_W(W, self.YHt, self.HHt, eps, A_W, inplace=True)
        self.WtW = W.mT @ W

    def loss(self) -> float:
        """The loss at :meth:`factors` from the products of the last step (see the module doc).

        The ``m x r`` and ``r x n`` products are taken in the factors' dtype and summed in
        float64: in float32, their rounding is below that of the held products themselves.
        """
        W, H = self.W, self.H
        if self.fixed_W:
            return self.problem.loss_from_products(self.WtY, H, self.WtW, H @ H.mT)
        if self.YHt is None:  # before the first step
            return self.problem.loss(W, H)
        return self.problem.loss_from_products(self.YHt, W, self.WtW, self.HHt)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.W, self.H


def _transpose(Y: torch.Tensor, copy: bool) -> torch.Tensor:
    """``Y^T``: a CSR transpose for sparse ``Y``; else a row-major copy if ``copy``, the view if not."""
    if is_sparse(Y):
        return csr_transpose(Y)
    return Y.mT.contiguous() if copy else Y.mT


@hookimpl
def proxmf_register_solvers(register):
    register(
        SolverSpec(
            name="mu",
            factory=MU,
            params=(Param("eps", 1e-12, float, "floor on entries and denominators", low=0.0),),
            summary="Lee-Seung multiplicative updates (Frobenius), epsilon-floored",
            examples=({"eps": "1e-6"},),
        )
    )
