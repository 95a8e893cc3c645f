r"""NALMU as a benchmark solver: K unrolled, weighted MU layers, then plain MU.

``nalmu`` (``weights=ones``) runs ``layers`` all-ones layers, which is exactly the ``mu``
solver. ``nalmu[weights=PATH]`` runs the trained layers stored in ``PATH`` (written by
``proxmf-bench train nalmu``); its ``layers``, ``normalize`` and ``eps`` come from the file and
the file's sha256 is recorded. Iteration ``k > K`` is a plain MU step (on the normalised data
when the model normalises), so long runs stay comparable with ``mu``. Where the unrolled part
ends is in the results: ``layers`` in the ``solver_params`` column.

A step is ``mu``'s (:meth:`~proxmf_bench.solvers.mu.MU.weighted_step`) with the layer's
weights, the same kernels as the model's layers (in place: the solver needs no gradients), and the
solver keeps the same products as ``mu`` so that :meth:`NALMUSolver.loss` costs
:math:`O((m + n) r^2)` instead of another :math:`m \times n \times r` product:

.. math::
    2 f(W, H) = \|Y\|_F^2 - 2\langle W, Y H^\top\rangle + \langle W^\top W, H H^\top\rangle
              = \|Y\|_F^2 - 2\langle W^\top Y, H\rangle + \langle W^\top W, H H^\top\rangle,

the first form with the ``Y H^T`` and ``H H^T`` of the last ``W`` update and the ``W^T W`` of
the new ``W`` (computed at the end of a step instead of at the start of the next), the second
in a fixed-W problem, where ``W^T Y`` and ``W^T W`` are computed once. With ``normalize=True``
the step works on :math:`Y_n = Y D^{-1}` and :math:`H_n = H D^{-1}` (:math:`D` the diagonal of
the column norms of ``Y``) while the loss is that of :meth:`NALMUSolver.factors` on ``Y``: in a
fixed-W problem :math:`W^\top Y = (W^\top Y_n) D` costs :math:`O(rn)`, but in the NMF form
:math:`Y H^\top = Y_n D^2 H_n^\top` would be another :math:`m \times n \times r` product, so
there the loss is :meth:`Problem.loss`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from proxmf_bench.errors import UserError
from proxmf_bench.nalmu.model import NALMU, ColumnScaling, file_sha256, load_weights, normalize_columns
from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param, SolverSpec, SpecLookup, coerce_params
from proxmf_bench.problem.problem import Problem
from proxmf_bench.solvers.mu import MU

ONES = "ones"
PARAMS = (
    Param("weights", ONES, str, "'ones' (untrained: exactly MU) or the path of a trained weights file"),
    Param("layers", 25, int, "unrolled layers K (from the file when weights is a path)", low=0),
    Param("normalize", False, bool, "column normalisation of Y and of the initial factors "
                                    "(from the file when weights is a path)"),
    Param("eps", 1e-12, float, "floor on entries and denominators (from the file when weights is a path)", low=0.0),
)
FROM_FILE = ("layers", "normalize", "eps")


def resolve_params(given: Mapping[str, Any], registry: SpecLookup | None = None) -> dict[str, Any]:
    """Coerce the parameters; with a weights file, take ``FROM_FILE`` from it and add its sha256.

    Reading the file here makes a missing or foreign file fail before any solver runs.
    """
    params = coerce_params(PARAMS, given, "solver nalmu")
    if params["weights"] == ONES:
        return params
    model, _ = load_weights(params["weights"])
    from_file = {"layers": model.config.layers, "normalize": model.config.normalize, "eps": model.config.eps}
    for key, value in from_file.items():
        if key in given and params[key] != value:
            raise UserError(
                f"solver nalmu: {key}={params[key]} was given but the weights file "
                f"{params['weights']} has {key}={value}"
            )
    return {**params, **from_file, "sha256": file_sha256(params["weights"])}


class NALMUSolver(MU):
    """Unrolled weighted MU for ``layers`` iterations, plain MU afterwards."""

    def __init__(self, weights: str = ONES, layers: int = 25, normalize: bool = False, eps: float = 1e-12,
                 sha256: str | None = None) -> None:
        super().__init__(eps)
        self.weights = weights
        self.layers = layers
        self.normalize = normalize
        self.model: NALMU | None = None if weights == ONES else load_weights(weights)[0]

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        m, _ = problem.shape
        like = {"device": problem.device, "dtype": problem.dtype}
        # weights of the unrolled layers; none for the all-ones layers, which are plain MU steps
        self.A_W: list[torch.Tensor | None] = []
        self.A_H: list[torch.Tensor] = []
        if self.model is not None:
            self.model.check_compatible(m, problem.rank, problem.fixed_W, where=f"weights {self.weights}")
            pairs = [self.model.layer_weights(k) for k in range(self.layers)]
            self.A_W = [None if a is None else a.detach().to(**like) for a, _ in pairs]
            self.A_H = [a.detach().to(**like) for _, a in pairs]
        Y = problem.Y
        self.scaling: ColumnScaling | None = None
        if self.normalize:
            Y, W0, H0, self.scaling = normalize_columns(Y, W0, H0, problem.fixed_W)
        self.start(problem, Y, W0, H0)
        self.k = 0

    def step(self) -> None:
        weights = (self.A_H[self.k], self.A_W[self.k]) if self.k < len(self.A_H) else (None, None)
        self.k += 1
        self.weighted_step(*weights)

    def loss(self) -> float:
        """The loss at :meth:`factors` on the problem's ``Y`` from the products of the last step
        (see the module doc)."""
        if self.scaling is None:
            return super().loss()
        W, H = self.factors()
        if self.fixed_W:
            return self.problem.loss_from_products(self.scaling.restore_H(self.WtY), H, self.WtW, H @ H.mT)
        # the step holds Y_n H_n^T but the loss of factors() on Y needs Y H^T = Y_n D^2 H_n^T,
        # another m x n x r product
        return self.problem.loss(W, H)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scaling is None:
            return self.W, self.H
        return self.W, self.scaling.restore_H(self.H)


@hookimpl
def proxmf_register_solvers(register):
    register(
        SolverSpec(
            name="nalmu",
            factory=NALMUSolver,
            params=PARAMS,
            summary="NALMU: unrolled MU with trained elementwise weights for K layers, then plain MU",
            resolve_params=resolve_params,
            examples=({"layers": "3"}, {"layers": "3", "normalize": "true"}),
        )
    )
