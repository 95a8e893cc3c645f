r"""Synthetic NMF problems with known ground truth, from toy to GPU scale.

.. math:: Y = \max(W H + E,\ 0), \qquad W \in \mathbb{R}_+^{m\times r},\ H \in \mathbb{R}_+^{r\times n}

- ``W`` has i.i.d. ``|N(0, 1)|`` entries. With ``cond = c >= 1`` it is then moved, along a
  path of nonnegative matrices, to 2-norm condition number ``c`` (to 1e-6 relative):
  towards the matrix whose columns all equal the mean column (condition number tends to
  infinity) when ``c`` is above that of the draw, towards a matrix with disjoint column
  supports and equal column norms (condition number 1) when it is below.
- ``H`` has ``|N(0, 1)|`` entries, or with ``abundances=dirichlet`` columns drawn from a
  flat Dirichlet (nonnegative, summing to one, as unmixing abundances do).
- ``sparsity`` sets that fraction of the entries of ``H`` to zero; each column keeps its
  largest entry, and Dirichlet columns are renormalised to sum to one.
- ``E`` is Gaussian with standard deviation ``noise * std(W H)``; clipping at zero keeps the
  data valid for NMF. The SNR actually obtained is recorded in the problem's metadata.

``size`` picks ``(m, n, rank)`` from :data:`SIZES`, up to ``xlarge`` = 20000 x 10000 with
r = 50 (0.8 GB in float32, 1.6 GB in float64); ``m``, ``n`` or ``rank`` given explicitly
override the preset. Everything is drawn on the CPU in float64 from a generator seeded by the
run seed and the parameters (not the preset's name), so a problem is the same on every
device and, to rounding, in every dtype.

Memory: ``Y`` is built in row blocks of about :data:`_NOISE_BLOCK` entries, each computed as
``W_b H`` plus its noise in float64 and written into ``Y`` in the requested dtype, so the only
full-size array is ``Y`` itself (a float32 problem never has a float64 copy). ``std(W H)``,
which sets the noise level before any block exists, and ``||W H||^2`` come from the factors:
``sum(W H) = (1^T W)(H 1)`` and ``||W H||_F^2 = <W^T W, H H^T>``. Nothing is cached, except
that the run's check before it starts keeps its problem for the first cell when that runs in
the same process (:func:`~proxmf_bench.plugin.specs.preflight_loads`): one generation, one copy.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import torch

from proxmf_bench.errors import UserError
from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import DatasetSpec, Param, SpecLookup, coerce_params, keep_for_next_load
from proxmf_bench.problem.problem import Problem
from proxmf_bench.run.resources import check_memory

SIZES: dict[str, tuple[int, int, int]] = {
    "small": (200, 300, 10),
    "medium": (2000, 1000, 20),
    "large": (6000, 4000, 30),
    "xlarge": (20000, 10000, 50),
}

PARAMS = (
    Param("size", "small", str, "preset (m, n, rank): " + ", ".join(f"{k}={v[0]}x{v[1]} r{v[2]}" for k, v in SIZES.items()),
          choices=tuple(SIZES)),
    Param("m", None, int, "rows of Y (default: from size)", low=1),
    Param("n", None, int, "columns of Y (default: from size)", low=1),
    Param("rank", None, int, "rank r of the ground truth and of the fit (default: from size)", low=1),
    Param("noise", 0.01, float, "noise std relative to std(W H)", low=0.0),
    Param("sparsity", 0.0, float, "fraction of zero entries in H", low=0.0, high=1.0),
    Param("abundances", "gaussian", str, "distribution of H columns", choices=("gaussian", "dirichlet")),
    Param("cond", 0.0, float, "2-norm condition number of W (0: as drawn, else >= 1)", low=0.0, high=1e8),
)

_NOISE_BLOCK = 1 << 20  # entries of Y per block (8 MiB of float64; a few are alive at once)


def resolve(given: Mapping[str, Any], registry: SpecLookup | None = None) -> dict[str, Any]:
    """Coerce the parameters and fill ``m``, ``n``, ``rank`` from the ``size`` preset."""
    params = coerce_params(PARAMS, given, "dataset synthetic")
    for key, value in zip(("m", "n", "rank"), SIZES[params["size"]]):
        if params[key] is None:
            params[key] = value
    if 0.0 < params["cond"] < 1.0:
        raise UserError(f"dataset synthetic: cond={params['cond']} is not a condition number (use 0 or >= 1)")
    if params["cond"] > 1.0 and params["rank"] == 1:
        raise UserError("dataset synthetic: a rank-1 W always has condition number 1; drop cond or raise rank")
    return params


def make_synthetic(params: Mapping[str, Any], seed: int, dtype: torch.dtype = torch.float64) -> Problem:
    """Build the CPU problem described in the module docstring, ``Y`` in ``dtype`` (the ground
    truth in float64, as drawn)."""
    params = dict(params)
    m, n, r = params["m"], params["n"], params["rank"]
    itemsize = torch.empty((), dtype=dtype).element_size()
    # Y, the factors and a few float64 blocks: refused before allocating
    check_memory(itemsize * m * n + 8 * (4 * (m + n) * r + 3 * _NOISE_BLOCK), f"synthetic data of {m} x {n} (rank {r})")
    key = json.dumps({k: v for k, v in params.items() if k != "size"}, sort_keys=True)
    digest = hashlib.sha256(f"{key}|{seed}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    W = torch.randn(m, r, generator=gen, dtype=torch.float64).abs_()
    if params["cond"] >= 1.0:
        W = condition_columns(W, params["cond"])
    if params["abundances"] == "dirichlet":
        H = _dirichlet(r, n, gen)
    else:
        H = torch.randn(r, n, generator=gen, dtype=torch.float64).abs_()
    if params["sparsity"] > 0:
        keep = torch.rand(r, n, generator=gen, dtype=torch.float64) >= params["sparsity"]
        keep[H.argmax(dim=0), torch.arange(n)] = True
        H = H * keep
        if params["abundances"] == "dirichlet":
            H /= H.sum(dim=0, keepdim=True)
    clean_power, std = _product_moments(W, H)
    Y = torch.empty(m, n, dtype=dtype)
    noise_power = _fill_noisy_product(Y, W, H, params["noise"] * std, gen)
    snr_db = math.inf if noise_power == 0 else 10.0 * math.log10(clean_power / noise_power)
    return Problem(
        Y=Y, rank=r, W_true=W, H_true=H, name="synthetic",
        metadata={"snr_db": snr_db, "cond_W": _cond(W)},
    )


def _product_moments(W: torch.Tensor, H: torch.Tensor) -> tuple[float, float]:
    r"""``(||W H||_F^2, std(W H))`` from ``O((m + n) r^2)`` work, without the product:
    :math:`\sum_{ij} (WH)_{ij} = (1^\top W)(H 1)`, :math:`\|WH\|_F^2 = \langle W^\top W, H H^\top\rangle`,
    and the sample variance (``N - 1`` in the denominator, as ``torch.std``) from the two."""
    count = W.shape[0] * H.shape[1]
    total = float(W.sum(dim=0) @ H.sum(dim=1))
    power = float(torch.sum((W.T @ W) * (H @ H.T)))
    variance = (power - total * total / count) / (count - 1) if count > 1 else 0.0
    return power, math.sqrt(max(variance, 0.0))


def _fill_noisy_product(Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor, sigma: float,
                        gen: torch.Generator) -> float:
    """``Y <- max(W H + sigma * N(0, 1), 0)`` in row blocks computed in float64, written in
    ``Y``'s dtype; the power of the change the noise and the clipping made (in float64)."""
    m, n = Y.shape
    rows = max(1, _NOISE_BLOCK // n)
    power = 0.0
    for i in range(0, m, rows):
        clean = W[i : i + rows] @ H
        if sigma == 0.0:
            Y[i : i + rows] = clean
            continue
        noisy = torch.randn(clean.shape, generator=gen, dtype=torch.float64).mul_(sigma).add_(clean).clamp_min_(0.0)
        Y[i : i + rows] = noisy
        power += float(noisy.sub_(clean).pow_(2).sum())
    return power


def _dirichlet(r: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """Columns from a flat Dirichlet: normalised i.i.d. exponentials."""
    E = -torch.log(torch.rand(r, n, generator=gen, dtype=torch.float64).clamp_min_(1e-300))
    return E / E.sum(dim=0, keepdim=True)


def _cond(W: torch.Tensor) -> float:
    s = torch.linalg.svdvals(W)
    return math.inf if float(s[-1]) == 0.0 else float(s[0] / s[-1])


def condition_columns(W0: torch.Tensor, cond: float, iterations: int = 200) -> torch.Tensor:
    r"""A nonnegative ``W = (1 - t) W_0 + t T`` with 2-norm condition number ``cond``.

    ``T`` is the rank-one matrix of mean columns when ``cond`` exceeds ``cond(W_0)`` and an
    orthogonal matrix with disjoint column supports (row ``i`` in column ``i mod r``, columns
    of equal norm) when it is below; ``t`` in [0, 1] is found by bisection on ``log cond``.
    Both ends are nonnegative, so every ``W`` on the path is. Singular values come from the
    ``2r x 2r`` factor ``R`` of ``[W_0, T] = Q R``, since ``W(t) = Q R [(1-t) I; t I]``.
    """
    m, r = W0.shape
    start = _cond(W0)
    if cond >= start:
        T = W0.mean(dim=1, keepdim=True).expand(m, r)
    else:
        rows = torch.arange(m)
        T = torch.zeros_like(W0)
        T[rows, rows % r] = W0[rows, rows % r]
        T *= W0.norm(dim=0).mean() / T.norm(dim=0)
    R = torch.linalg.qr(torch.cat([W0, T], dim=1), mode="r").R
    eye = torch.eye(r, dtype=W0.dtype)

    def log_cond(t: float) -> float:
        s = torch.linalg.svdvals(R @ torch.cat([(1 - t) * eye, t * eye]))
        return math.inf if float(s[-1]) <= 0.0 else math.log(float(s[0] / s[-1]))

    target, increasing = math.log(cond), cond >= start
    lo, hi = 0.0, 1.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if (log_cond(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    t = 0.5 * (lo + hi)
    return (1 - t) * W0 + t * T


# (key, problem) the run's check before it starts built for the first cell (module docstring)
_kept: tuple[tuple, Problem] | None = None


def load(params: Mapping[str, Any], seed: int, device: torch.device, dtype: torch.dtype) -> Problem:
    global _kept
    key = (json.dumps({k: v for k, v in params.items() if k != "size"}, sort_keys=True), seed, dtype)
    kept, _kept = _kept, None
    problem = kept[1] if kept is not None and kept[0] == key else None
    del kept  # dropped before building another
    if problem is None:
        problem = make_synthetic(params, seed, dtype)
    if keep_for_next_load():
        _kept = (key, problem)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if torch.device(device).type != "cpu":
        check_memory(itemsize * params["m"] * params["n"], f"synthetic data of {params['m']} x {params['n']}", device)
    return problem.to(device, dtype)


@hookimpl
def proxmf_register_datasets(register):
    register(
        DatasetSpec(
            name="synthetic",
            load=load,
            params=PARAMS,
            resolve_params=resolve,
            summary="random nonnegative W H plus Gaussian noise, with ground truth; sizes up to 20000x10000 r50",
            ground_truth=True,
        )
    )
