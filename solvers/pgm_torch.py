r"""``pgm_torch``: the ``pgm`` problem solved the torch way, with autograd and
:class:`proxmf_bench.solve.optim.ProxSGD`.

Each iteration is two customary ``zero_grad() / loss.backward() / step()`` rounds, first with
only :math:`H` requiring a gradient, then only :math:`W`, on
:math:`\tfrac12\|Y - WH\|_F^2` formed explicitly (the autograd route materialises the
:math:`m \times n` residual). Before each round the group's step is set to
``step_scale`` :math:`/ L` from ``eigvalsh`` of the block's Gram, so with ``momentum=0`` the
iterates are those of ``pgm``: the difference in speed is the cost of the optimizer route.
``momentum``, ``dampening`` and ``nesterov`` are passed to the optimizer.

:meth:`TorchPGM.loss` costs :math:`O(m r^2)` instead of an :math:`m \times n \times r` product.
The loss is quadratic in :math:`W`, so with :math:`\Delta = W - W_{\mathrm{old}}`

.. math::
    f(W, H) = f(W_{\mathrm{old}}, H) + \langle \nabla_W f(W_{\mathrm{old}}, H), \Delta\rangle
              + \tfrac12 \langle \Delta^\top \Delta, H H^\top\rangle,

where the ``W`` round has computed :math:`f(W_{\mathrm{old}}, H)` (its loss),
:math:`\nabla_W f(W_{\mathrm{old}}, H)` (``W.grad``) and :math:`H H^\top` (for its step),
whatever the optimizer then did with them (momentum included). Unlike the Gram form below, it
subtracts no terms of the size of :math:`\|Y\|_F^2`, so it is also more accurate. The only
addition to the timed step is a copy of :math:`W_{\mathrm{old}}` (:math:`m \times r`) before the
optimizer overwrites it. In a fixed-W problem
:math:`2 f = \|Y\|_F^2 - 2\langle W^\top Y, H\rangle + \langle W^\top W, H H^\top\rangle`, with
``W^T Y`` and ``W^T W`` computed at the first call of ``loss`` (outside the timed step).
"""

from __future__ import annotations

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param
from proxmf_bench.problem.problem import Problem
from proxmf_bench.solve.optim import ProxSGD
from proxmf_bench.solve.proxgrad import BoundProx, lipschitz, load_eigensolver, prox_solver_spec, safe_step
from proxmf_bench.solvers.pgm import STEP_SCALE


class TorchPGM:
    """Alternating PGM through ``torch.optim`` and autograd."""

    def __init__(
        self, prox_W: BoundProx, prox_H: BoundProx, step_scale: float = 1.0,
        momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
    ) -> None:
        # torch.optim imports torch._dynamo on first use (seconds, once per process): do it here,
        # when the harness builds the solver, not in the timed init()
        import torch._dynamo  # noqa: F401

        load_eigensolver()

        self.prox_W, self.prox_H = prox_W, prox_H
        self.step_scale = step_scale
        self.options = dict(momentum=momentum, dampening=dampening, nesterov=nesterov)

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        self.problem = problem
        self.Y = problem.Y
        self.fixed_W = problem.fixed_W
        self.W = W0.clone().requires_grad_(not self.fixed_W)
        self.H = H0.clone().requires_grad_(True)
        # what loss() needs: W before the last W round, that round's H H^T and loss; W^T W and
        # W^T Y of a fixed W
        self._W_round: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._W_products: tuple[torch.Tensor, torch.Tensor] | None = None
        groups = [{"params": [self.H], "prox": self.prox_H}]
        if not self.fixed_W:
            groups.append({"params": [self.W], "prox": self.prox_W})
        self.optimizer = ProxSGD(groups, lr=1.0, **self.options)

    def _half_step(self, group: dict, gram: torch.Tensor, W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        """One optimizer round; returns its loss (at the factors before the update)."""
        group["lr"] = safe_step(self.step_scale, lipschitz(gram))
        self.optimizer.zero_grad()
        loss = 0.5 * (self.Y - W @ H).pow(2).sum()
        loss.backward()
        self.optimizer.step()
        return loss

    def step(self) -> None:
        groups = self.optimizer.param_groups
        with torch.no_grad():
            gram = self.W.T @ self.W
        self._half_step(groups[0], gram, self.W.detach(), self.H)
        if not self.fixed_W:
            with torch.no_grad():
                gram = self.H @ self.H.T
                W_old = self.W.clone()
            loss = self._half_step(groups[1], gram, self.W, self.H.detach())
            self._W_round = (W_old, gram, loss.detach())

    def loss(self) -> float:
        """The loss at :meth:`factors` from the last ``W`` round (see the module doc)."""
        W, H = self.factors()
        if self.fixed_W:
            if self._W_products is None:
                self._W_products = (W.T @ W, W.T @ self.Y)
            WtW, WtY = self._W_products
            return self.problem.loss_from_inner_products(
                torch.sum(WtY.double() * H.double()), torch.sum(WtW.double() * (H @ H.T).double()))
        if self._W_round is None:  # before the first step
            return self.problem.loss(W, H)
        W_old, HHt, loss_old = self._W_round
        delta = W - W_old
        value = (float(loss_old) + float(torch.sum(self.W.grad * delta, dtype=torch.float64))
                 + 0.5 * float(torch.sum((delta.T @ delta).double() * HHt.double())))
        return max(value, 0.0)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.W.detach(), self.H.detach()


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
