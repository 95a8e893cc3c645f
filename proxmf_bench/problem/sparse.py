r"""Sparse data: ``Y`` as a torch sparse CSR tensor, never densified.

A :class:`~proxmf_bench.problem.problem.Problem` whose ``Y`` is sparse holds ``Yt``
:math:`= Y^\top` as a second CSR tensor (a sparse transpose, the same bytes again), because
every product a solver needs is then a sparse-times-dense product with the sparse factor on the
left, the fast kernel: measured on the CPU, ``W.T @ Y`` with a CSR ``Y`` is 20 to 80 times
slower than ``(Yt @ W).T``, and ``H @ Yt`` than ``(Y @ H.T).T``. :func:`times` hides that
choice, so solver code reads the same for dense and sparse data.

The loss of a sparse problem (:func:`sparse_loss`) uses the Gram form

.. math:: 2 f(W, H) = \|Y\|_F^2 - 2 \sum_{(i,j):\,y_{ij} \neq 0} y_{ij} (W H)_{ij}
          + \langle W^\top W, H H^\top\rangle,

every term accumulated in float64 from the factors converted to float64, so it is as accurate
in float32 as in float64 (the cancellation of the Gram form costs about
``1e-16 ||Y||^2 / f`` relative, not ``eps_float32 ||Y||^2 / f``): the cross term costs one
``r``-dot per nonzero, read in chunks of rows, never an ``m x n`` product.
"""

from __future__ import annotations

import warnings

import torch

# torch says so once per process, on the first CSR tensor: a notice, not a problem of the data
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

# Nonzeros per chunk of sparse_cross: two chunk x r float64 blocks of factor rows (5 MB at
# r = 20), small next to Y itself.
CROSS_CHUNK = 1 << 14


def is_sparse(X: torch.Tensor) -> bool:
    """Whether ``X`` is a sparse tensor (any sparse layout)."""
    return X.layout != torch.strided


def as_csr(Y: torch.Tensor) -> torch.Tensor:
    """``Y`` in sparse CSR layout (COO is coalesced first, which sums duplicate entries)."""
    if Y.layout == torch.sparse_csr:
        return Y
    if Y.layout == torch.sparse_coo:
        Y = Y.coalesce()
    return Y.to_sparse_csr()


def csr_transpose(Y: torch.Tensor) -> torch.Tensor:
    """:math:`Y^\top` of a CSR ``Y`` as CSR, with sorted indices and ``Y``'s index dtype.

    On the CPU by scipy's ``csr_tocsc`` (one counting-sort pass that allocates only the
    result: measured 10 times faster than torch's ``Y.t().to_sparse_csr()`` at 2 million
    nonzeros, which also leaves some 50 MB of temporaries in the heap); elsewhere by torch.
    """
    if Y.device.type != "cpu":
        return Y.t().to_sparse_csr()
    T = to_scipy(Y).T.tocsr()  # csr_array.T is the CSC view; tocsr() transposes for real
    index = Y.crow_indices().dtype
    return torch.sparse_csr_tensor(
        torch.from_numpy(T.indptr).to(index), torch.from_numpy(T.indices).to(index),
        torch.from_numpy(T.data), size=tuple(T.shape), check_invariants=False)  # valid by construction


def times(X: torch.Tensor, D: torch.Tensor, Dt: torch.Tensor | None) -> torch.Tensor:
    """``X @ D`` for a dense ``X`` (``r x m``) and data ``D`` (``Y`` or ``Yt``) whose transpose is
    ``Dt``: for sparse ``D``, ``(Dt @ X^T)^T`` (a transposed view, ``r x n``); else ``X @ D``."""
    if D.layout == torch.strided:
        return X @ D
    return (Dt @ X.mT).mT


def sparse_values(Y: torch.Tensor) -> torch.Tensor:
    """The stored values of a sparse ``Y`` (explicit zeros included)."""
    return Y.values()


def sparse_norm2(Y: torch.Tensor) -> float:
    """``||Y||_F^2`` of a sparse ``Y`` from its stored values, accumulated in float64."""
    return float(torch.linalg.vector_norm(Y.values(), dtype=torch.float64) ** 2)


