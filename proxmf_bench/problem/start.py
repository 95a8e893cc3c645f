"""The starting point every solver of one (dataset, seed) shares, and its loss."""

from __future__ import annotations

import hashlib

import torch

from proxmf_bench.problem.problem import Problem


def initial_factors(
    problem: Problem, seed: int, key: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random initial factors shared by every solver of one (dataset, seed).

    Drawn on the CPU in float64 from a generator seeded by ``(key, seed)``, then moved to the
    problem's device and dtype, so CPU and GPU runs start from the same point. Entries are
    ``|N(0, 1)|`` scaled by ``sqrt(mean(Y) / r)`` (as scikit-learn's random init), so that
    ``W0 H0`` has the magnitude of ``Y``. In fixed-W mode ``W0`` is ``W_true``.
    """
    m, n = problem.shape
    r = problem.rank
    digest = hashlib.sha256(f"{key}|{seed}".encode()).digest()
    gen = torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    mean = float(problem.Y.double().abs().mean())
    scale = (max(mean, 1e-12) / r) ** 0.5
    W0 = torch.randn(m, r, generator=gen, dtype=torch.float64).abs_().mul_(scale)
    H0 = torch.randn(r, n, generator=gen, dtype=torch.float64).abs_().mul_(scale)
    W0 = W0.to(device=problem.device, dtype=problem.dtype)
    H0 = H0.to(device=problem.device, dtype=problem.dtype)
    if problem.fixed_W:
        W0 = problem.W_true.clone()
    return W0, H0


class StartingPoint:
    """Initial factors shared by the solvers of one problem and seed, with their loss.

    The loss at iteration 0 is the one record point that costs an ``m x n x r`` product: no
    solver holds products yet. It is computed once, for every solver that starts here.
    """

    def __init__(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        self.problem = problem
        self.W0, self.H0 = W0, H0
        self._loss: float | None = None

    def copies(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of ``(W0, H0)`` for a solver, which may overwrite them."""
        return self.W0.clone(), self.H0.clone()

    def loss_at(self, W: torch.Tensor, H: torch.Tensor) -> float | None:
        """The loss at ``(W, H)`` if they are ``(W0, H0)`` exactly, else ``None``."""
        if not (_same(W, self.W0) and _same(H, self.H0)):
            return None
        if self._loss is None:
            self._loss = self.problem.loss(self.W0, self.H0)
        return self._loss


def _same(A: torch.Tensor, B: torch.Tensor) -> bool:
    return A.dtype == B.dtype and A.device == B.device and torch.equal(A, B)
