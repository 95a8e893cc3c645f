r"""Synthetic NMF problems with known ground truth.

``Y = max(W H + E, 0)`` with ``W`` ``m x r`` and ``H`` ``r x n`` drawn from ``|N(0, 1)|``
(or, with ``abundances=dirichlet``, the columns of ``H`` drawn from a flat Dirichlet so they
sum to one, as unmixing abundances do), a fraction ``sparsity`` of the entries of ``H`` set to
zero, and Gaussian noise ``E`` of standard deviation ``noise * std(W H)``. Clipping at zero
keeps the data valid for NMF. Everything is drawn on the CPU in float64 from a generator
seeded by the run seed and the parameters, then moved to the requested device and dtype.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

from proxmf_bench.hookspecs import hookimpl
from proxmf_bench.problem import Problem
from proxmf_bench.resources import check_memory
from proxmf_bench.specs import DatasetSpec, Param


def make_synthetic(params: Mapping[str, Any], seed: int) -> Problem:
    """Build the float64 CPU problem described in the module docstring."""
    m, n, r = params["m"], params["n"], params["rank"]
    # W H, the noise and Y are alive at once, in float64; refused before allocating.
    check_memory(8 * (3 * m * n + 2 * (m + n) * r), f"synthetic data of {m} x {n} (rank {r})")
    key = json.dumps(dict(params), sort_keys=True) + f"|{seed}"
    gen = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1)
    W = torch.randn(m, r, generator=gen, dtype=torch.float64).abs_()
    if params["abundances"] == "dirichlet":
        H = _dirichlet(r, n, gen)
    else:
        H = torch.randn(r, n, generator=gen, dtype=torch.float64).abs_()
    if params["sparsity"] > 0:
        keep = torch.rand(r, n, generator=gen, dtype=torch.float64) >= params["sparsity"]
        H = H * keep
    clean = W @ H
    noise = torch.randn(m, n, generator=gen, dtype=torch.float64) * (params["noise"] * float(clean.std()))
    Y = (clean + noise).clamp_min_(0.0)
    return Problem(Y=Y, rank=r, W_true=W, H_true=H, name="synthetic", metadata={"snr_db": _snr_db(clean, Y - clean)})


def _dirichlet(r: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """Columns from a flat Dirichlet: normalised i.i.d. exponentials."""
    E = -torch.log(torch.rand(r, n, generator=gen, dtype=torch.float64).clamp_min_(1e-300))
    return E / E.sum(dim=0, keepdim=True)


def _snr_db(clean: torch.Tensor, noise: torch.Tensor) -> float:
    power = float(noise.pow(2).sum())
    return float("inf") if power == 0 else 10.0 * float(torch.log10(clean.pow(2).sum() / power))


def load(params: Mapping[str, Any], seed: int, device: torch.device, dtype: torch.dtype) -> Problem:
    if torch.device(device).type != "cpu":
        itemsize = torch.empty((), dtype=dtype).element_size()
        check_memory(itemsize * params["m"] * params["n"], f"synthetic data of {params['m']} x {params['n']}", device)
    return make_synthetic(params, seed).to(device, dtype)


@hookimpl
def proxmf_register_datasets(register):
    register(
        DatasetSpec(
            name="synthetic",
            load=load,
            params=(
                Param("m", 200, int, "rows of Y", low=1),
                Param("n", 300, int, "columns of Y", low=1),
                Param("rank", 10, int, "rank r of the ground truth and of the fit", low=1),
                Param("noise", 0.01, float, "noise std relative to std(W H)", low=0.0),
                Param("sparsity", 0.0, float, "fraction of zero entries in H", low=0.0, high=1.0),
                Param("abundances", "gaussian", str, "distribution of H columns", choices=("gaussian", "dirichlet")),
            ),
            summary="random nonnegative W H plus Gaussian noise, with ground truth",
            ground_truth=True,
        )
    )
