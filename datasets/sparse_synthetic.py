r"""``sparse_synthetic``: sparse count data of a low-rank intensity, like a term-document matrix.

.. math:: y_{ij} \sim \operatorname{Poisson}(\lambda_{ij}), \qquad \Lambda = W H,\quad
          W \in \mathbb{R}_+^{m\times r},\ H \in \mathbb{R}_+^{r\times n},

with ``W`` and ``H`` of i.i.d. ``Gamma(shape, 1)`` entries (``shape`` < 1 gives the skewed
topic weights and word frequencies of text), scaled by ``s`` so that the expected fraction of
nonzero entries, :math:`\tfrac{1}{mn}\sum_{ij} (1 - e^{-s \lambda_{ij}})`, is ``density``. The
ground truth is ``(sqrt(s) W, sqrt(s) H)``: :math:`E[Y] = W_{true} H_{true}`.

Nothing of size ``m x n`` is formed. ``s`` is found by bisection on a Monte Carlo estimate of
the density from 2^16 random entries of :math:`\Lambda`. The counts are drawn as a Poisson
process: the total :math:`N \sim \operatorname{Poisson}(s \sum_{ij}\lambda_{ij})`, split among the
components ``k`` in proportion to :math:`s\,(\sum_i W_{ik})(\sum_j H_{kj})`; each event of
component ``k`` falls in row ``i`` with probability :math:`W_{ik} / \sum_i W_{ik}` and column
``j`` with :math:`H_{kj} / \sum_j H_{kj}`, and events in one cell add up (the same law as
independent Poisson entries). Memory: ``O(N + (m + n) r)``.

``noise=poisson`` keeps the counts; ``noise=binary`` keeps only whether a cell is nonzero
(presence/absence data; the ground truth is then that of the intensity, not of ``E[Y]``). The
realised density and number of nonzeros are in the problem's metadata. Generated on the CPU in
float64 from a generator seeded by the parameters and the run seed; ``Y`` is a torch sparse CSR
tensor, moved to the requested device and dtype (see :mod:`proxmf_bench.problem.sparse`).
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

PARAMS = (
    Param("m", 2000, int, "rows of Y (documents)", low=1),
    Param("n", 1000, int, "columns of Y (terms)", low=1),
    Param("rank", 10, int, "rank r of the intensity and of the fit", low=1),
    Param("density", 0.01, float, "expected fraction of nonzero entries", low=0.0, high=0.5),
    Param("shape", 0.5, float, "Gamma shape of the entries of W and H (smaller: more skewed)", low=1e-3),
    Param("noise", "poisson", str, "poisson: counts; binary: 1 where the count is nonzero",
          choices=("poisson", "binary")),
)

_SAMPLES = 1 << 16  # entries of the intensity sampled to calibrate the density
_BYTES_PER_EVENT = 64  # indices, coalescing and the CSR arrays, per drawn event


def resolve(given: Mapping[str, Any], registry: SpecLookup | None = None) -> dict[str, Any]:
    params = coerce_params(PARAMS, given, "dataset sparse_synthetic")
    if params["density"] <= 0.0:
        raise UserError("dataset sparse_synthetic: density must be > 0")
    if params["rank"] > min(params["m"], params["n"]):
        raise UserError(f"dataset sparse_synthetic: rank {params['rank']} is larger than min(m, n) = "
                        f"{min(params['m'], params['n'])}")
    return params


def make_sparse_synthetic(params: Mapping[str, Any], seed: int) -> Problem:
    """Build the float64 CPU problem described in the module docstring."""
    return _make_cached(json.dumps(dict(params), sort_keys=True), seed)


@lru_cache(maxsize=1)
def _make_cached(key: str, seed: int) -> Problem:
    params = json.loads(key)
    m, n, r, density = params["m"], params["n"], params["rank"], params["density"]
    events = 1.5 * density * m * n + 10 * math.sqrt(density * m * n) + 100  # N, with room for repeats
    check_memory(int(_BYTES_PER_EVENT * events + 32 * (m + n) * r),
                 f"sparse synthetic data of {m} x {n} (density {density:g}, rank {r})")
    digest = hashlib.sha256(f"{key}|{seed}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    W = _gamma(params["shape"], (m, r), gen)
    H = _gamma(params["shape"], (r, n), gen)
    s = _density_scale(W, H, density, gen)
    W_true, H_true = W * math.sqrt(s), H * math.sqrt(s)
    counts = _poisson_process(W_true, H_true, gen)
    if params["noise"] == "binary":
        counts = torch.sparse_coo_tensor(counts.indices(), torch.ones_like(counts.values()), counts.shape,
                                         check_invariants=False, is_coalesced=True)
    Y = counts.to_sparse_csr()
    nnz = int(Y.values().numel())
    return Problem(Y=Y, rank=r, W_true=W_true, H_true=H_true, name="sparse_synthetic",
                   metadata={"nnz": nnz, "density": nnz / (m * n), "intensity_scale": s})


def _gamma(shape: float, size: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """i.i.d. ``Gamma(shape, 1)`` entries from ``gen`` (torch's sampler takes no generator):
    Marsaglia-Tsang for ``shape + 1``, times ``U^(1/shape)`` (exact for any shape > 0)."""
    a = shape + 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(size, dtype=torch.float64).reshape(-1)
    filled = 0
    while filled < out.numel():
        k = out.numel() - filled
        x = torch.randn(2 * k + 16, generator=gen, dtype=torch.float64)
        u = torch.rand(2 * k + 16, generator=gen, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * x**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        accepted = (d * v)[ok][:k]
        out[filled : filled + accepted.numel()] = accepted
        filled += accepted.numel()
    boost = torch.rand(out.numel(), generator=gen, dtype=torch.float64).clamp_min_(1e-300) ** (1.0 / shape)
    return (out * boost).reshape(size)


def _density_scale(W: torch.Tensor, H: torch.Tensor, density: float, gen: torch.Generator) -> float:
    """``s`` with ``mean(1 - exp(-s lambda)) = density`` over sampled entries ``lambda`` of ``W H``."""
    m, n = W.shape[0], H.shape[1]
    rows = torch.randint(0, m, (_SAMPLES,), generator=gen)
    cols = torch.randint(0, n, (_SAMPLES,), generator=gen)
    lam = (W[rows] * H[:, cols].T).sum(dim=1)
    lo, hi = 0.0, 1.0
    while float((-torch.expm1(-hi * lam)).mean()) < density:
        hi *= 2.0
        if hi > 1e300:
            raise UserError("dataset sparse_synthetic: cannot reach the requested density")
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float((-torch.expm1(-mid * lam)).mean()) < density else (lo, mid)
    return 0.5 * (lo + hi)


def _poisson_process(W: torch.Tensor, H: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Counts ``Y`` with independent ``Poisson((W H)_ij)`` entries, as a coalesced COO tensor."""
    m, n = W.shape[0], H.shape[1]
    w, h = W.sum(dim=0), H.sum(dim=1)
    per_component = torch.poisson(w * h, generator=gen).long().tolist()
    rows, cols = [], []
    for k, count in enumerate(per_component):
        if count:
            rows.append(torch.multinomial(W[:, k] / w[k], count, replacement=True, generator=gen))
            cols.append(torch.multinomial(H[k] / h[k], count, replacement=True, generator=gen))
    if not rows:
        raise UserError("dataset sparse_synthetic: the draw has no nonzero entry; raise density or the size")
    index = torch.stack([torch.cat(rows), torch.cat(cols)])
    ones = torch.ones(index.shape[1], dtype=torch.float64)
    return torch.sparse_coo_tensor(index, ones, (m, n), check_invariants=False).coalesce()  # indices in range


def load(params: Mapping[str, Any], seed: int, device: torch.device, dtype: torch.dtype) -> Problem:
    return make_sparse_synthetic(params, seed).to(device, dtype, copy=True)


@hookimpl
def proxmf_register_datasets(register):
    register(
        DatasetSpec(
            name="sparse_synthetic",
            load=load,
            params=PARAMS,
            resolve_params=resolve,
            summary="sparse Poisson counts of a low-rank intensity (term-document-like), torch sparse CSR, "
                    "with ground truth",
            ground_truth=True,
        )
    )
