r"""``pgm_torch``: the ``pgm`` problem solved the torch way, with autograd and
:class:`proxmf_bench.solve.optim.ProxSGD`.

Each iteration is two customary ``zero_grad() / loss.backward() / step()`` rounds, first with
only :math:`H` requiring a gradient, then only :math:`W`. Autograd goes through the Gram form
of the block objective, not the :math:`m \times n` residual:

.. math::
    f(X) = \tfrac12\|Y\|_F^2 - \langle C, X\rangle + \tfrac12\langle G X, X\rangle,
    \qquad \nabla_X f = G X - C,

with :math:`(G, C, X) = (W^\top W, W^\top Y, H)` for the ``H`` round and
:math:`(H H^\top, H Y^\top, W^\top)` for the ``W`` round. The gradient is exactly that of
:math:`\tfrac12\|Y - WH\|_F^2` in the round's variable, but the graph holds only
:math:`r \times k` tensors: the products with ``Y`` are computed once per round outside it.
Like ``pgm``, the solver holds :math:`W^\top` (``r x m``, row-major) as its parameter, so
both rounds are the same row-major products (``Wt @ Y`` and ``H @ Yt``) and the prox on
``W`` sees the transposed view, in ``W``'s natural orientation. The prox is applied in place
where the operator has an in-place variant. Before each round the group's step is set to
``step_scale`` :math:`/ L` from the eigenvalues of the block's Gram, so with ``momentum=0``
the iterates are those of ``pgm``: the difference in speed is the cost of the optimizer
route. ``momentum``, ``dampening`` and ``nesterov`` are passed to the optimizer.

:meth:`TorchPGM.loss` costs :math:`O(r^2 + m r)`: after a step the solver holds
:math:`H Y^\top` and :math:`H H^\top` of the current :math:`H` (the ``W`` round's) and
:math:`W^\top W` of the new :math:`W` (the next ``H`` round's Gram, computed at the end of the
step), so :math:`2 f = \|Y\|_F^2 - 2\langle W^\top, H Y^\top\rangle + \langle W^\top W, H H^\top\rangle`.
In a fixed-W problem ``W^T Y`` and ``W^T W`` are computed once.

Everything the optimizer route needs is imported when the solver is built (``torch.optim``
imports ``torch._dynamo`` on its first step, about 0.6 s, and ``record_function`` around
``Optimizer.step`` the profiler's modules), never inside a timed step.
"""

from __future__ import annotations

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.sparse import times
from proxmf_bench.solve.optim import ProxSGD
from proxmf_bench.solve.proxgrad import BoundProx, lipschitz, load_eigensolver, prox_solver_spec, safe_step
from proxmf_bench.solvers.pgm import STEP_SCALE


