"""Set-up shared by the asv benchmarks: problems, solver and prox lists, timing conditions.

Benchmarks cover every *stepped* solver family and every prox operator registered by the
built-in plugins, so a new family (or operator) is benchmarked as soon as it is registered.
Black-box peers (``solvers/peer_*.py``) are left out: they have no per-iteration API, and
``benchmarks/peer_table.py`` compares them instead.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

from proxmf_bench.plugin.registry import BUILTIN_PLUGINS, Registry, load_registry
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors

SIZES = {"small": (200, 500, 10), "medium": (1000, 1000, 20)}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICES = ("cpu", "cuda")


@cache
def builtin_registry() -> Registry:
    return load_registry(use_entry_points=False)


def stepped_solvers() -> list[str]:
    """Names of the built-in solver families that advance one iteration per ``step``."""
    registry = builtin_registry()
    return sorted(
        name for name, spec in registry.solvers.items()
        # the black-box marker tested by hand: importing proxmf_bench.solve.blackbox would break
        # these benchmarks on the older commits that asv runs them against
        if registry.owner[("solvers", name)] in BUILTIN_PLUGINS and getattr(spec.factory, "black_box", False) is not True
    )


# The solver families and prox operators of the pull-request subset (benchmarks/pr_*.py), written
# out: asv evaluates a benchmark's parameter list with each commit's package, so a list computed
# from the registry would differ between the two commits compared and misalign their results. A
# name that a commit does not register is skipped there (require_registered).
PR_SOLVERS = ("adaprox", "fista", "hals", "mu", "nalmu", "pgm", "pgm_momentum", "pgm_torch")
PR_PROX = ("box", "elastic_nonneg", "l0", "l1", "l1_ball", "l1_nonneg", "l21", "l2_ball", "max_entropy", "nonneg",
           "simplex", "unity")


def require_registered(kind: str, name: str) -> None:
    """``NotImplementedError`` (asv: skipped) if this commit registers no ``kind`` called ``name``."""
    registry = builtin_registry()
    if name not in getattr(registry, kind):
        raise NotImplementedError(f"{name} is not registered in this commit")


def prox_operators() -> list[str]:
    registry = builtin_registry()
    return sorted(name for name in registry.prox if registry.owner[("prox", name)] in BUILTIN_PLUGINS)


def timing_conditions() -> None:
    """One thread and flushed denormals, as the harness runs by default."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


def device_or_skip(name: str) -> torch.device:
    """The device, or ``NotImplementedError`` (asv: skipped) when CUDA is asked for but absent."""
    if name == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("no CUDA device")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic(m: int, n: int, rank: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
              seed: int = 0, **params: Any) -> Problem:
    """The built-in synthetic problem (with ground truth) of the given size."""
    registry = builtin_registry()
    text = ",".join([f"m={m}", f"n={n}", f"rank={rank}", *(f"{k}={v}" for k, v in params.items())])
    variant = select(f"synthetic[{text}]", registry.datasets, registry, "dataset")[0]
    return registry.get_dataset("synthetic").load(variant.params, seed, torch.device(device), dtype)


def default_solver(name: str):
    """A fresh solver of family ``name`` with the parameters of its first default variant."""
    registry = builtin_registry()
    variant = select(name, registry.solvers, registry, "solver")[0]
    return registry.get_solver(name).factory(**variant.params)


def started_solver(name: str, problem: Problem, warmup: int = 3):
    """A solver of family ``name`` initialised on ``problem`` and stepped ``warmup`` times."""
    solver = default_solver(name)
    W0, H0 = initial_factors(problem, 0)
    solver.init(problem, W0, H0)
    for _ in range(warmup):
        solver.step()
    synchronize(problem.device)
    return solver


def hals_reference_loss(problem: Problem, sweeps: int) -> float:
    r"""The loss after ``sweeps`` sweeps of HALS from the shared initial factors.

    Exact block coordinate descent over the columns of ``W`` and the rows of ``H``
    (``w_t <- max(0, w_t + (Y H^T - W H H^T)_t / (H H^T)_{tt})``, likewise for ``H``): a
    reference optimum that does not depend on which solvers are registered.
    """
    W, H = (X.clone() for X in initial_factors(problem, 0))
    Y = problem.Y
    for _ in range(sweeps):
        YHt, HHt = Y @ H.T, H @ H.T
        for t in range(problem.rank):
            W[:, t] = (W[:, t] + (YHt[:, t] - W @ HHt[:, t]) / HHt[t, t]).clamp_min(1e-16)
        WtY, WtW = W.T @ Y, W.T @ W
        for t in range(problem.rank):
            H[t] = (H[t] + (WtY[t] - WtW[t] @ H) / WtW[t, t]).clamp_min(1e-16)
    return problem.loss(W, H)
