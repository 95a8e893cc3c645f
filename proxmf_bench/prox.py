"""Proximal operators registered through ``proxmf_register_prox``.

Each returns ``argmin_Z 1/2 ||Z - X||_F^2 + step * g(Z)`` for its penalty or indicator ``g``.
"""

from __future__ import annotations

import torch

from proxmf_bench.hookspecs import hookimpl
from proxmf_bench.specs import ProxSpec


def prox_nonneg(X: torch.Tensor, step: float) -> torch.Tensor:
    """Projection onto the nonnegative orthant."""
    return X.clamp_min(0)


@hookimpl
def proxmf_register_prox(register):
    register(ProxSpec("nonneg", prox_nonneg, summary="projection onto X >= 0"))
