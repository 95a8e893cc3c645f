"""A nonnegative elastic-net prox operator as a plugin file: the "compare a new prox" use case.

``g(x) = lam1 * sum(x) + lam2 / 2 * ||x||^2`` on ``x >= 0``; its prox is
``max(x - step * lam1, 0) / (1 + step * lam2)``. The comparison of the README (penalised and
plain ``pgm`` and ``fista``, Samson and synthetic, 3 seeds)::

    E="prox_H=enet_nonneg,lam1_H=0.01,lam2_H=0.01"
    proxmf-bench run --plugin benchmarks/elastic_net_prox.py --datasets samson,synthetic --seeds 3 \\
        --solvers "pgm,fista[restart=function],pgm[$E],fista[restart=function,$E]" \\
        --max-iter 2000 --reference --report

A penalty on ``H`` alone, with ``W`` free, is scale-degenerate (``(c W, H / c)`` fits as well
with a smaller penalty): add ``prox_W=box`` to every solver for a problem with a minimiser.
"""

from proxmf_bench import Param, ProxSpec, hookimpl


def prox_enet_nonneg(X, step, lam1=0.1, lam2=0.1):
    """argmin_Z 1/2 ||Z - X||^2 + step * (lam1 sum Z + lam2/2 ||Z||^2) subject to Z >= 0."""
    return (X - step * lam1).clamp_min(0) / (1 + step * lam2)


def penalty_enet_nonneg(X, lam1=0.1, lam2=0.1):
    X = X.double()
    return lam1 * X.sum() + 0.5 * lam2 * X.pow(2).sum()


@hookimpl
def proxmf_register_prox(register):
    register(ProxSpec("enet_nonneg", prox_enet_nonneg,
                      params=(Param("lam1", 0.1, float, "weight of lam1 * sum x", low=0),
                              Param("lam2", 0.1, float, "weight of lam2/2 ||x||^2", low=0)),
                      penalty=penalty_enet_nonneg, convex=True,
                      summary="nonnegative elastic net: max(x - step lam1, 0) / (1 + step lam2)"))
