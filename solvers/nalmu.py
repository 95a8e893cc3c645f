r"""NALMU as a benchmark solver: K unrolled, weighted MU layers, then plain MU.

``nalmu`` (``weights=ones``) runs ``layers`` all-ones layers, which is exactly the ``mu``
solver. ``nalmu[weights=PATH]`` runs the trained layers stored in ``PATH`` (written by
``proxmf-bench train nalmu``); its ``layers``, ``normalize`` and ``eps`` come from the file and
the file's sha256 is recorded. Iteration ``k > K`` is a plain MU step (on the normalised data
when the model normalises), so long runs stay comparable with ``mu``. Where the unrolled part
ends is in the results: ``layers`` in the ``solver_params`` column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from proxmf_bench.errors import UserError
from proxmf_bench.hookspecs import hookimpl
from proxmf_bench.nalmu import (
    NALMU,
    ColumnScaling,
    file_sha256,
    load_weights,
    nalmu_update_H,
    nalmu_update_W,
    normalize_columns,
)
from proxmf_bench.problem import Problem
from proxmf_bench.solvers.mu import mu_update_H, mu_update_W
from proxmf_bench.specs import Param, SolverSpec, coerce_params

ONES = "ones"
PARAMS = (
    Param("weights", ONES, str, "'ones' (untrained: exactly MU) or the path of a trained weights file"),
    Param("layers", 25, int, "unrolled layers K (from the file when weights is a path)", low=0),
    Param("normalize", False, bool, "column normalisation of Y and of the initial factors "
                                    "(from the file when weights is a path)"),
    Param("eps", 1e-12, float, "floor on entries and denominators (from the file when weights is a path)", low=0.0),
)
FROM_FILE = ("layers", "normalize", "eps")


def resolve_params(given: Mapping[str, Any], registry: Any = None) -> dict[str, Any]:
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


class NALMUSolver:
    """Unrolled weighted MU for ``layers`` iterations, plain MU afterwards."""

    def __init__(self, weights: str = ONES, layers: int = 25, normalize: bool = False, eps: float = 1e-12,
                 sha256: str | None = None) -> None:
        self.weights = weights
        self.layers = layers
        self.normalize = normalize
        self.eps = eps
        self.model: NALMU | None = None if weights == ONES else load_weights(weights)[0]

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        self.fixed_W = problem.fixed_W
        m, _ = problem.shape
        like = {"device": problem.device, "dtype": problem.dtype}
        if self.model is None:
            ones = torch.ones(1, 1, **like)
            self.A_W = [ones] * self.layers
            self.A_H = [ones] * self.layers
        else:
            self.model.check_compatible(m, problem.rank, problem.fixed_W, where=f"weights {self.weights}")
            pairs = [self.model.layer_weights(k) for k in range(self.layers)]
            self.A_W = [None if a is None else a.detach().to(**like) for a, _ in pairs]
            self.A_H = [a.detach().to(**like) for _, a in pairs]
        Y = problem.Y
        self.scaling: ColumnScaling | None = None
        if self.normalize:
            Y, W0, H0, self.scaling = normalize_columns(Y, W0, H0, problem.fixed_W)
        self.Y = Y
        self.W = W0.clamp_min(self.eps)
        self.H = H0.clamp_min(self.eps)
        self.k = 0

    def step(self) -> None:
        Y, eps = self.Y, self.eps
        if self.k < self.layers:
            self.H = nalmu_update_H(Y, self.W, self.H, self.A_H[self.k], eps)
            if not self.fixed_W:
                self.W = nalmu_update_W(Y, self.W, self.H, self.A_W[self.k], eps)
        else:
            mu_update_H(Y, self.W, self.H, eps)
            if not self.fixed_W:
                mu_update_W(Y, self.W, self.H, eps)
        self.k += 1

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
        )
    )
