"""Shared plumbing of the peer adapters (``solvers/peer_*.py``): other libraries' NMF solvers.

Peers are optional (``pip install 'proxmf-bench[peers]'``). A peer plugin checks at import that
its library can be found, without importing it (scikit-learn alone takes a second to import),
and raises :class:`~proxmf_bench.errors.PluginUnavailable` otherwise: the plugin is then listed
as skipped with the reason, instead of failing. The library itself is imported on first use.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

import numpy as np
import torch

from proxmf_bench.errors import PluginUnavailable
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.sparse import to_scipy

INSTALL_HINT = "pip install 'proxmf-bench[peers]'"


def require(module: str, distribution: str) -> None:
    """Raise :class:`PluginUnavailable` unless ``module`` can be imported."""
    if find_spec(module) is None:
        raise PluginUnavailable(f"{distribution} is not installed ({INSTALL_HINT})")


def check_nmf(problem: Problem, peer: str) -> None:
    """Peers factorize nonnegative data only: say so instead of failing deep inside them."""
    if not problem.nonneg:
        raise ValueError(f"{peer} solves NMF only; dataset {problem.name!r} is not a nonnegative problem")


def check_dense(problem: Problem, peer: str) -> None:
    """Peers that take dense arrays only refuse sparse data instead of densifying it."""
    if problem.is_sparse:
        raise ValueError(f"{peer} needs dense data; dataset {problem.name!r} is sparse (sparse data runs with "
                         "mu, nalmu, hals, pgm, pgm_momentum, fista, adaprox, pgm_torch, sklearn_mu, sklearn_cd)")


def limit_blas_threads() -> None:
    """Give numpy's BLAS the torch thread count of the run, so timings compare like for like."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=torch.get_num_threads(), user_api="blas")


def as_numpy(X: torch.Tensor) -> np.ndarray:
    """A NumPy view (a copy only off the CPU) of ``X``."""
    return X.detach().cpu().numpy()


def as_host_data(X: torch.Tensor) -> Any:
    """The data for a library that takes NumPy or ``scipy.sparse``: :func:`as_numpy`, or a
    ``scipy.sparse.csr_array`` sharing the arrays of a sparse CSR ``X``."""
    return to_scipy(X) if X.layout == torch.sparse_csr else as_numpy(X)
