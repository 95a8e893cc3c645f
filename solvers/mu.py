r"""Multiplicative updates (Lee & Seung 2001) for the Frobenius NMF objective.

.. math::
    H \leftarrow \max\!\Big(H \odot \frac{W^\top Y}{\max(W^\top W H,\ \epsilon)},\ \epsilon\Big),
    \qquad
    W \leftarrow \max\!\Big(W \odot \frac{Y H^\top}{\max(W H H^\top,\ \epsilon)},\ \epsilon\Big).

``H`` is updated first and ``W`` uses the fresh ``H``. The floor ``epsilon`` keeps entries
from reaching exactly zero, where a multiplicative update could never move them again.
"""

from __future__ import annotations

import torch

from proxmf_bench.hookspecs import hookimpl
from proxmf_bench.problem import Problem
from proxmf_bench.specs import Param, SolverSpec


def mu_ratio_H(Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor, eps: float) -> torch.Tensor:
    """The multiplicative factor ``(W^T Y) / max(W^T W H, eps)`` of the H update, a new tensor.

    Works on batches (leading dimensions) and under autograd: the in-place operations act
    only on fresh intermediates that backward does not need.
    """
    ratio = W.mT @ Y
    return ratio.div_(((W.mT @ W) @ H).clamp_min_(eps))


def mu_ratio_W(Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor, eps: float) -> torch.Tensor:
    """The multiplicative factor ``(Y H^T) / max(W H H^T, eps)`` of the W update, a new tensor."""
    ratio = Y @ H.mT
    return ratio.div_((W @ (H @ H.mT)).clamp_min_(eps))


def mu_update_H(Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor, eps: float) -> torch.Tensor:
    """One MU step on ``H`` in place; returns ``H``."""
    return H.mul_(mu_ratio_H(Y, W, H, eps)).clamp_min_(eps)


def mu_update_W(Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor, eps: float) -> torch.Tensor:
    """One MU step on ``W`` in place; returns ``W``."""
    return W.mul_(mu_ratio_W(Y, W, H, eps)).clamp_min_(eps)


class MU:
    """Lee-Seung multiplicative updates; ``W`` stays fixed in a fixed-W (NNLS) problem."""

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = eps

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        self.Y = problem.Y
        self.fixed_W = problem.fixed_W
        self.W = W0.clamp_min(self.eps)
        self.H = H0.clamp_min(self.eps)

    def step(self) -> None:
        mu_update_H(self.Y, self.W, self.H, self.eps)
        if not self.fixed_W:
            mu_update_W(self.Y, self.W, self.H, self.eps)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.W, self.H


@hookimpl
def proxmf_register_solvers(register):
    register(
        SolverSpec(
            name="mu",
            factory=MU,
            params=(Param("eps", 1e-12, float, "floor on entries and denominators", low=0.0),),
            summary="Lee-Seung multiplicative updates (Frobenius), epsilon-floored",
        )
    )