class TorchPGM:
    """Alternating PGM through ``torch.optim`` and autograd on the Gram form of the loss."""

    def __init__(
        self, prox_W: BoundProx, prox_H: BoundProx, step_scale: float = 1.0,
        momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
    ) -> None:
        load_eigensolver()
        _warm_up_optimizer_route()

        self.prox_W, self.prox_H = prox_W, prox_H
        self.step_scale = step_scale
        self.options = dict(momentum=momentum, dampening=dampening, nesterov=nesterov)

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        self.problem = problem
        self.fixed_W = problem.fixed_W
        self.Wt = W0.T.contiguous().requires_grad_(not self.fixed_W)
        self.H = H0.clone().requires_grad_(True)
        with torch.no_grad():
            self.WWt = self.Wt @ self.Wt.T
            # W^T Y of a fixed W, computed once
            self.WtY = times(self.Wt, problem.Y, problem.Yt) if self.fixed_W else None
        self.HYt: torch.Tensor | None = None  # H Y^T and H H^T of the last W round
        self.HHt: torch.Tensor | None = None
        groups = [{"params": [self.H], "prox": self.prox_H.apply_}]
        if not self.fixed_W:
            groups.append({"params": [self.Wt], "prox": self._prox_Wt})
        self.optimizer = ProxSGD(groups, lr=1.0, **self.options)

    def _prox_Wt(self, Wt: torch.Tensor, step: float) -> torch.Tensor:
        """The prox on ``W`` applied to the parameter ``Wt`` through its transposed view."""
        return self.prox_W.apply_(Wt.T, step).T

    def optimizer_round(self, group: dict, gram: torch.Tensor, cross: torch.Tensor, X: torch.Tensor) -> None:
        r"""One optimizer round on the block ``X``: ``zero_grad``, ``backward`` of
        :math:`\tfrac12\langle G X - 2 C, X\rangle` (gradient ``G X - C``; the loss up to the
        constant :math:`\|Y\|^2 / 2`), ``step``. Written so, the backward pass has no scaling
        of ``G X`` to do: the fewest elementwise passes of the forms tried."""
        group["lr"] = safe_step(self.step_scale, lipschitz(gram))
        self.optimizer.zero_grad()
        (0.5 * torch.sum(torch.addmm(cross, gram, X, beta=-2) * X)).backward()
        self.optimizer.step()

    def step(self) -> None:
        groups = self.optimizer.param_groups
        H, Wt = self.H, self.Wt
        with torch.no_grad():
            WtY = self.WtY if self.fixed_W else times(Wt, self.problem.Y, self.problem.Yt)
        self.optimizer_round(groups[0], self.WWt, WtY, H)
        if self.fixed_W:
            return
        with torch.no_grad():
            self.HHt = H @ H.T
            self.HYt = times(H, self.problem.Yt, self.problem.Y)
        self.optimizer_round(groups[1], self.HHt, self.HYt, Wt)
        with torch.no_grad():
            self.WWt = Wt @ Wt.T

    def loss(self) -> float:
        """The loss at :meth:`factors` from the held products (see the module doc)."""
        W, H = self.factors()
        if self.fixed_W:
            return self.problem.loss_from_products(self.WtY, H, self.WWt, H @ H.T)
        if self.HYt is None:  # before the first step
            return self.problem.loss(W, H)
        return self.problem.loss_from_products(self.HYt, self.Wt.detach(), self.WWt, self.HHt)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.Wt.detach().T, self.H.detach()


def _warm_up_optimizer_route() -> None:
    """One round of the optimizer route on a 1-element parameter, so that what it imports on
    first use (``torch._dynamo`` from ``torch.optim``, about 0.6 s; the profiler modules of
    ``record_function`` around ``Optimizer.step``) is imported when the harness builds the
    solver, not in the timed ``init()`` or ``step()``. Once per process after the first."""
    x = torch.zeros(1, requires_grad=True)
    optimizer = ProxSGD([x], lr=0.0)
    optimizer.zero_grad()
    x.sum().backward()
    optimizer.step()


def _check_nesterov(params) -> str | None:
    if params["nesterov"] and (params["momentum"] <= 0 or params["dampening"] != 0):
        return "nesterov=true needs momentum > 0 and dampening = 0"
    return None


@hookimpl
def proxmf_register_solvers(register):
    register(
        prox_solver_spec(
            "pgm_torch", TorchPGM,
            params=(
                STEP_SCALE,
                Param("momentum", 0.0, float, "optimizer momentum", low=0.0, high=0.99),
                Param("dampening", 0.0, float, "optimizer dampening", low=0.0, high=1.0),
                Param("nesterov", False, bool, "Nesterov momentum (needs momentum > 0, dampening 0)"),
            ),
            summary="pgm through torch.optim (proxmf_bench.solve.optim.ProxSGD) and autograd",
            check=_check_nesterov,
            examples=({"momentum": "0.5", "nesterov": "true"},
                      {"momentum": "0.5", "nesterov": "true", "prox": "l1", "lam": "0.1"}),
        )
    )
