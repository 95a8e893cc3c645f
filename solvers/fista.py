r"""``fista``: alternating Nesterov-accelerated proximal gradient with adaptive restart.

Each iteration extrapolates both blocks with one shared FISTA sequence (Beck & Teboulle 2009)
and takes a proximal gradient step from the extrapolated point:

.. math::
    \theta_{k+1} = \tfrac12\big(1 + \sqrt{1 + 4\theta_k^2}\big),\quad
    \beta_k = \frac{\theta_k - 1}{\theta_{k+1}},\quad
    V = X_k + \beta_k (X_k - X_{k-1}),\quad
    X_{k+1} = \operatorname{prox}_{t g}\!\big(V - t \nabla f(V)\big),

first for :math:`H`, then for :math:`W` with the new :math:`H`, with :math:`t = s / L` per
block as in ``pgm``. Momentum is reset (:math:`\theta \leftarrow 1`, so the next
:math:`\beta = 0`) by the adaptive restart of O'Donoghue & Candès (2015, "Adaptive restart for
accelerated gradient schemes"):

- ``restart=function``: when the objective :math:`F = f + g_W + g_H` increases. ``f`` is
  :meth:`loss`, from the last block's products and the Gram of the new :math:`W` that the next
  iteration needs anyway (:math:`O(r^2 + r m)`, no :math:`m \times n` product); ``g`` from
  the prox operators' declared penalties (0 for projections).
- ``restart=gradient``: when :math:`\sum_{\text{blocks}} \langle V - X_{k+1}, X_{k+1} - X_k\rangle > 0`,
  i.e. the step makes an obtuse angle with the momentum direction (the proximal gradient
  mapping version of the scheme).
- ``restart=none``: plain FISTA.
"""

from __future__ import annotations

import math

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param
from proxmf_bench.problem.problem import Problem
from proxmf_bench.solve.proxgrad import (
    AlternatingProxSolver,
    BoundProx,
    gradient_step,
    lipschitz,
    prox_solver_spec,
    safe_step,
)
from proxmf_bench.solvers.pgm import STEP_SCALE

RESTARTS = ("function", "gradient", "none")


class FISTA(AlternatingProxSolver):
    """Alternating FISTA with function-value, gradient or no restart."""

    def __init__(self, prox_W: BoundProx, prox_H: BoundProx, step_scale: float = 1.0, restart: str = "function") -> None:
        super().__init__(prox_W, prox_H)
        self.step_scale = step_scale
        self.restart = restart

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        super().init(problem, W0, H0)
        self.theta = 1.0  # the FISTA sequence; 1 after a restart
        self.beta = 0.0  # this iteration's extrapolation weight
        self.angle = 0.0  # this iteration's sum of <V - X_new, X_new - X> (gradient restart)
        self.objective = math.inf  # f + g after the last iteration (function restart)
        self.restarts = 0

    def step(self) -> None:
        theta_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * self.theta**2))
        self.beta = (self.theta - 1.0) / theta_next
        self.angle = 0.0
        super().step()
        if self.restart == "function":
            objective = self.loss() + self.penalty("H", self.H)
            if not self.fixed_W:
                objective += self.penalty("W", self.Wt)
            restart = objective > self.objective
            self.objective = objective
        else:
            restart = self.restart == "gradient" and self.angle > 0
        self.theta = 1.0 if restart else theta_next
        self.restarts += restart

    def update(self, block: str, X: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        state = self.state[block]
        previous = state.get("previous")
        V = X if previous is None or self.beta == 0 else X.lerp(previous, -self.beta)  # X + beta (X - prev)
        t = safe_step(self.step_scale, lipschitz(gram))
        Z = self.prox_(block, gradient_step(gram, V, cross, t), t)
        if self.restart == "gradient":
            self.angle += float(torch.sum((V - Z) * (Z - X)))
        state["previous"] = X
        return Z


@hookimpl
def proxmf_register_solvers(register):
    register(
        prox_solver_spec(
            "fista", FISTA,
            params=(STEP_SCALE, Param("restart", "function", str, "adaptive restart scheme", choices=RESTARTS)),
            grid={"restart": ["function", "gradient"]},
            summary="alternating FISTA (Nesterov) PGM with adaptive restart (O'Donoghue & Candes)",
            examples=({"restart": "none"}, {"restart": "function", "prox_H": "l1", "lam_H": "0.1"}),
        )
    )
