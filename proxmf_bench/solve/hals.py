r"""Hierarchical alternating least squares (HALS) and its accelerated form (Gillis & Glineur
2012, "Accelerated multiplicative updates and hierarchical ALS algorithms for nonnegative
matrix factorization", Neural Computation 24(4)): the kernels, the solver, and a function that
runs it to a tolerance (a reference solver for ``f*``).

HALS is exact block coordinate descent in which each block is one row of :math:`H` or one
column of :math:`W` (a row of :math:`W^\top`). For the block objective of a factor
:math:`X` (``r x k``: :math:`H`, or :math:`W^\top`) with the other factor fixed, Gram
:math:`G` and cross product :math:`C` (:math:`W^\top W, W^\top Y` for :math:`H`;
:math:`H H^\top, H Y^\top` for :math:`W^\top`), and per-entry penalties
:math:`\lambda_1 \sum x + \tfrac{\lambda_2}{2}\|x\|^2` on :math:`x \ge 0`,

.. math::
    \min_{X \ge 0}\ \tfrac12\langle G X, X\rangle - \langle C, X\rangle + \lambda_1 \textstyle\sum X
    + \tfrac{\lambda_2}{2}\|X\|_F^2,

row :math:`t` has the closed-form minimiser, the others fixed,

.. math::
    x_t \leftarrow \max\!\Big(\epsilon,\ \frac{c_t - \lambda_1 - \sum_{j \ne t} G_{tj} x_j}{G_{tt} + \lambda_2}\Big),

applied to ``t = 1 .. r`` in turn (Gauss-Seidel: each row sees its predecessors' new values).
The floor :math:`\epsilon` (tiny, ``1e-16``) keeps a row from vanishing, which would make the
other factor's :math:`G_{tt}` zero.

**Acceleration.** The products :math:`C` and :math:`G` cost :math:`O(m n r)` and a sweep over
the rows only :math:`O(k r^2)`, so several sweeps per block pay for the products once. With
:math:`\rho_W = 1 + n (m + r) / (m (r + 1) + c)` (product cost over sweep cost for the ``W``
block, in multiply-adds per component; :math:`\rho_H` with ``m`` and ``n`` swapped), a block
gets at most
:math:`\lfloor 1 + \alpha \rho \rfloor` sweeps, and stops earlier once a sweep changes the
block by at most :math:`\delta` times the change of its first sweep
(:math:`\|X^{(l)} - X^{(l-1)}\|_F \le \delta \|X^{(1)} - X^{(0)}\|_F`). The paper suggests
:math:`\alpha = 0.5`, :math:`\delta = 0.1`; the defaults here are :math:`\alpha = 0.1`,
:math:`\delta = 0.1`, which reached ``1e-4`` and ``1e-6`` relative suboptimality sooner on
digits, Samson and Jasper from the shared start (on Samson and Jasper, :math:`\alpha \ge 0.2`
stalled above ``1e-4`` within 4 s: more exact block solves are slower on these ill-conditioned
problems). ``alpha = 0`` is plain HALS
(one sweep per block). The paper counts flops only (:math:`c = 0`); here a row update costs
two torch calls whatever its size, so :math:`c` is that fixed cost in multiply-adds
(:data:`ROW_OVERHEAD`): without it a small block (Samson's ``W``, 156 x 3) would get a cap of
1151 sweeps of pure dispatch, which the stopping rule does not cut short when the block is
ill-conditioned.

**Loss from held products.** Each block update ends with the Gram of its new value (the other
block's next Gram), and keeps its cross product, so after a step

.. math:: 2 f = \|Y\|_F^2 - 2\langle C, X\rangle + \langle W^\top W, H H^\top\rangle

with :math:`(C, X)` the last block's (:math:`(W^\top Y, H)` or :math:`(H Y^\top, W^\top)`) costs
:math:`O(r^2 + k r)`; in a fixed-W problem :math:`W^\top Y` and :math:`W^\top W` are computed once.

The solver is device-agnostic (the sweep is ``2 r`` torch calls per block on any device) and
works in the problem's dtype; :func:`solve_hals` runs it in float64 to a tolerance.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.sparse import times

FLOOR = 1e-16


# Fixed cost of one row update (two torch calls), in the multiply-adds the module docstring's
# cost model counts: about 4 us of dispatch at the ~2.5 G multiply-adds/s of one CPU core
# (measured with benchmarks/floor_table.py); on a GPU a row update is two kernel launches,
# worth some 1e8 multiply-adds there (an estimate, not measured).
ROW_OVERHEAD = {"cpu": 1e4}
ROW_OVERHEAD_ACCELERATOR = 1e8


def inner_sweeps(products_cost: float, sweep_cost: float, alpha: float) -> int:
    r"""The cap :math:`\lfloor 1 + \alpha \rho \rfloor` with :math:`\rho = 1 + ` ``products_cost / sweep_cost``."""
    return max(1, int(1 + alpha * (1 + products_cost / sweep_cost)))


def sweep_caps(m: int, n: int, r: int, alpha: float, row_overhead: float = 0.0) -> tuple[int, int]:
    r"""``(cap for W, cap for H)`` by Gillis & Glineur's rule, :math:`\rho_W = 1 + n (m + r) / (m (r + 1) + c)`
    (``c = row_overhead``, 0 in the paper) and :math:`\rho_H` with ``m`` and ``n`` swapped."""
    return (inner_sweeps(n * (m + r), m * (r + 1) + row_overhead, alpha),
            inner_sweeps(m * (n + r), n * (r + 1) + row_overhead, alpha))


class RowSweeps:
    """HALS sweeps over the rows of one factor ``X`` (``r x k``), updated in place.

    The update of row ``t`` is written as ``max(eps, C'_t - M_t X)`` with
    ``M = offdiag(G) / d`` and ``C' = (C - l1) / d``, ``d = diag(G) + l2``: one ``addmv`` and
    one ``clamp`` per row, since ``M_tt = 0`` makes the old ``x_t`` irrelevant. ``M``, ``C'``
    and the row views of every matrix are held between calls, so a call adds a handful of
    torch calls to the ``2 r`` per sweep (at small sizes the sweep is dispatch-bound).
    """

    def __init__(self, X: torch.Tensor, l1: float = 0.0, l2: float = 0.0, eps: float = FLOOR) -> None:
        self.X, self.l1, self.l2, self.eps = X, l1, l2, eps
        r = X.shape[0]
        self.M = torch.empty(r, r, dtype=X.dtype, device=X.device)
        self.C = torch.empty_like(X)
        self.rows, self.m_rows, self.c_rows = X.unbind(0), self.M.unbind(0), self.C.unbind(0)
        self.XT = X.mT
        self.buffer = torch.empty_like(self.rows[0])
        self.previous = torch.empty_like(X)
        self.tiny = torch.finfo(X.dtype).tiny

    def __call__(self, gram: torch.Tensor, cross: torch.Tensor, max_sweeps: int, delta: float) -> int:
        """Up to ``max_sweeps`` sweeps with Gram ``gram`` and cross product ``cross``; stops
        once a sweep changes ``X`` by at most ``delta`` times the first sweep's change.
        Returns the number of sweeps done."""
        d = gram.diagonal().add(self.l2).clamp_min_(self.tiny).unsqueeze_(1)
        torch.div(gram, d, out=self.M).diagonal().zero_()
        torch.div(cross.sub(self.l1) if self.l1 else cross, d, out=self.C)
        X, XT, rows, m_rows, c_rows, buffer, eps = self.X, self.XT, self.rows, self.m_rows, self.c_rows, self.buffer, self.eps
        addmv, clamp_min, previous = torch.addmv, torch.clamp_min, self.previous
        first = math.inf
        for sweep in range(1, max_sweeps + 1):
            last = sweep == max_sweeps
            if not last:
                previous.copy_(X)
            for t in range(len(rows)):
                addmv(c_rows[t], XT, m_rows[t], alpha=-1, out=buffer)
                clamp_min(buffer, eps, out=rows[t])
            if last:
                return sweep
            change = float(torch.dist(X, previous))
            if sweep == 1:
                first = change
            elif change <= delta * first:
                return sweep
        return max_sweeps


class HALS:
    r"""Accelerated HALS, one block after the other per iteration, with ``l1``/``l2`` penalties.

    ``first="W"`` (the default, the order of Cichocki's and Gillis's HALS and of scikit-learn's
    coordinate descent) updates ``W`` then ``H``; ``first="H"`` the order of ``mu`` and the PGM
    family. From one start the two orders can end in different stationary points (on Samson
    from the shared start, W first reaches a 3e-5 lower loss). ``l1 = (l1_W, l1_H)`` and
    ``l2 = (l2_W, l2_H)`` weight :math:`\lambda_1 \sum x` and :math:`\tfrac{\lambda_2}{2}\|x\|^2`.
    ``W`` is held as :math:`W^\top` (``r x m``, row-major), so both blocks are sweeps over
    contiguous rows. Each block update ends with the Gram of its new value, which the other
    block's update and :meth:`loss` both use.
    """

    def __init__(self, alpha: float = 0.1, delta: float = 0.1, eps: float = FLOOR, first: str = "W",
                 l1: tuple[float, float] = (0.0, 0.0), l2: tuple[float, float] = (0.0, 0.0)) -> None:
        if first not in ("W", "H"):
            raise ValueError(f"first must be 'W' or 'H', got {first!r}")
        self.alpha, self.delta, self.eps, self.first = alpha, delta, eps, first
        self.l1_W, self.l1_H = l1
        self.l2_W, self.l2_H = l2

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        self.problem = problem
        self.fixed_W = problem.fixed_W
        self.Wt = W0.T.contiguous() if self.fixed_W else W0.T.clamp_min(self.eps).contiguous()
        self.H = H0.clamp_min(self.eps).contiguous()
        m, n = problem.shape
        overhead = ROW_OVERHEAD.get(problem.device.type, ROW_OVERHEAD_ACCELERATOR)
        self.cap_W, self.cap_H = sweep_caps(m, n, problem.rank, self.alpha, overhead)
        self.WtW, self.HHt = self.Wt @ self.Wt.T, self.H @ self.H.T
        self.WtY = times(self.Wt, problem.Y, problem.Yt) if self.fixed_W else None
        self.sweep_H = RowSweeps(self.H, self.l1_H, self.l2_H, self.eps)
        self.sweep_W = RowSweeps(self.Wt, self.l1_W, self.l2_W, self.eps)
        # the last block's (cross product, factor), for loss(); None before the first step
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None
        self.sweeps = {"W": 0, "H": 0}  # sweeps done in the last step

    def step(self) -> None:
        if self.fixed_W:
            self.update_H()
        elif self.first == "W":
            self.update_W()
            self.update_H()
        else:
            self.update_H()
            self.update_W()

    def update_H(self) -> None:
        WtY = self.WtY if self.fixed_W else times(self.Wt, self.problem.Y, self.problem.Yt)
        self.sweeps["H"] = self.sweep_H(self.WtW, WtY, self.cap_H, self.delta)
        self.HHt = self.H @ self.H.T
        self.last = (WtY, self.H)

    def update_W(self) -> None:
        HYt = times(self.H, self.problem.Yt, self.problem.Y)
        self.sweeps["W"] = self.sweep_W(self.HHt, HYt, self.cap_W, self.delta)
        self.WtW = self.Wt @ self.Wt.T
        self.last = (HYt, self.Wt)

    def loss(self) -> float:
        """``1/2 ||Y - W H||^2`` at :meth:`factors` from the held products (module docstring)."""
        if self.last is None:  # before the first step
            return self.problem.loss(*self.factors())
        cross, X = self.last
        return self.problem.loss_from_products(cross, X, self.WtW, self.HHt)

    def penalty(self) -> float:
        r"""The penalties' value at :meth:`factors`: :math:`\sum_X \lambda_1 \sum X + \tfrac{\lambda_2}{2}\|X\|^2`."""
        value = 0.0
        blocks = [(self.H, self.l1_H, self.l2_H)] + ([] if self.fixed_W else [(self.Wt, self.l1_W, self.l2_W)])
        for X, l1, l2 in blocks:
            if l1:
                value += l1 * float(torch.sum(X, dtype=torch.float64))
            if l2:
                value += 0.5 * l2 * float(torch.sum(X * X, dtype=torch.float64))
        return value

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.Wt.T, self.H


@dataclass(frozen=True)
class HALSResult:
    """What :func:`solve_hals` found: float64 factors, their loss (and objective with the
    penalties), the iterations run and whether the tolerance was met."""

    W: torch.Tensor
    H: torch.Tensor
    loss: float
    objective: float
    iterations: int
    converged: bool
    seconds: float


def solve_hals(
    problem: Problem, W0: torch.Tensor, H0: torch.Tensor, *, tol: float = 1e-12, max_iter: int = 100_000,
    max_time: float | None = None, alpha: float = 0.1, delta: float = 0.1, first: str = "W", eps: float = FLOOR,
    l1: tuple[float, float] = (0.0, 0.0), l2: tuple[float, float] = (0.0, 0.0),
) -> HALSResult:
    r"""Accelerated HALS in float64 from ``(W0, H0)`` until the objective
    :math:`F = f + \text{penalties}` decreases by at most ``tol`` relative over an iteration
    (``converged``), ``max_iter`` iterations or ``max_time`` seconds.

    The problem is moved to float64 on its device if it is not already; ``W0``, ``H0`` are not
    modified. Meant as a reference solver: ``loss`` is then an upper bound on ``f*`` for this
    start that HALS reaches quickly and reproducibly.
    """
    if problem.dtype != torch.float64:
        problem = problem.to(problem.device, torch.float64)
    solver = HALS(alpha=alpha, delta=delta, eps=eps, first=first, l1=l1, l2=l2)
    solver.init(problem, W0.to(problem.device, torch.float64), H0.to(problem.device, torch.float64))
    tic = time.perf_counter()
    objective = solver.loss() + solver.penalty()
    converged = False
    k = 0
    while k < max_iter and not converged:
        solver.step()
        k += 1
        value = solver.loss() + solver.penalty()
        converged = objective - value <= tol * max(abs(value), torch.finfo(torch.float64).tiny)
        objective = value
        if max_time is not None and time.perf_counter() - tic >= max_time:
            break
    W, H = solver.factors()
    return HALSResult(W=W.contiguous(), H=H.clone(), loss=solver.loss(), objective=objective, iterations=k,
                      converged=converged, seconds=time.perf_counter() - tic)
