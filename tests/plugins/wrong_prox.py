"""Test plugin: prox operators that each break one property of the contract on purpose.

``soft2`` is the soft threshold at ``2 * step * lam`` while declaring the penalty
``lam * ||x||_1`` (a factor 2 wrong); ``overwrites`` is a correct soft threshold that writes
its result into its input; ``to_float32`` returns float32 whatever it is given; ``shrink``
declares itself the projection onto ``x >= 0`` but returns ``0.9 max(x, 0)``; ``normalise``
declares the normalisation ``max(x, 0) / sum max(x, 0)`` a convex projection;
``column_norm`` scales each column to norm at most 1 but does not declare
``acts_on="vectors"``; ``no_zero_lam`` declares ``lam >= 0`` but refuses ``lam = 0``.
"""

import torch

from proxmf_bench import Param, ProxSpec, hookimpl


def soft2(X, step, lam=0.1):
    tau = 2 * step * lam
    return X - X.clamp(-tau, tau)


def overwrites(X, step, lam=0.1):
    tau = step * lam
    return X.sub_(X.clamp(-tau, tau))


def to_float32(X, step):
    return X.clamp_min(0).float()


def shrink(X, step):
    return 0.9 * X.clamp_min(0)


def normalise(X, step):
    P = X.clamp_min(0)
    return P / P.sum(0, keepdim=True).clamp_min(1e-30)


def column_norm(X, step):
    return X / torch.linalg.vector_norm(X, dim=0, keepdim=True).clamp_min(1.0)


def no_zero_lam(X, step, lam=0.1):
    if lam == 0:
        raise ValueError("lam must be positive")
    return X - X.clamp(-step * lam, step * lam)


def l1(X, lam=0.1):
    return lam * X.abs().sum(dtype=torch.float64)


LAM = Param("lam", 0.1, float, "weight", low=0.0)


@hookimpl
def proxmf_register_prox(register):
    register(ProxSpec("soft2", soft2, params=(LAM,), penalty=l1, convex=True))
    register(ProxSpec("overwrites", overwrites, params=(LAM,), penalty=l1, convex=True))
    register(ProxSpec("to_float32", to_float32, projection=True, convex=True))
    register(ProxSpec("shrink", shrink, projection=True, convex=True))
    register(ProxSpec("normalise", normalise, projection=True, convex=True, acts_on="vectors"))
    register(ProxSpec("column_norm", column_norm, projection=True, convex=True))
    register(ProxSpec("no_zero_lam", no_zero_lam, params=(LAM,), penalty=l1, convex=True))
