r"""``adaprox``: proximal Adam / AMSGrad (AdaProx; Melchior, Joseph & Moolekamp 2020,
arXiv:1910.10094), alternating over the blocks.

Adam's per-element step sizes adapt to the gradient's history, so no Lipschitz constant is
needed. Per block, with gradient :math:`g_k`, :math:`m_k = \beta_1 m_{k-1} + (1-\beta_1) g_k`
and :math:`v_k = \beta_2 v_{k-1} + (1-\beta_2) g_k^2`:

- ``variant=adam``: :math:`\phi = m_k / (1-\beta_1^k)`,
  :math:`\psi = \sqrt{v_k / (1-\beta_2^k)} + \epsilon`;
- ``variant=amsgrad``: :math:`\hat v_k = \max(\hat v_{k-1}, v_k)`, :math:`\phi = m_k`,
  :math:`\psi = \sqrt{\hat v_k} + \epsilon`.

The update is the proximal step in the metric :math:`\Psi = \operatorname{diag}(\psi)`:

.. math:: X_{k+1} = \arg\min_Z \tfrac12 \|Z - V\|_\Psi^2 + \alpha\, g(Z),\qquad
          V = X_k - \alpha\, \phi / \psi .

For a projection that acts on each element (``nonneg``, ``box``: ``projection=True``,
``acts_on="elements"``) the metric does not matter, :math:`X_{k+1}` is the projection of
:math:`V`, computed as such. Any other prox is solved as in the paper by a few proximal
gradient sub-iterations,
:math:`Z \leftarrow \operatorname{prox}_{\gamma\alpha g}(Z - \gamma \psi \odot (Z - V))` with
:math:`\gamma = 1/\max\psi`, from :math:`Z = V`, stopping when
:math:`\|\Delta Z\| \le` ``prox_tol`` :math:`\|Z\|` or after ``prox_iter`` iterations.

The step :math:`\alpha` is in units of the factor (Adam moves each entry by about
:math:`\alpha` per step), so it is set relative to the block's scale:
:math:`\alpha = \texttt{lr} \cdot \operatorname{rms}(X_0)`, which makes ``lr`` independent of
the data's units.
"""

from __future__ import annotations

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param
from proxmf_bench.problem.problem import Problem
from proxmf_bench.solve.proxgrad import AlternatingProxSolver, BoundProx, gram_gradient, prox_solver_spec

VARIANTS = ("amsgrad", "adam")


class AdaProx(AlternatingProxSolver):
    """Alternating proximal Adam/AMSGrad with the prox taken in Adam's metric."""

    def __init__(
        self, prox_W: BoundProx, prox_H: BoundProx, lr: float = 0.1, variant: str = "amsgrad",
        b1: float = 0.9, b2: float = 0.999, eps: float = 1e-12, prox_iter: int = 20, prox_tol: float = 1e-6,
    ) -> None:
        super().__init__(prox_W, prox_H)
        self.lr, self.variant, self.b1, self.b2, self.eps = lr, variant, b1, b2, eps
        self.prox_iter, self.prox_tol = prox_iter, prox_tol

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        super().init(problem, W0, H0)
        for block, X in (("W", self.Wt), ("H", self.H)):
            rms = float(torch.linalg.vector_norm(X)) / max(X.numel(), 1) ** 0.5
            self.state[block].update(
                k=0, alpha=self.lr * (rms if rms > 0 else 1.0), m=torch.zeros_like(X), v=torch.zeros_like(X),
                vmax=torch.zeros_like(X) if self.variant == "amsgrad" else None,
            )

    def update(self, block: str, X: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        s = self.state[block]
        grad = gram_gradient(gram, X, cross)
        s["k"] += 1
        s["m"].mul_(self.b1).add_(grad, alpha=1 - self.b1)
        s["v"].mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        if self.variant == "adam":
            phi = s["m"] / (1 - self.b1 ** s["k"])
            psi = (s["v"] / (1 - self.b2 ** s["k"])).sqrt_().add_(self.eps)
        else:
            torch.maximum(s["vmax"], s["v"], out=s["vmax"])
            phi = s["m"]
            psi = s["vmax"].sqrt().add_(self.eps)
        alpha = s["alpha"]
        V = torch.addcdiv(X, phi, psi, value=-alpha)  # X - alpha phi / psi, one pass
        return self.scaled_prox(block, V, psi, alpha)

    def scaled_prox(self, block: str, V: torch.Tensor, psi: torch.Tensor, alpha: float) -> torch.Tensor:
        """``argmin_Z 1/2 ||Z - V||^2_psi + alpha g(Z)``: the projection of ``V`` for an
        elementwise projection, else by proximal gradient sub-iterations."""
        spec = (self.prox_H if block == "H" else self.prox_W).spec
        if spec.projection and spec.acts_on == "elements":
            # min over z in S_i of psi_i (z - v_i)^2 is the nearest point of S_i, whatever psi_i > 0
            return self.prox_(block, V, alpha)
        top = float(psi.max())
        gamma = 1.0 / top if top > 0 else 1.0
        Z = self.prox(block, V, gamma * alpha)
        for _ in range(self.prox_iter - 1):
            # Z - gamma psi (Z - V) in one pass over a fresh tensor, which the prox may overwrite
            Z_next = self.prox_(block, torch.addcmul(Z, psi, Z - V, value=-gamma), gamma * alpha)
            change = float(torch.linalg.vector_norm(Z_next - Z))
            Z = Z_next
            if change <= self.prox_tol * float(torch.linalg.vector_norm(Z)):
                break
        return Z


@hookimpl
def proxmf_register_solvers(register):
    register(
        prox_solver_spec(
            "adaprox", AdaProx,
            params=(
                Param("lr", 0.1, float, "step relative to the rms of each initial factor", low=1e-8, high=10.0),
                Param("variant", "amsgrad", str, "moment estimates", choices=VARIANTS),
                Param("b1", 0.9, float, "first-moment decay", low=0.0, high=0.999),
                Param("b2", 0.999, float, "second-moment decay", low=0.0, high=0.999999),
                Param("eps", 1e-12, float, "added to sqrt(v)", low=1e-30),
                Param("prox_iter", 20, int, "max sub-iterations of the scaled prox", low=1, high=1000),
                Param("prox_tol", 1e-6, float, "relative tolerance of the sub-iterations", low=0.0),
            ),
            summary="proximal Adam/AMSGrad (AdaProx, Melchior et al. 2020): adaptive steps, no Lipschitz constant",
            examples=({"variant": "adam"},),
        )
    )
