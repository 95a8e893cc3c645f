r"""Metrics recorded at record points, outside the timed region.

For every problem:

- ``rel_error``: relative reconstruction error :math:`\|Y - W H\|_F / \|Y\|_F`, taken from
  the loss the harness has already computed (:math:`\sqrt{2 f / \|Y\|_F^2}`).

Where the dataset has ground truth :math:`(W^*, H^*)`:

**Matching.** NMF recovers components only up to a permutation and a positive scale of each:
:math:`(W D^{-1} P^\top, P D H)` fits as well as :math:`(W, H)`. Estimated components are
matched to true ones with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on the matrix of spectral angles between the
columns of :math:`W` and of :math:`W^*`, which minimises the total angle. Every metric below
uses this one matching; :math:`w_k, h_k` denote the estimated column and row matched to true
component :math:`k`.

**Scale.** No metric depends on the scale of a component, of the estimate or of the ground
truth. That is deliberate: the scale is not identifiable, and real scenes fix the scale of
their ground truth by a convention (Samson's endmembers are each max-normalised, so
:math:`W^* H^*` is not on the scale of :math:`Y`).

- ``sad_deg_<k>``: spectral angle distance of true component ``k`` in degrees,
  :math:`\arccos \frac{\langle w_k, w_k^*\rangle}{\|w_k\| \|w_k^*\|}`; ``sad_deg`` is their mean.
- ``rmse_H``: abundance RMSE of the best rescaled estimate,
  :math:`\sqrt{\frac{1}{rn}\sum_{k,j} (d_k h_{kj} - h^*_{kj})^2}` with the least-squares scale
  :math:`d_k = \langle h_k, h_k^*\rangle / \|h_k\|^2` of each matched row.
- ``fms``: factor match score, :math:`\frac1r \sum_k \cos(w_k, w_k^*) \cos(h_k, h_k^*)`, in
  [0, 1] for nonnegative factors, 1 for a perfect recovery. It is the score of Acar et al.
  (2011) for two factors without its weight term, which would compare component scales.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from proxmf_bench.problem import Problem


# angles within this many degrees of 0 or 180 are recomputed from differences of unit vectors
_REFINE_DEG = 10.0


def spectral_angles(W: torch.Tensor, W_true: torch.Tensor) -> np.ndarray:
    r"""Matrix of angles in degrees between the columns of ``W`` (rows) and ``W_true`` (cols).

    Angles are :math:`2\operatorname{atan2}(\|a - b\|, \|a + b\|)` on unit vectors, which
    stays accurate near 0 where ``arccos`` of the cosine loses half the digits. The norms come
    from the cosines (one ``r x r`` product), except within 10 degrees of 0 or 180, where
    they lose digits and are computed from the differences themselves.
    """
    W = W.double()
    return _angle_matrix(_unit_columns(W), _unit_columns(W_true.to(W.device, torch.float64)))[0]


def _angle_matrix(A: torch.Tensor, B: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Angles in degrees and cosines between the unit columns of ``A`` and of ``B``.

    The ``r x r`` arithmetic is done in NumPy on the CPU: a few microseconds per operation
    where a torch operation costs several times that in dispatch.
    """
    cos = (A.T @ B).cpu().numpy()
    diff, total = np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0)), np.sqrt(np.maximum(2.0 + 2.0 * cos, 0.0))
    i, j = np.nonzero(np.abs(cos) > math.cos(math.radians(_REFINE_DEG)))
    if len(i):
        a, b = A[:, torch.as_tensor(i, device=A.device)], B[:, torch.as_tensor(j, device=B.device)]
        diff[i, j] = torch.linalg.vector_norm(a - b, dim=0).cpu().numpy()
        total[i, j] = torch.linalg.vector_norm(a + b, dim=0).cpu().numpy()
    return np.rad2deg(2.0 * np.arctan2(diff, total)), cos


def _unit_columns(X: torch.Tensor) -> torch.Tensor:
    return X / X.norm(dim=0, keepdim=True).clamp_min(1e-300)


