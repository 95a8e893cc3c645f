r"""Ground-truth metrics, computed at record points outside the timed region.

NMF recovers factors only up to a permutation and a positive scaling of each component.
Components are matched to the ground truth with the Hungarian algorithm on the matrix of
spectral angles between the columns of ``W`` and of ``W_true``; after matching, each row of
``H`` is rescaled by the norm of its column of ``W`` over the norm of the matched true column
(``W h = (W D^{-1}) (D h)``), which leaves ``W H`` unchanged and puts ``H`` on the scale of
``H_true`` before the RMSE is taken.

- ``sad_deg``: mean spectral angle distance in degrees, :math:`\arccos\frac{w^\top w^*}{\|w\|\|w^*\|}`.
- ``sad_deg_<k>``: the angle of true component ``k``.
- ``rmse_H``: :math:`\sqrt{\operatorname{mean}((D H_\pi - H^*)^2)}` after matching and scaling.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from proxmf_bench.problem import Problem


def spectral_angles(W: torch.Tensor, W_true: torch.Tensor) -> np.ndarray:
    """Matrix of angles in degrees between the columns of ``W`` (rows) and ``W_true`` (cols)."""
    A = W.double().cpu()
    B = W_true.double().cpu()
    An = A / A.norm(dim=0, keepdim=True).clamp_min(1e-300)
    Bn = B / B.norm(dim=0, keepdim=True).clamp_min(1e-300)
    cos = (An.T @ Bn).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos)).numpy()


def match_components(W: torch.Tensor, W_true: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``perm`` such that ``W[:, perm[k]]`` matches ``W_true[:, k]``, and the matched angles."""
    angles = spectral_angles(W, W_true)
    rows, cols = linear_sum_assignment(angles)
    perm = np.empty(W_true.shape[1], dtype=np.int64)
    perm[cols] = rows
    return perm, angles[perm, np.arange(W_true.shape[1])]


def ground_truth_metrics(problem: Problem, W: torch.Tensor, H: torch.Tensor) -> dict[str, float]:
    """Metrics against ``problem.W_true``/``H_true``; empty when there is no ground truth."""
    if not problem.has_ground_truth:
        return {}
    if not (bool(torch.isfinite(W).all()) and bool(torch.isfinite(H).all())):
        return {"sad_deg": math.nan, "rmse_H": math.nan}
    perm, angles = match_components(W, problem.W_true)
    out = {"sad_deg": float(np.mean(angles))}
    out.update({f"sad_deg_{k}": float(a) for k, a in enumerate(angles)})
    Wp = W.double()[:, perm]
    Hp = H.double()[perm, :]
    Wt = problem.W_true.double()
    scale = Wp.norm(dim=0) / Wt.norm(dim=0).clamp_min(1e-300)
    Hs = Hp * scale[:, None]
    out["rmse_H"] = float(torch.sqrt(torch.mean((Hs - problem.H_true.double()) ** 2)))
    return out
