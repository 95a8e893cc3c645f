r"""``pgm_momentum``: alternating proximal gradient with heavy-ball momentum (iPiano).

Per block, with :math:`t = s / L` as in ``pgm`` and momentum :math:`\beta` (``beta``):

.. math:: X_{k+1} = \operatorname{prox}_{t g}\!\big(X_k - t \nabla f(X_k) + \beta (X_k - X_{k-1})\big).

The gradient is taken at :math:`X_k` (Polyak's heavy ball), not at an extrapolated point as in
Nesterov's method (``fista``). Ochs, Chen, Brox & Pock (2014, "iPiano") prove convergence for
nonconvex :math:`f` when :math:`\beta \in [0, 1)` and :math:`t < 2(1 - \beta)/L`, i.e.
``step_scale < 2 (1 - beta)``; the defaults (``beta = 0.3``, ``step_scale = 1``) satisfy it.
"""

from __future__ import annotations

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param
from proxmf_bench.solve.proxgrad import (
    AlternatingProxSolver,
    BoundProx,
    gradient_step,
    lipschitz,
    prox_solver_spec,
    safe_step,
)
from proxmf_bench.solvers.pgm import STEP_SCALE


class HeavyBallPGM(AlternatingProxSolver):
    """Alternating proximal gradient with a heavy-ball term per block."""

    def __init__(self, prox_W: BoundProx, prox_H: BoundProx, step_scale: float = 1.0, beta: float = 0.3) -> None:
        super().__init__(prox_W, prox_H)
        self.step_scale = step_scale
        self.beta = beta

    def update(self, block: str, X: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        t = safe_step(self.step_scale, lipschitz(gram))
        state = self.state[block]
        Z = gradient_step(gram, X, cross, t)
        previous = state.get("previous")
        if previous is not None:
            Z.add_(X, alpha=self.beta).sub_(previous, alpha=self.beta)
        state["previous"] = X
        return self.prox_(block, Z, t)


@hookimpl
def proxmf_register_solvers(register):
    register(
        prox_solver_spec(
            "pgm_momentum", HeavyBallPGM,
            params=(STEP_SCALE, Param("beta", 0.3, float, "heavy-ball momentum", low=0.0, high=0.99)),
            summary="alternating proximal gradient with heavy-ball momentum (iPiano)",
            examples=({"beta": "0.9", "prox_H": "l1", "lam_H": "0.1"},),
        )
    )
