r"""Multiplicative-update kernels (Lee & Seung 2001, Frobenius loss): the one place where MU's
arithmetic is written, called by the ``mu`` and ``nalmu`` solvers and by the NALMU model.

.. math::
    H \leftarrow \max\!\Big(H \odot A_H \odot \frac{W^\top Y}{\max(W^\top W H,\ \epsilon)},\ \epsilon\Big),
    \qquad
    W \leftarrow \max\!\Big(W \odot A_W \odot \frac{Y H^\top}{\max(W H H^\top,\ \epsilon)},\ \epsilon\Big),

with weights :math:`A = 1` (``weights=None``) for plain MU and NALMU's trained weights
otherwise. The floor ``epsilon`` keeps entries from reaching exactly zero, where a
multiplicative update could never move them again.

The kernels take the products (``cross`` :math:`= W^\top Y` or :math:`Y H^\top`, ``gram``
:math:`= W^\top W` or :math:`H H^\top`) rather than ``Y`` and the other factor, so that a
caller that holds them already (the ``mu`` solver keeps :math:`W^\top W` between steps and
:math:`Y H^\top`, :math:`H H^\top` for its loss) does not compute them twice. ``cross`` and
``gram`` are never modified. ``inplace=True`` overwrites the factor and allocates one
temporary of its size (solvers); ``inplace=False`` returns a new tensor and is
differentiable in every argument (NALMU training). Both work on batches (leading dimensions)
and compute the same values, operation for operation.
"""

from __future__ import annotations

import torch


def mu_update_H(
    H: torch.Tensor, WtY: torch.Tensor, WtW: torch.Tensor, eps: float,
    weights: torch.Tensor | None = None, *, inplace: bool = False,
) -> torch.Tensor:
    """One (weighted) MU step on ``H`` from ``W^T Y`` and ``W^T W``; returns the new ``H``."""
    return _update(H, WtY, (WtW @ H).clamp_min_(eps), eps, weights, inplace)


def mu_update_W(
    W: torch.Tensor, YHt: torch.Tensor, HHt: torch.Tensor, eps: float,
    weights: torch.Tensor | None = None, *, inplace: bool = False,
) -> torch.Tensor:
    """One (weighted) MU step on ``W`` from ``Y H^T`` and ``H H^T``; returns the new ``W``."""
    return _update(W, YHt, (W @ HHt).clamp_min_(eps), eps, weights, inplace)


def _update(
    X: torch.Tensor, cross: torch.Tensor, denominator: torch.Tensor, eps: float,
    weights: torch.Tensor | None, inplace: bool,
) -> torch.Tensor:
    """``max(X * weights * cross / denominator, eps)``; ``denominator`` is a fresh tensor
    that the in-place path reuses for the ratio."""
    if inplace:
        ratio = torch.div(cross, denominator, out=denominator)
        if weights is not None:
            X.mul_(weights)
        return X.mul_(ratio).clamp_min_(eps)
    ratio = cross / denominator
    if weights is not None:
        X = X * weights
    return (X * ratio).clamp_min(eps)
