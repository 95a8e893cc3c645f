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
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from proxmf_bench.problem.problem import Problem

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
    return np.rad2deg(_angle_matrix(_unit_columns(W), _unit_columns(W_true.to(W.device, torch.float64))))


def _angle_matrix(A: torch.Tensor, B: torch.Tensor) -> np.ndarray:
    """Angles in radians between the unit columns of ``A`` and of ``B`` (:func:`spectral_angles`)."""
    cos = (A.T @ B).cpu().numpy()
    diff, total = _half_chords(cos)
    i, j = np.nonzero(np.abs(cos) > math.cos(math.radians(_REFINE_DEG)))
    if len(i):
        a, b = A[:, torch.as_tensor(i, device=A.device)], B[:, torch.as_tensor(j, device=B.device)]
        diff[i, j] = torch.linalg.vector_norm(a - b, dim=0).cpu().numpy()
        total[i, j] = torch.linalg.vector_norm(a + b, dim=0).cpu().numpy()
    return 2.0 * np.arctan2(diff, total)


def _half_chords(cos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``||a - b||`` and ``||a + b||`` of unit vectors from their cosine (the ``r x r``
    arithmetic in NumPy: microseconds, where each torch operation costs several in dispatch)."""
    return np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0)), np.sqrt(np.maximum(2.0 + 2.0 * cos, 0.0))


def _chord_angles(cos: np.ndarray) -> np.ndarray:
    """Angles (radians) from cosines, accurate above a few degrees (:func:`spectral_angles`)."""
    return 2.0 * np.arctan2(*_half_chords(cos))


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
    scale = (H * H_true).sum(dim=1) / (H * H).sum(dim=1).clamp_min(1e-300)
    residual = (H * scale[:, None]).sub_(H_true).view(-1)
    return math.sqrt(float(torch.dot(residual, residual)) / residual.numel())


def factor_match_score(
    W: torch.Tensor, H: torch.Tensor, W_true: torch.Tensor, H_true: torch.Tensor
) -> float:
    """Mean over components of ``cos(w_k, w*_k) * cos(h_k, h*_k)`` (components already matched)."""
    cos_W = (_unit_columns(W.double()) * _unit_columns(W_true.to(W.device, torch.float64))).sum(dim=0)
    cos_H = (_unit_columns(H.double().T) * _unit_columns(H_true.to(H.device, torch.float64).T)).sum(dim=0)
    return float(torch.mean(cos_W * cos_H))


class _Truth:
    """Per-problem constants of the ground truth (shared by every run on the problem: they
    do not depend on what ran before, so neither do the metrics)."""

    def __init__(self, problem: Problem) -> None:
        W_true = problem.W_true.to(torch.float64)
        H_true = problem.H_true.to(torch.float64)
        self.n = H_true.shape[1]
        self.H_norm2 = (H_true * H_true).sum(dim=1).cpu().numpy()
        self._units = {torch.float64: (_unit_columns(W_true), _unit_columns(H_true.T).T)}
        # angles between true components; infinite on the diagonal (see still_optimal)
        self.pair_angles = _angle_matrix(self._units[torch.float64][0], self._units[torch.float64][0])
        np.fill_diagonal(self.pair_angles, np.inf)
        self._reordered: dict[tuple[torch.dtype, int], tuple[np.ndarray, torch.Tensor]] = {}

    def units(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The unit true components in ``dtype``: the columns of ``W*`` (``m x r``) and the
        rows of ``H*`` (``r x n``)."""
        if dtype not in self._units:
            self._units[dtype] = tuple(X.to(dtype) for X in self._units[torch.float64])
        return self._units[dtype]

    def reordered(self, dtype: torch.dtype, factor: int, perms: np.ndarray) -> torch.Tensor:
        """Minus the unit true components of ``W*`` (``factor`` 0: ``m x r``) or ``H*`` (1:
        ``r x n``) in ``dtype``, with true component ``k`` moved to estimate ``perms[..., k]``;
        ``K x m x r`` or ``K x r x n`` for ``K`` matchings. The last single one is kept."""
        kept = self._reordered.get((dtype, factor))
        if perms.ndim == 1 and kept is not None and np.array_equal(kept[0], perms):
            return kept[1]
        unit = self.units(dtype)[factor]
        # estimate i is paired with the true component k whose perm[k] is i
        inverse = torch.as_tensor(np.argsort(perms, axis=-1), device=unit.device)
        if factor == 1:
            moved = unit[inverse].neg()
        else:  # columns: m x r, or m x K x r with the matchings first
            moved = unit[:, inverse].neg()
            moved = moved.movedim(1, 0) if perms.ndim == 2 else moved
        if perms.ndim == 1:
            self._reordered[(dtype, factor)] = (perms, moved)
        return moved

    def still_optimal(self, theta: np.ndarray) -> np.ndarray:
        """Whether matchings with angles ``theta`` (``K x r``, true order) are provably optimal.

        One is when :math:`\\theta_j + \\theta_k < \\angle(b_j, b_k)` for every two true
        components: another matching pairs some :math:`b_k` with the estimate matched to a
        :math:`b_j`, at least :math:`\\angle(b_j, b_k) - \\theta_j > \\theta_k` away from
        :math:`b_k` (triangle inequality on the sphere), so it costs more term by term.
        """
        return np.all(theta[:, :, None] + theta[:, None, :] < self.pair_angles, axis=(1, 2))


class _LastMatching:
    """The matching of a run's latest record point, tried first at its next ones when it was
    provably optimal. One per run (:class:`DeferredMetrics`), never shared between runs: how
    an angle is computed depends on whether the matching was carried over, so a matching
    left by another run would make the last digits depend on the order runs ran in."""

    def __init__(self) -> None:
        self.perm: np.ndarray | None = None
        self.certified = False  # whether perm was provably optimal where it was found


_TRUTHS: weakref.WeakKeyDictionary[Problem, _Truth] = weakref.WeakKeyDictionary()


def _truth(problem: Problem) -> _Truth:
    truth = _TRUTHS.get(problem)
    if truth is None:
        truth = _TRUTHS[problem] = _Truth(problem)
    return truth


def relative_error(problem: Problem, loss: float) -> float:
    """``||Y - W H||_F / ||Y||_F`` from the loss ``1/2 ||Y - W H||_F^2``."""
    if problem.Y_norm2 == 0.0 or not math.isfinite(loss):
        return math.nan
    return math.sqrt(2.0 * max(loss, 0.0) / problem.Y_norm2)


def ground_truth_metrics(problem: Problem, W: torch.Tensor, H: torch.Tensor) -> dict[str, float]:
    """``sad_deg``, ``sad_deg_<k>``, ``rmse_H`` and ``fms``; empty without ground truth.

    See :func:`_batch_metrics`, which does the work (for many pairs at once).
    """
    if not problem.has_ground_truth:
        return {}
    return _batch_metrics(_truth(problem), _LastMatching(), W[None], H[None])[0]


_BATCH_BYTES = 4 * 2**20


def _batch_size(W: torch.Tensor, H: torch.Tensor) -> int:
    """Pairs per batch: about ``_BATCH_BYTES`` of factors ``(W, H)`` of one pair each, so
    that the intermediates stay in the CPU's cache."""
    return max(1, _BATCH_BYTES // ((W.numel() + H.numel()) * H.element_size()))


def _batch_metrics(truth: _Truth, last: _LastMatching, W: torch.Tensor, H: torch.Tensor) -> list[dict[str, float]]:
    """:func:`ground_truth_metrics` of ``K`` factor pairs of one problem (record points of
    one run, whose latest matching is ``last``), stacked as ``K x m x r`` and ``K x r x n``.

    Computed in a few batched passes over the factors, in their dtype: their norms, the
    distances between matched unit vectors, and the ``r x r`` cosines of ``W`` with the
    truth and the Hungarian matching only where the last matching is not provably still
    optimal (:meth:`_Truth.still_optimal`). The angles are those of :func:`spectral_angles`
    and ``rmse_H`` follows from the abundance angles: with the least-squares scale,
    :math:`\\|d_k h_k - h^*_k\\|^2 = \\|h^*_k\\|^2 \\sin^2\\theta_k`.
    """
    r, K = len(truth.H_norm2), len(H)
    # sums of squares rather than vector_norm: it is slow along the strided dimension of W
    norms = np.sqrt(torch.cat(((W * W).sum(dim=1), (H * H).sum(dim=2)), dim=1).cpu().numpy().astype(np.float64))
    nan = {"sad_deg": math.nan, **{f"sad_deg_{k}": math.nan for k in range(r)}, "rmse_H": math.nan, "fms": math.nan}
    out = [dict(nan) for _ in range(K)]
    keep = np.flatnonzero(np.isfinite(norms).all(axis=1))
    if not len(keep):
        return out
    if len(keep) < K:
        index = torch.as_tensor(keep, device=H.device)
        W, H = W[index], H[index]
    theta_W, theta_H = _Batch(W, H, norms[keep]).match(truth, last)
    sad = np.rad2deg(theta_W)
    rmse = np.sqrt((truth.H_norm2 * np.sin(theta_H) ** 2).sum(axis=1) / (r * truth.n))
    fms = (np.cos(theta_W) * np.cos(theta_H)).mean(axis=1)
    for j, i in enumerate(keep):
        row = out[i]
        row["sad_deg"] = float(sad[j].mean())
        row.update({f"sad_deg_{k}": float(a) for k, a in enumerate(sad[j])})
        row["rmse_H"], row["fms"] = float(rmse[j]), float(fms[j])
    return out


class _Batch:
    """Finite factor pairs stacked as ``K x m x r`` and ``K x r x n``, with the inverses of
    their component norms (those of the columns of ``W`` and of the rows of ``H``)."""

    def __init__(self, W: torch.Tensor, H: torch.Tensor, norms: np.ndarray) -> None:
        self.W, self.H = W, H
        self.r = H.shape[1]
        self.nonzero = norms > 0
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=self.nonzero)
        inv = torch.from_numpy(inv).to(device=H.device, dtype=H.dtype)
        self.w_inv, self.h_inv = inv[:, None, : self.r], inv[:, self.r :, None]

    def match(self, truth: _Truth, kept: _LastMatching) -> tuple[np.ndarray, np.ndarray]:
        """Angles (radians, ``K x r``, true order) of the optimal matchings, for the columns
        of ``W`` and the rows of ``H``; remembers the last matching in ``kept``.

        Pairs the last matching provably still fits are done in one pass of distances. The
        others get the cosines of ``W`` with the truth and the Hungarian matching; their
        angles in ``W`` come from the cosines above 10 degrees (an error ``e`` in a cosine
        moves its angle by ``e / sin(angle)``, at most ``6 e`` there), from distances below.
        The angles in ``H`` all come from distances.
        """
        K, r = len(self.H), self.r
        # the last matching is tried first only if it was provably optimal: early in a run,
        # when it is not, it seldom becomes so before the next record point
        last = kept.perm if kept.certified else None
        perms = np.empty((K, r), dtype=np.int64)
        if last is None:
            theta_W, todo = np.empty((K, r)), np.arange(K)
        else:
            perms[:] = last
            theta_W = self.angles(truth, 0, perms)
            todo = np.flatnonzero(~truth.still_optimal(theta_W))
        if len(todo):
            index = slice(None) if len(todo) == K else torch.as_tensor(todo, device=self.H.device)
            W_unit, _ = truth.units(self.W.dtype)
            cos = (self.W[index].mT @ W_unit).mul_(self.w_inv[index].mT).cpu().numpy().astype(np.float64)
            for j, i in enumerate(todo):
                perms[i] = _match(_chord_angles(cos[j]))[0]
            moved = np.ones(len(todo), dtype=bool) if last is None else np.any(perms[todo] != last, axis=1)
            changed = todo[moved]
            if len(changed):
                # the cosine of estimate perm[k] with true component k, for each k
                matched = np.take_along_axis(cos[moved], perms[changed][:, None, :], axis=1)[:, 0]
                theta_W[changed] = _chord_angles(matched)
                small = changed[(theta_W[changed] < math.radians(_REFINE_DEG)).any(axis=1)]
                if len(small):
                    theta_W[small] = self.angles(truth, 0, perms[small], small)
        kept.perm = perms[-1]
        kept.certified = bool(truth.still_optimal(theta_W[-1:])[0])
        return theta_W, self.angles(truth, 1, perms)

    def angles(self, truth: _Truth, factor: int, perms: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Angles between true component ``k`` and estimate ``perms[j, k]`` of pair
        ``rows[j]`` (all pairs by default), in true order, for ``W`` (``factor`` 0) or ``H`` (1).

        From the distance ``d`` between the unit vectors, :math:`2\\operatorname{atan2}(d, \\sqrt{4 - d^2})`,
        accurate near 0 where ``arccos`` of a cosine loses half the digits. A zero vector is
        at 90 degrees of everything (its cosine is taken as 0), as in :func:`spectral_angles`.
        """
        index = slice(None) if rows is None else torch.as_tensor(rows, device=self.H.device)
        shared = bool((perms == perms[0]).all())  # one reordering of the truth serves all
        neg_unit = truth.reordered(self.H.dtype, factor, perms[0] if shared else perms)
        X, inv, dim = ((self.W, self.w_inv, 1), (self.H, self.h_inv, 2))[factor]
        d = torch.addcmul(neg_unit, X[index], inv[index]).square_().sum(dim=dim)
        d = np.sqrt(d.cpu().numpy().astype(np.float64))
        theta = 2.0 * np.arctan2(d, np.sqrt(np.maximum(4.0 - d * d, 0.0)))
        nonzero = self.nonzero[slice(None) if rows is None else rows][:, factor * self.r : (factor + 1) * self.r]
        return np.take_along_axis(np.where(nonzero, theta, math.pi / 2), perms, axis=1)


def _stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` of matrices in their own memory layout (a transposing copy is several
    times slower than a plain one), without a copy for a single one."""
    if len(tensors) == 1:
        return tensors[0][None]
    if tensors[0].mT.is_contiguous() and not tensors[0].is_contiguous():
        return torch.stack([X.mT for X in tensors]).mT
    return torch.stack(tensors)


class DeferredMetrics:
    """The metrics of a run's record points, with the ground-truth ones evaluated in batches.

    :meth:`add` fills in ``rel_error`` at once and keeps a copy of the factors; :meth:`flush`
    (at the end of the run, or as soon as the copies held reach ``max_bytes``) evaluates the
    ground-truth metrics of every pending record. Between solver steps, the metric code and
    the truth have been evicted from the CPU caches by the solver's data, and evaluating them
    there would evict the solver's data in turn, slowing the step that follows; back to back
    they cost about half as much, and a copy of the factors is a single pass.
    """

    def __init__(self, problem: Problem, max_bytes: int = 64 * 2**20) -> None:
        self.problem = problem
        self.max_bytes = max_bytes
        # records waiting for their metrics, with copies of their factors
        self._pending: list[tuple[dict, torch.Tensor, torch.Tensor]] = []
        self._bytes = 0
        self._last = _LastMatching()

    def add(self, record: dict, W: torch.Tensor, H: torch.Tensor) -> None:
        """Add the metrics of ``record`` (which holds ``loss``) at factors ``(W, H)`` to it."""
        record["rel_error"] = relative_error(self.problem, record["loss"])
        if not self.problem.has_ground_truth:
            return
        self._pending.append((record, W.clone(), H.clone()))
        self._bytes += (W.numel() + H.numel()) * W.element_size()
        if self._bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        """Evaluate the ground-truth metrics of the pending records."""
        if self._pending:
            size = _batch_size(*self._pending[0][1:])
            for start in range(0, len(self._pending), size):
                records, Ws, Hs = zip(*self._pending[start : start + size])
                metrics = _batch_metrics(_truth(self.problem), self._last, _stack(Ws), _stack(Hs))
                for record, values in zip(records, metrics):
                    record.update(values)
        self._pending.clear()
        self._bytes = 0
