r"""``pgm_torch``: the ``pgm`` problem solved the torch way, with autograd and
:class:`proxmf_bench.optim.PGM`.

Each iteration is two customary ``zero_grad() / loss.backward() / step()`` rounds, first with
only :math:`H` requiring a gradient, then only :math:`W`, on
:math:`\tfrac12\|Y - WH\|_F^2` formed explicitly (the autograd route materialises the
:math:`m \times n` residual). Before each round the group's step is set to
``step_scale`` :math:`/ L` from ``eigvalsh`` of the block's Gram, so with ``momentum=0`` the
iterates are those of ``pgm``: the difference in speed is the cost of the optimizer route.
``momentum``, ``dampening`` and ``nesterov`` are passed to the optimizer.
"""

from __future__ import annotations

import torch

from proxmf_bench.hookspecs import hookimpl
from proxmf_bench.optim import PGM
from proxmf_bench.problem import Problem
from proxmf_bench.proxgrad import BoundProx, lipschitz, load_eigensolver, prox_solver_spec, safe_step
from proxmf_bench.solvers.pgm import STEP_SCALE
from proxmf_bench.specs import Param


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
        self.Y = problem.Y
        self.fixed_W = problem.fixed_W
        self.W = W0.clone().requires_grad_(not self.fixed_W)
        self.H = H0.clone().requires_grad_(True)
        groups = [{"params": [self.H], "prox": self.prox_H}]
        if not self.fixed_W:
            groups.append({"params": [self.W], "prox": self.prox_W})
        self.optimizer = PGM(groups, lr=1.0, **self.options)

    def _half_step(self, group: dict, gram: torch.Tensor, W: torch.Tensor, H: torch.Tensor) -> None:
        group["lr"] = safe_step(self.step_scale, lipschitz(gram))
        self.optimizer.zero_grad()
        loss = 0.5 * (self.Y - W @ H).pow(2).sum()
        loss.backward()
        self.optimizer.step()

    def step(self) -> None:
        groups = self.optimizer.param_groups
        with torch.no_grad():
            gram = self.W.T @ self.W
        self._half_step(groups[0], gram, self.W.detach(), self.H)
        if not self.fixed_W:
            with torch.no_grad():
                gram = self.H @ self.H.T
            self._half_step(groups[1], gram, self.W, self.H.detach())

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
            summary="pgm through torch.optim (proxmf_bench.optim.PGM) and autograd",
            check=_check_nesterov,
        )
    )
