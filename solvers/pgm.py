r"""``pgm``: alternating block proximal gradient with analytic, Gram-based gradients.

One iteration updates :math:`H`, then :math:`W` with the fresh :math:`H`:

.. math::
    H \leftarrow \operatorname{prox}_{t_H g_H}\!\big(H - t_H \nabla_H f\big),\qquad
    W \leftarrow \operatorname{prox}_{t_W g_W}\!\big(W - t_W \nabla_W f\big),

with :math:`t = s / L` per block, :math:`L` the largest eigenvalue of the block's
:math:`r \times r` Gram (:math:`W^\top W` or :math:`H H^\top`) and ``s = step_scale``.

With ``backtracking=true`` each block instead tries the step
:math:`t = t_{\text{prev}} / \eta` (``eta = shrink``, the first trial being :math:`s / (\eta L)`)
and shrinks it by :math:`\eta` until the sufficient decrease condition
(Beck & Teboulle 2009)

.. math:: f(Z) \le f(X) + \langle \nabla f(X), Z - X\rangle + \tfrac{1}{2t}\|Z - X\|^2,
          \qquad Z = \operatorname{prox}_{t g}(X - t\nabla f(X)),

holds. The block objective is quadratic, so the condition is exactly
:math:`\langle D, G D\rangle \le \|D\|^2 / t` with :math:`D = Z - X` and :math:`G` the Gram,
which costs :math:`O(r^2 k)`; it always holds for :math:`t \le 1/L`, where the search stops,
and never for :math:`t > 1/\lambda_{\min}(G)`, where trials are capped. Steps longer than
:math:`1/L` are accepted wherever the local curvature allows.
"""

from __future__ import annotations

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param
from proxmf_bench.solve.proxgrad import (
    AlternatingProxSolver,
    BoundProx,
    extreme_eigenvalues,
    gradient_step,
    gram_gradient,
    lipschitz,
    prox_solver_spec,
    safe_step,
)

STEP_SCALE = Param("step_scale", 1.0, float, "step = step_scale / L per block", low=1e-6, high=2.0)


class PGM(AlternatingProxSolver):
    """Plain alternating proximal gradient, optionally with backtracking."""

    def __init__(
        self, prox_W: BoundProx, prox_H: BoundProx, step_scale: float = 1.0,
        backtracking: bool = False, shrink: float = 0.5,
    ) -> None:
        super().__init__(prox_W, prox_H)
        self.step_scale = step_scale
        self.backtracking = backtracking
        self.shrink = shrink

    def update(self, block: str, X: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        if not self.backtracking:
            t = safe_step(self.step_scale, lipschitz(gram))
            return self.prox_(block, gradient_step(gram, X, cross, t), t)
        return self._backtrack(block, X, gram, gram_gradient(gram, X, cross))

    def _backtrack(self, block: str, X: torch.Tensor, gram: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        smallest, L = extreme_eigenvalues(gram)
        t_safe = safe_step(1.0, L)
        # no direction accepts a step beyond 1 / lambda_min, so trials stop growing there
        finfo = torch.finfo(gram.dtype)
        t_max = 1.0 / max(smallest, finfo.eps * L, finfo.tiny)
        state = self.state[block]
        t = min(state.get("step", safe_step(self.step_scale, L)) / self.shrink, t_max)
        while True:
            if t <= t_safe:
                t = t_safe
                Z = self.prox_(block, X.add(grad, alpha=-t), t)
                break
            Z = self.prox_(block, X.add(grad, alpha=-t), t)
            D = Z - X
            if float(torch.sum((gram @ D) * D)) * t <= float(torch.sum(D * D)):
                break
            t *= self.shrink
        state["step"] = t
        return Z


@hookimpl
def proxmf_register_solvers(register):
    register(
        prox_solver_spec(
            "pgm", PGM,
            params=(
                STEP_SCALE,
                Param("backtracking", False, bool, "search steps longer than 1/L (sufficient decrease)"),
                Param("shrink", 0.5, float, "backtracking factor eta", low=0.05, high=0.95),
            ),
            summary="alternating proximal gradient, step 1/L per block from the r x r Gram, any prox",
            examples=({"backtracking": "true"}, {"prox": "l1", "lam": "0.1"},
                      {"prox_W": "simplex", "prox_H": "l1_nonneg", "lam_H": "0.1"}),
        )
    )
