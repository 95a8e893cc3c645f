r"""The toy nonnegative least-squares problem of the unrolled-MU chapter (Kervazo and Cohen).

A fixed, known mixing matrix ``W`` (``m x n`` in the chapter's letters, here ``m x rank``)
with entries uniform on ``[0, 1)``, component means ``mu = 50 U[0, 1)`` and pixels

.. math:: H_{kj} = \mu_k + \mathcal N(0, 1), \qquad Y = \max(W H + \sigma E, 0),
          \quad E_{ij} \sim \mathcal N(0, 1).

The problem is an NNLS (``fixed_W=True``): solvers update ``H`` only, starting from the known
``W``. The *scene* (``W`` and ``mu``) is drawn from ``scene_seed`` and does not change with the
run seed; the run seed draws the pixels ``H`` and the noise. So different seeds are new,
independent images of one scene: training problems for NALMU on some seeds, held-out test
problems on others. Clipping ``Y`` at zero (a no-op with the default parameters, where every
entry is far from zero) keeps the data valid for multiplicative updates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import DatasetSpec, Param
from proxmf_bench.problem.problem import Problem


def _generator(*key: object) -> torch.Generator:
    digest = hashlib.sha256("|".join(map(str, key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def make_nnls_toy(params: Mapping[str, Any], seed: int) -> Problem:
    """Build the float64 CPU problem described in the module docstring."""
    r, m, n = params["rank"], params["m"], params["n"]
    scene = _generator("nnls_toy-scene", params["scene_seed"], r, m)
    mu = 50.0 * torch.rand(r, 1, generator=scene, dtype=torch.float64)
    W = torch.rand(m, r, generator=scene, dtype=torch.float64)
    pixels = _generator("nnls_toy-pixels", params["scene_seed"], r, m, n, seed)
    H = torch.randn(r, n, generator=pixels, dtype=torch.float64) + mu
    noise = params["sigma"] * torch.randn(m, n, generator=pixels, dtype=torch.float64)
    Y = (W @ H + noise).clamp_min_(0.0)
    return Problem(
        Y=Y, rank=r, W_true=W, H_true=H, fixed_W=True, name="nnls_toy",
        metadata={"component_means": mu.squeeze(1).tolist()},
    )


def load(params: Mapping[str, Any], seed: int, device: torch.device, dtype: torch.dtype) -> Problem:
    return make_nnls_toy(params, seed).to(device, dtype)


@hookimpl
def proxmf_register_datasets(register):
    register(
        DatasetSpec(
            name="nnls_toy",
            load=load,
            params=(
                Param("rank", 5, int, "number of components (the chapter's n)", low=1),
                Param("m", 20, int, "rows of Y and of the fixed W", low=1),
                Param("n", 500, int, "pixels: columns of Y and H (the chapter's p)", low=1),
                Param("sigma", 0.1, float, "standard deviation of the additive noise", low=0.0),
                Param("scene_seed", 2, int, "seed of the fixed W and component means"),
            ),
            summary="the unrolled-MU chapter's toy NNLS problem: fixed known W, H around per-component means",
            ground_truth=True,
        )
    )