def row_chunks(crow: torch.Tensor, chunk: int) -> list[tuple[int, int]]:
    """Row ranges ``[i0, i1)`` of a CSR matrix holding about ``chunk`` nonzeros each (at least one row)."""
    crow = crow.cpu()
    m, nnz = crow.numel() - 1, int(crow[-1])
    if nnz <= chunk:
        return [(0, m)]
    cuts = torch.searchsorted(crow, torch.arange(chunk, nnz, chunk, dtype=crow.dtype)).tolist()
    bounds = sorted({0, m, *(c for c in cuts if 0 < c < m)})
    return list(zip(bounds[:-1], bounds[1:]))


def sparse_cross(Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor) -> float:
    r""":math:`\sum_{y_{ij} \neq 0} y_{ij} (W H)_{ij} = \langle W^\top Y, H\rangle` of a CSR ``Y``
    in float64: per chunk of rows, the rows of ``W`` and columns of ``H`` at the nonzeros,
    converted to float64, and their dot products weighted by the values."""
    crow, col, val = Y.crow_indices(), Y.col_indices(), Y.values()
    total = torch.zeros((), dtype=torch.float64, device=val.device)
    with torch.no_grad():
        for i0, i1 in row_chunks(crow, CROSS_CHUNK):
            a, b = int(crow[i0]), int(crow[i1])
            if a == b:
                continue
            counts = crow[i0 + 1 : i1 + 1] - crow[i0:i1]
            rows = torch.repeat_interleave(torch.arange(i0, i1, device=crow.device), counts)
            Wd = W[rows].double()
            Hd = H[:, col[a:b]].mT.double()
            total += torch.dot(val[a:b].double(), (Wd * Hd).sum(dim=1))
    return float(total)


def gram64(X: torch.Tensor) -> torch.Tensor:
    """``X^T X`` of a tall ``k x r`` ``X`` in float64, from blocks of :data:`CROSS_CHUNK` rows
    converted to float64 (no float64 copy of ``X``)."""
    out = torch.zeros(X.shape[1], X.shape[1], dtype=torch.float64, device=X.device)
    for i in range(0, X.shape[0], CROSS_CHUNK):
        block = X[i : i + CROSS_CHUNK].double()
        out.addmm_(block.mT, block)
    return out


def sparse_loss(Y: torch.Tensor, Y_norm2: float, W: torch.Tensor, H: torch.Tensor) -> float:
    """``1/2 ||Y - W H||_F^2`` of a CSR ``Y`` (module docstring), clamped at 0 (NaN stays NaN)."""
    with torch.no_grad():
        quad = float(torch.sum(gram64(W.detach()) * gram64(H.detach().mT)))
    value = 0.5 * (Y_norm2 - 2.0 * sparse_cross(Y, W.detach(), H.detach()) + quad)
    return max(value, 0.0) if value == value else float("nan")


def sparse_column_norms(Y: torch.Tensor) -> torch.Tensor:
    """The 2-norms of the columns of a CSR ``Y`` (length ``n``), from its stored values."""
    val = Y.values()
    return torch.zeros(Y.shape[1], dtype=val.dtype, device=val.device).index_add_(
        0, Y.col_indices(), val.square()).sqrt_()


def divide_columns(Y: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``Y diag(d)^-1`` of a CSR ``Y``: a new CSR tensor with the same pattern (indices shared)."""
    return torch.sparse_csr_tensor(Y.crow_indices(), Y.col_indices(), Y.values() / d[Y.col_indices()],
                                   size=Y.shape, check_invariants=False)  # the pattern of a valid Y


def to_scipy(Y: torch.Tensor):
    """A ``scipy.sparse.csr_array`` sharing the CPU arrays of a CSR ``Y`` (copied off the CPU)."""
    import scipy.sparse

    Y = Y.detach().cpu()
    return scipy.sparse.csr_array(
        (Y.values().numpy(), Y.col_indices().numpy(), Y.crow_indices().numpy()), shape=tuple(Y.shape))


def from_scipy(matrix, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A torch CSR tensor of a ``scipy.sparse`` matrix (duplicates summed, indices sorted)."""
    csr = matrix.tocsr()
    csr.sum_duplicates()  # also sorts the indices
    values = torch.from_numpy(csr.data)
    if dtype is not None:
        values = values.to(dtype)
    return torch.sparse_csr_tensor(
        torch.from_numpy(csr.indptr.astype("int64", copy=False)), torch.from_numpy(csr.indices.astype("int64", copy=False)),
        values, size=csr.shape, check_invariants=True)