def match_components(W: torch.Tensor, W_true: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``perm`` such that ``W[:, perm[k]]`` matches ``W_true[:, k]``, and the matched angles."""
    return _match(spectral_angles(W, W_true))


def _match(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = linear_sum_assignment(angles)
    perm = np.empty(angles.shape[1], dtype=np.int64)
    perm[cols] = rows
    return perm, angles[perm, np.arange(angles.shape[1])]


def abundance_rmse(H: torch.Tensor, H_true: torch.Tensor) -> float:
    """RMSE of ``D H`` against ``H_true`` with the least-squares diagonal scale ``D`` (rows matched)."""
    H = H.double()
    H_true = H_true.to(device=H.device, dtype=torch.float64)
    return _abundance_rmse(H, H_true, (H * H_true).sum(dim=1), (H * H).sum(dim=1))


def _abundance_rmse(H: torch.Tensor, H_true: torch.Tensor, cross: torch.Tensor, norm2: torch.Tensor) -> float:
    """:func:`abundance_rmse` from the row inner products ``<h_k, h*_k>`` and ``||h_k||^2``."""
    residual = H * (cross / norm2.clamp_min(1e-300))[:, None]
    residual = residual.sub_(H_true).view(-1)
    return math.sqrt(float(torch.dot(residual, residual)) / residual.numel())


def factor_match_score(
    W: torch.Tensor, H: torch.Tensor, W_true: torch.Tensor, H_true: torch.Tensor
) -> float:
    """Mean over components of ``cos(w_k, w*_k) * cos(h_k, h*_k)`` (components already matched)."""
    cos_W = (_unit_columns(W.double()) * _unit_columns(W_true.to(W.device, torch.float64))).sum(dim=0)
    cos_H = (_unit_columns(H.double().T) * _unit_columns(H_true.to(H.device, torch.float64).T)).sum(dim=0)
    return float(torch.mean(cos_W * cos_H))


@dataclass(frozen=True)
class _Truth:
    """Per-problem constants of the ground truth, in float64 on the problem's device."""

    W_unit: torch.Tensor  # unit columns of W_true
    H: torch.Tensor
    H_norm: torch.Tensor  # row norms of H_true, floored like _unit_columns


_TRUTHS: weakref.WeakKeyDictionary[Problem, _Truth] = weakref.WeakKeyDictionary()


def _truth(problem: Problem) -> _Truth:
    truth = _TRUTHS.get(problem)
    if truth is None:
        H = problem.H_true.to(torch.float64)
        W_unit = _unit_columns(problem.W_true.to(torch.float64))
        truth = _TRUTHS[problem] = _Truth(W_unit, H, H.norm(dim=1).clamp_min(1e-300))
    return truth


def relative_error(problem: Problem, loss: float) -> float:
    """``||Y - W H||_F / ||Y||_F`` from the loss ``1/2 ||Y - W H||_F^2``."""
    if problem.Y_norm2 == 0.0 or not math.isfinite(loss):
        return math.nan
    return math.sqrt(2.0 * max(loss, 0.0) / problem.Y_norm2)


def ground_truth_metrics(problem: Problem, W: torch.Tensor, H: torch.Tensor) -> dict[str, float]:
    """``sad_deg``, ``sad_deg_<k>``, ``rmse_H`` and ``fms``; empty without ground truth."""
    if not problem.has_ground_truth:
        return {}
    r = problem.rank
    # a sum is NaN or infinite iff an entry is (or the entries are beyond ~1e300), in one
    # pass without the boolean copy of isfinite
    if not (math.isfinite(float(W.sum())) and math.isfinite(float(H.sum()))):
        nan = {"sad_deg": math.nan, "rmse_H": math.nan, "fms": math.nan}
        return {**nan, **{f"sad_deg_{k}": math.nan for k in range(r)}}
    truth = _truth(problem)
    W = W.double()
    angles, cos = _angle_matrix(_unit_columns(W), truth.W_unit)
    perm, matched = _match(angles)
    index = torch.as_tensor(perm, device=W.device)
    Hp = H[index, :].double()
    cross, norm2 = (Hp * truth.H).sum(dim=1), (Hp * Hp).sum(dim=1)
    out = {"sad_deg": float(np.mean(matched))}
    out.update({f"sad_deg_{k}": float(a) for k, a in enumerate(matched)})
    out["rmse_H"] = _abundance_rmse(Hp, truth.H, cross, norm2)
    # cos(h_k, h*_k) from the same inner products; cos(w_k, w*_k) is the matched cosine
    cos_H = (cross / (norm2.sqrt().clamp_min_(1e-300) * truth.H_norm)).cpu().numpy()
    out["fms"] = float(np.mean(cos[perm, np.arange(r)] * cos_H))
    return out


def record_metrics(problem: Problem, W: torch.Tensor, H: torch.Tensor, loss: float) -> dict[str, float]:
    """Everything recorded beside the loss at one record point."""
    return {"rel_error": relative_error(problem, loss), **ground_truth_metrics(problem, W, H)}
