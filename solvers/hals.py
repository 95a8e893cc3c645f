r"""``hals``: accelerated hierarchical ALS (Gillis & Glineur 2012), the strongest NMF baseline.

One iteration updates :math:`W` and then :math:`H` (``first=H``: the other way round) by exact coordinate minimisation over the
rows of :math:`H` and the columns of :math:`W`, several sweeps per block while they pay (the
products with ``Y`` are computed once per block); the update, the sweep rule and the loss from
held products are in :mod:`proxmf_bench.solve.hals`. ``alpha=0`` gives plain HALS.

Penalties are taken as prox operators, like the PGM family, so that
``hals[prox_H=l1_nonneg,lam_H=0.1]`` solves the same problem as
``pgm[prox_H=l1_nonneg,lam_H=0.1]``; HALS honours the ones it solves in closed form per
coordinate: ``nonneg`` (the default), ``l1_nonneg`` (:math:`\lambda \sum x`) and
``elastic_nonneg`` (:math:`\lambda \sum x + \tfrac{\rho}{2}\|x\|^2`), on ``W`` and/or ``H``.
Any other operator is refused before the run with a one-line error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param
from proxmf_bench.solve.hals import FLOOR, HALS
from proxmf_bench.solve.proxgrad import BLOCKS, BoundProx, prox_solver_spec

# prox operator -> its (l1, l2) weights, from the operator's parameters
PENALTIES = {
    "nonneg": lambda params: (0.0, 0.0),
    "l1_nonneg": lambda params: (params["lam"], 0.0),
    "elastic_nonneg": lambda params: (params["lam"], params["ridge"]),
}


def penalty_weights(prox: BoundProx) -> tuple[float, float]:
    """``(l1, l2)`` of an operator HALS honours."""
    return PENALTIES[prox.name](prox.params)


class HALSSolver(HALS):
    """:class:`~proxmf_bench.solve.hals.HALS` with its penalties given as prox operators."""

    def __init__(self, prox_W: BoundProx, prox_H: BoundProx, alpha: float = 0.1, delta: float = 0.1,
                 eps: float = FLOOR, first: str = "W") -> None:
        (l1_W, l2_W), (l1_H, l2_H) = penalty_weights(prox_W), penalty_weights(prox_H)
        super().__init__(alpha=alpha, delta=delta, eps=eps, first=first, l1=(l1_W, l1_H), l2=(l2_W, l2_H))


def check_prox(resolved: Mapping[str, Any]) -> str | None:
    for block in BLOCKS:
        name = resolved[f"prox_{block}"].name
        if name not in PENALTIES:
            return (f"prox_{block}={name} has no closed-form coordinate update; HALS handles "
                    f"{', '.join(PENALTIES)} (use pgm, fista or adaprox for {name})")
    return None


@hookimpl
def proxmf_register_solvers(register):
    register(
        prox_solver_spec(
            "hals", HALSSolver,
            params=(
                Param("alpha", 0.1, float, "inner sweeps per block: at most 1 + alpha * rho (0: plain HALS)",
                      low=0.0, high=100.0),
                Param("delta", 0.1, float, "stop a block's sweeps when one changes it by <= delta x the first's",
                      low=0.0, high=1.0),
                Param("eps", FLOOR, float, "floor on the entries", low=0.0),
                Param("first", "W", str, "block updated first in each iteration", choices=("W", "H")),
            ),
            summary="accelerated HALS (Gillis & Glineur 2012): exact coordinate sweeps, l1/l2 penalties",
            check=check_prox,
        )
    )
