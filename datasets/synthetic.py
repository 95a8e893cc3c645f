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
r = 50 (1.6 GB in float64) for GPU runs; ``m``, ``n`` or ``rank`` given explicitly override
the preset. Everything is drawn on the CPU in float64 from a generator seeded by the run
seed and the parameters (not the preset's name), then moved to the requested device and
dtype, so a problem is the same on every device. The noise is drawn in column blocks so the
peak memory stays near one copy of ``Y``. The last problem built is kept, so the harness's
check before the run and the first run share one generation.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch

from proxmf_bench.errors import UserError
from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import DatasetSpec, Param, SpecLookup, coerce_params
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

_NOISE_BLOCK = 1 << 22  # entries of Y per noise block


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


def make_synthetic(params: Mapping[str, Any], seed: int) -> Problem:
    """Build the float64 CPU problem described in the module docstring."""
    key = json.dumps({k: v for k, v in params.items() if k != "size"}, sort_keys=True)
    return _make_cached(key, seed)


@lru_cache(maxsize=1)
def _make_cached(key: str, seed: int) -> Problem:
    params = json.loads(key)
    m, n, r = params["m"], params["n"], params["rank"]
    # Y, Y^T (the problem holds both), the factors and two noise blocks, in float64: refused
    # before allocating.
    check_memory(8 * (2 * m * n + 4 * (m + n) * r + 2 * _NOISE_BLOCK), f"synthetic data of {m} x {n} (rank {r})")
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
    Y = W @ H
    clean_power = float(torch.linalg.vector_norm(Y)) ** 2
    noise_power = _add_clipped_noise(Y, params["noise"] * float(Y.std()), gen)
    snr_db = math.inf if noise_power == 0 else 10.0 * math.log10(clean_power / noise_power)
    return Problem(
        Y=Y, rank=r, W_true=W, H_true=H, name="synthetic",
        metadata={"snr_db": snr_db, "cond_W": _cond(W)},
    )


def _add_clipped_noise(Y: torch.Tensor, sigma: float, gen: torch.Generator) -> float:
    """``Y <- max(Y + sigma * N(0, 1), 0)`` in column blocks; the power of the change made."""
    if sigma == 0.0:
        return 0.0
    m, n = Y.shape
    block = max(1, _NOISE_BLOCK // m)
    power = 0.0
    for j in range(0, n, block):
        clean = Y[:, j : j + block]
        noisy = torch.randn(clean.shape, generator=gen, dtype=torch.float64).mul_(sigma).add_(clean).clamp_min_(0.0)
        power += float((noisy - clean).pow_(2).sum())
        clean.copy_(noisy)
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


def load(params: Mapping[str, Any], seed: int, device: torch.device, dtype: torch.dtype) -> Problem:
    problem = make_synthetic(params, seed)
    itemsize = torch.empty((), dtype=dtype).element_size()
    check_memory(2 * itemsize * params["m"] * params["n"], f"a copy of synthetic data of {params['m']} x {params['n']}",
                 device)
    return problem.to(device, dtype, copy=True)


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
